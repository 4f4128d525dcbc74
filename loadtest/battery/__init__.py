"""The reliability battery (`make battery`, `make battery-ci`): the platform's promises checked
against the real services, with real `wattstream ingest` and `wattstream api` processes and
faults injected through deploy/.

Rows (see the README's "Reliability battery"): crash consistency under SIGKILLs and database
restarts, checked reading by reading and bucket by bucket against an independent oracle;
poison mixed into good traffic, checked against the dead-letter topic; a Kafka broker restart;
SIGTERM in every state; a database outage (memory, resumption); the API's isolation, keys,
rate limits and malformed query strings.

    python -m loadtest.battery --scale ci      # or: wattstream battery --scale ci
"""

from loadtest.battery.run import ROWS, main, run_battery, run_main
from loadtest.battery.scale import SCALES, Scale

__all__ = ["ROWS", "SCALES", "Scale", "main", "run_battery", "run_main"]
