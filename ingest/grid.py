"""The grid consumer: mixes and published intensities in; intensity, restated emissions and the
derived intensity stream out, with offsets in the same transaction.

Per batch: valid records are written (`grid_mix`, every revision; published intensities to
`grid_intensity`), the intensity of every timestamp a mix touched is recomputed for all
regions known there (a late neighbour changes its importers' consumption-based intensity),
changed intensity rows are stored as restatements, the emissions of every site bucket they
reach are restated, and the changed rows are published to the intensity topic, acknowledged
by Kafka before the transaction (and its offsets) commits: a crash in between republishes the
same values, never loses one. Bad records are dead-lettered like readings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from ingest import metrics
from ingest.alerts import GridAlerts
from ingest.carbon import GridCarbon, IntensityRow, lock_timestamps
from ingest.consumer import FencedConsumer
from schemas.events import IntensityEvent, encode_event
from schemas.grid import GridDecoder, GridIntensity, GridMix
from schemas.messages import InvalidMessage
from schemas.settings import Settings
from schemas.timeutil import from_epoch_us

__all__ = ["GridWorker", "intensity_message"]

log = logging.getLogger(__name__)

_INSERT_MIX = """
INSERT INTO grid_mix AS g (region, ts, interval_s, revision, generation_mw, imports_mw, exports_mw,
                           emissions_t_per_h, kafka_partition, kafka_offset)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10)
ON CONFLICT (region, ts, revision) DO UPDATE
   SET interval_s = EXCLUDED.interval_s, generation_mw = EXCLUDED.generation_mw,
       imports_mw = EXCLUDED.imports_mw, exports_mw = EXCLUDED.exports_mw,
       emissions_t_per_h = EXCLUDED.emissions_t_per_h, kafka_partition = EXCLUDED.kafka_partition,
       kafka_offset = EXCLUDED.kafka_offset, received_at = now()
"""
_encoder = msgspec.json.Encoder()


def intensity_message(row: asyncpg.Record | dict[str, Any]) -> bytes:
    """The `wattstream.intensity.v1` value for a stored intensity row."""
    return encode_event(
        IntensityEvent(
            region=row["region"],
            ts=row["ts"],
            interval_s=row["interval_s"],
            factor_set=row["factor_set"],
            scope=row["scope"],
            basis=row["basis"],
            kind=row["kind"],
            intensity_g_per_kwh=row["intensity_g_per_kwh"],
            generation_mw=row["generation_mw"],
            fossil_share=row["fossil_share"],
            renewable_share=row["renewable_share"],
            nonfossil_share=row["nonfossil_share"],
            flags=list(row["flags"]),
            mix_revision=row["mix_revision"],
            recorded_at=row["recorded_at"],
        )
    )


class GridWorker(FencedConsumer):
    """Consumes the grid topic until `stop` is set; see the module docstring."""

    def __init__(self, settings: Settings, carbon: GridCarbon, alerts: GridAlerts | None = None) -> None:
        super().__init__(settings, settings.topic_grid, settings.grid_consumer_group, "wattstream-grid")
        self._decoder = GridDecoder(
            max_future_s=settings.max_future_s,
            max_forecast_s=settings.max_forecast_s,
            earliest=settings.earliest_reading,
        )
        self.carbon = carbon
        self.alerts = alerts

    async def prepare_connection(self, conn: asyncpg.Connection) -> None:
        await self.carbon.prepare(conn)

    def forget_state(self) -> None:
        """The grid consumer caches nothing between batches."""

    async def tick(self) -> None:
        if self.alerts is not None:
            await self.alerts.tick(self)

    async def process(self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        started = time.monotonic()
        now = datetime.now(UTC)
        mixes: list[tuple[ConsumerRecord, GridMix]] = []
        published: list[IntensityRow] = []
        problems: list[tuple[ConsumerRecord, list[InvalidMessage]]] = []
        for msgs in owned.values():
            for msg in msgs:
                refused = self.screen(msg)
                record, bad = (None, refused) if refused else self._decoder.decode(msg.value, now)
                if bad is not None:
                    problems.append((msg, [bad]))
                elif isinstance(record, GridMix):
                    mixes.append((msg, record))
                elif isinstance(record, GridIntensity):
                    published.append(
                        IntensityRow(
                            record.region,
                            from_epoch_us(record.ts_us),
                            record.interval_s,
                            "published",
                            "published",
                            "published",
                            record.kind,
                            record.intensity_g_per_kwh,
                            None,
                            None,
                            None,
                            None,
                            [],
                            record.revision,
                        )
                    )
        advances = self.advances(owned)
        sent_dead = False

        async def write(conn: asyncpg.Connection) -> tuple[int, int]:
            nonlocal sent_dead
            if not sent_dead:
                await self.send_dead_letters(conn, problems)
                sent_dead = True
            async with conn.transaction():
                await self.offsets.advance(conn, advances)
                ts = {m.ts_us for _, m in mixes}
                await lock_timestamps(conn, ts)
                if mixes:
                    await conn.executemany(
                        _INSERT_MIX,
                        [
                            (
                                m.region,
                                from_epoch_us(m.ts_us),
                                m.interval_s,
                                m.revision,
                                _encoder.encode(m.generation_mw).decode(),
                                _encoder.encode(m.imports_mw).decode(),
                                _encoder.encode(m.exports_mw).decode(),
                                m.emissions_t_per_h,
                                msg.partition,
                                msg.offset,
                            )
                            for msg, m in mixes
                        ],
                    )
                t0 = time.monotonic()
                computed = await self.carbon.compute_intensity(conn, sorted(ts))
                metrics.INTENSITY_SECONDS.observe(time.monotonic() - t0)
                changed = await self.carbon.store_intensity(conn, _last_revision(published) + computed)
                restated = await self.carbon.restate_emissions_after(conn, changed)
                if self.alerts is not None:
                    await self.alerts.evaluate(conn, changed)
                await self._publish(changed)
            for r in changed:
                metrics.INTENSITY_WRITTEN.labels(r["basis"]).inc()
            return len(changed), restated

        result = await self.in_transaction(owned, stop, write)
        if result is None:
            return
        self.committed(owned)
        if self.alerts is not None:
            await self.alerts.after_commit(self)
        metrics.GRID_RECORDS.labels("mix").inc(len(mixes))
        metrics.GRID_RECORDS.labels("intensity").inc(len(published))
        metrics.EMISSIONS_WRITTEN.labels("grid").inc(result[1])
        first = min(owned.items(), key=lambda kv: kv[0].partition)
        log.info(
            "grid batch: %d mixes, %d published intensities, %d intensity rows new or restated, "
            "%d site emission rows restated in %.0f ms",
            len(mixes),
            len(published),
            result[0],
            result[1],
            (time.monotonic() - started) * 1000,
            extra={"topic": self._topic, "partition": first[0].partition, "offset": first[1][-1].offset},
        )

    async def _publish(self, changed: list[asyncpg.Record]) -> None:
        sends = [
            await self.producer.send(
                self._s.topic_intensity, value=intensity_message(r), key=r["region"].encode()
            )
            for r in changed
        ]
        await self.acked(sends)


def _last_revision(rows: list[IntensityRow]) -> list[IntensityRow]:
    """One row per key in a batch: the highest revision, the later one among equals."""
    best: dict[tuple[Any, ...], IntensityRow] = {}
    for r in rows:
        key = (r.region, r.ts, r.kind)
        if key not in best or (r.mix_revision or 0) >= (best[key].mix_revision or 0):
            best[key] = r
    return list(best.values())
