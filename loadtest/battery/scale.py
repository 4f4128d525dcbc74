"""How much each row of the battery does: the full battery, and the reduced one CI runs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCALES", "Scale"]


@dataclass(frozen=True, slots=True)
class Scale:
    name: str
    # crash consistency
    crash_readings: int  # distinct readings (duplicates come on top)
    crash_meters: int
    crash_seconds: float  # the stream is produced over about this long, the faults inside it
    kills: int  # SIGKILLs of the worker
    pg_restarts: int  # PostgreSQL stopped and started
    # poison
    poison_messages: int
    poison_good_readings: int
    poison_seconds: float
    # Kafka broker restart
    broker_readings: int
    broker_seconds: float
    # SIGTERM
    sigterm_backlog: int
    # database outage
    outage_s: float
    outage_rate: float  # readings per second produced before, during and after it
    # API
    api_queries: int
    # a row still running after this long is stopped and reported as an error
    row_timeout_s: float


SCALES = {
    "full": Scale(
        name="full",
        crash_readings=300_000,
        crash_meters=300,
        crash_seconds=150.0,
        kills=5,
        pg_restarts=2,
        poison_messages=10_000,
        poison_good_readings=60_000,
        poison_seconds=40.0,
        broker_readings=60_000,
        broker_seconds=45.0,
        sigterm_backlog=100_000,
        outage_s=60.0,
        outage_rate=2_000.0,
        api_queries=1_000,
        row_timeout_s=1_200.0,
    ),
    "ci": Scale(
        name="ci",
        crash_readings=30_000,
        crash_meters=300,
        crash_seconds=30.0,
        kills=2,
        pg_restarts=1,
        poison_messages=1_000,
        poison_good_readings=10_000,
        poison_seconds=12.0,
        broker_readings=15_000,
        broker_seconds=25.0,
        sigterm_backlog=30_000,
        outage_s=15.0,
        outage_rate=1_000.0,
        api_queries=200,
        row_timeout_s=300.0,
    ),
}
