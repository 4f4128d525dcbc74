"""The derived topics' events: what ingest publishes and the API reads, one struct per topic.

| topic | key | event |
|---|---|---|
| `wattstream.site-energy.v1` | site | `SiteEnergyEvent`: power now, the latest bucket's kWh and CO2e |
| `wattstream.intensity.v1` | region | `IntensityEvent`: a grid intensity row, new or restated |
| `wattstream.alerts.v1` | alert fingerprint | `AlertEvent`: an alert firing or resolved |

Every time is RFC 3339 in UTC with `Z` (`2026-11-24T02:15:00Z`, with microseconds only when
they are not zero), whatever zone a value came in: `utc` is applied to each on construction, and
the encoder writes no other form. The API's answers use the same form, so a value reads the
same from the stream, from memory and from the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

__all__ = [
    "AlertEvent",
    "IntensityEvent",
    "SiteEnergyEvent",
    "SiteLatestBody",
    "decode_site_energy",
    "encode_event",
    "encode_latest",
    "utc",
]


def utc(value: datetime) -> datetime:
    """`value` in UTC; a naive time has no place in an event."""
    if value.tzinfo is None:
        raise ValueError("an event's times must be timezone-aware")
    return value.astimezone(UTC)


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


class SiteEnergyEvent(msgspec.Struct, kw_only=True):
    """A site after a readings batch touched it (`wattstream.site-energy.v1`)."""

    site: str
    power_kw: float | None  # the sum of its total-role meters' latest power
    as_of: datetime | None  # the newest reading behind it
    bucket_start: datetime | None  # the latest bucket the batch recomputed
    kwh: float | None
    co2e_kg: float | None  # location-based, as stored for that bucket
    intensity_g_per_kwh: float | None
    factor_set: str | None
    emissions_quality: str | None

    def __post_init__(self) -> None:
        self.as_of = _utc_or_none(self.as_of)
        self.bucket_start = _utc_or_none(self.bucket_start)


class SiteLatestBody(SiteEnergyEvent, kw_only=True):
    """`GET /v1/sites/{site}/latest`: the site's event, and where this process found it."""

    source: Literal["stream", "database"]


class IntensityEvent(msgspec.Struct, kw_only=True):
    """A grid intensity row as stored, new or restated (`wattstream.intensity.v1`)."""

    region: str
    ts: datetime
    interval_s: int
    factor_set: str
    scope: str
    basis: str
    kind: str
    intensity_g_per_kwh: float | None
    generation_mw: float | None
    fossil_share: float | None
    renewable_share: float | None
    nonfossil_share: float | None
    flags: list[str]
    mix_revision: int | None
    recorded_at: datetime

    def __post_init__(self) -> None:
        self.ts = utc(self.ts)
        self.recorded_at = utc(self.recorded_at)


class AlertEvent(msgspec.Struct, kw_only=True):
    """An alert transition (`wattstream.alerts.v1`, the public interface for alerting systems;
    receivers de-duplicate on `event_id`)."""

    event_id: str
    fingerprint: str
    status: Literal["firing", "resolved"]
    rule_id: int
    at: datetime
    starts_at: datetime
    ends_at: datetime | None
    value: float | None
    site: str | None
    region: str | None
    tenant: str | None
    labels: dict[str, str]
    annotations: dict[str, str]

    def __post_init__(self) -> None:
        self.at = utc(self.at)
        self.starts_at = utc(self.starts_at)
        self.ends_at = _utc_or_none(self.ends_at)


_encoder: Final = msgspec.json.Encoder()
_site_energy: Final = msgspec.json.Decoder(SiteEnergyEvent)


def encode_event(event: SiteEnergyEvent | IntensityEvent | AlertEvent) -> bytes:
    return _encoder.encode(event)


def decode_site_energy(data: bytes) -> SiteEnergyEvent:
    return _site_energy.decode(data)


def encode_latest(body: SiteLatestBody) -> bytes:
    return _encoder.encode(body)
