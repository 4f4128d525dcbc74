"""Exact conversions between aware datetimes and UTC epoch microseconds (the hot path's unit),
and the RFC 3339 text of whole UTC seconds as the API writes it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "from_epoch_us", "rfc3339", "to_epoch_us", "utc_text"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch; exact, unlike `timestamp() * 1e6`."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: wattstream keeps time timezone-aware")
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def utc_text(seconds: Iterable[int]) -> list[str]:
    """The RFC 3339 text of whole UTC epoch seconds, as the API's JSON writes aware datetimes
    (the JSON itself has them from `core.jsontext`; this is for CSV)."""
    return [
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"
        for t in (EPOCH + timedelta(seconds=s) for s in seconds)
    ]


def rfc3339(ts: datetime) -> str:
    """An aware datetime as the API's JSON writes it: in UTC, with `Z`."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
