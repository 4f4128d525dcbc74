"""The contracts of wattstream: messages, settings and SQL migrations. Imports nothing of ours."""
