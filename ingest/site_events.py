"""Live site events for the API's streams (`wattstream.site-energy.v1`, keyed by site).

After each readings batch, every site whose energy the batch recomputed gets one event: its
power now (the sum of its total-role meters' latest power), the latest energy bucket the
batch recomputed with its emissions as stored, and the time of the newest reading. Events
are collected inside the batch transaction and published after it commits: the database
stays the truth, and a crash in between loses only a live update that the next batch
repeats.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import asyncpg

from ingest.writer import ReadingRows
from schemas.events import SiteEnergyEvent, encode_event

__all__ = ["Publishing", "SiteEventsStage", "Timed", "site_event"]

# Per touched site: the latest bucket this batch recomputed (from the energy stage, not a scan
# of history), its total energy and emissions, and the power now; every lookup is by index.
_TOUCHED = """
WITH latest AS (
    SELECT m.site_id, max(e.bucket_start) AS bucket_start
      FROM energy_stage e JOIN meters m USING (meter_id)
     GROUP BY m.site_id
)
SELECT l.site_id, l.bucket_start,
       p.power_kw, p.as_of,
       (SELECT sum(ei.kwh) FROM meters m JOIN energy_interval ei USING (meter_id)
         WHERE m.site_id = l.site_id AND m.role = wattstream_total_role(l.site_id)
           AND ei.bucket_start = l.bucket_start) AS kwh,
       se.co2e_kg, se.intensity_g_per_kwh, se.factor_set, se.quality AS emissions_quality
  FROM latest l
  LEFT JOIN LATERAL (
      SELECT sum(st.last_power_kw) AS power_kw, max(st.last_ts) AS as_of
        FROM meters m JOIN meter_state st USING (meter_id)
       WHERE m.site_id = l.site_id AND m.role = wattstream_total_role(l.site_id)
  ) p ON true
  LEFT JOIN site_emissions se
    ON se.site_id = l.site_id AND se.bucket_start = l.bucket_start AND se.superseded_at IS NULL
"""


@runtime_checkable
class Publishing(Protocol):
    """A batch stage with messages to publish once its batch has committed."""

    def take_messages(self) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, value) of every message collected since the last call."""


@runtime_checkable
class Timed(Protocol):
    """A batch stage with work after each commit and on the consumer's timer (the alert outbox)."""

    async def after_commit(self, consumer: Any) -> None: ...

    async def tick(self, consumer: Any) -> None: ...


def site_event(r: asyncpg.Record | dict[str, Any]) -> bytes:
    return encode_event(
        SiteEnergyEvent(
            site=r["site_id"],
            power_kw=r["power_kw"],
            as_of=r["as_of"],
            bucket_start=r["bucket_start"],
            kwh=r["kwh"],
            co2e_kg=r["co2e_kg"],
            intensity_g_per_kwh=r["intensity_g_per_kwh"],
            factor_set=r["factor_set"],
            emissions_quality=r["emissions_quality"],
        )
    )


class SiteEventsStage:
    """Collects one event per touched site (runs after the energy and emissions stages)."""

    def __init__(self, topic: str) -> None:
        self._topic = topic
        self._pending: list[tuple[str, bytes, bytes]] = []

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection: it reads the energy stage's table."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        # a batch retried (after a database error, or settled in parts after a failure) must
        # not publish an attempt's events that rolled back, even when the next has no rows
        self._pending = []
        if not len(rows):
            return
        self._pending = [
            (self._topic, r["site_id"].encode(), site_event(r)) for r in await conn.fetch(_TOUCHED)
        ]

    def take_messages(self) -> list[tuple[str, bytes, bytes]]:
        out, self._pending = self._pending, []
        return out
