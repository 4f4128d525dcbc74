"""Exact conversions between aware datetimes and UTC epoch microseconds (the hot path's unit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "from_epoch_us", "to_epoch_us"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_us(ts: datetime) -> int:
    """Microseconds since the Unix epoch; exact, unlike `timestamp() * 1e6`."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: wattstream keeps time timezone-aware")
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)
