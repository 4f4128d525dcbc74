"""The instants the API accepts, in one place: timestamps PostgreSQL and Python can both hold once
converted to UTC, with room left for the arithmetic done on them.

PostgreSQL's timestamptz spans 4713 BC to 294276 AD, Python's datetime the years 1 to 9999, and a
value valid where it was written (`0001-01-01T00:00:00+14:00`) can leave the latter on its way to
UTC. Each bound keeps about a thousand years to both, so whatever is computed from an accepted
instant (a horizon's end, the bucket a local month puts it in, a day shifted back) is still a
datetime and a timestamptz; nothing metered predates 1900.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime

from schemas.timeutil import to_epoch_us

__all__ = ["EARLIEST", "EARLIEST_US", "INSTANT_RANGE", "LATEST", "LATEST_US", "Instant", "check_instant"]

EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)  # exclusive
EARLIEST_US: Final = to_epoch_us(EARLIEST)
LATEST_US: Final = to_epoch_us(LATEST)
INSTANT_RANGE: Final = "from 1900-01-01T00:00:00Z (inclusive) to 9000-01-01T00:00:00Z (exclusive)"


def check_instant(ts: datetime) -> datetime:
    """`ts` if it lies in [EARLIEST, LATEST); pydantic turns the ValueError into a 422 naming the
    field. Aware datetimes compare by their UTC instant without being converted, so this holds
    for values whose conversion itself would overflow."""
    if not EARLIEST <= ts < LATEST:
        raise ValueError(f"must be {INSTANT_RANGE}, after conversion to UTC")
    return ts


Instant = Annotated[AwareDatetime, AfterValidator(check_instant)]
