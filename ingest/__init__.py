"""Kafka consumers and producers, the database writer, and the simulator and replay sources."""
