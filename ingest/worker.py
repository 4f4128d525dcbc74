"""The readings consumer: Kafka batches in; raw rows, derived rows and offsets committed together.

The loop, fenced offsets and dead letters are `ingest.consumer.FencedConsumer`'s; this module
decodes readings, resolves meters, quarantines readings beyond the lateness limit and hands
the rest to the `ReadingWriter` and its batch stages.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from ingest import metrics
from ingest.consumer import FencedConsumer
from ingest.meters import MeterDirectory
from ingest.site_events import Publishing, Timed
from ingest.writer import BatchStage, QuarantineRow, ReadingRows, ReadingWriter, WriteResult
from schemas.messages import InvalidMessage, ReadingDecoder
from schemas.settings import Settings
from schemas.timeutil import from_epoch_us
from schemas.vocabulary import READING_QUALITY_CODES

__all__ = ["IngestWorker"]

log = logging.getLogger(__name__)

_NAN = float("nan")


@dataclass
class _Decoded:
    """One batch, decoded: readings column-wise with the index of the record each came from."""

    records: list[ConsumerRecord] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)
    keys: list[tuple[str, str]] = field(default_factory=list)
    ts_us: list[int] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    power: list[float] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)
    problems: dict[int, list[InvalidMessage]] = field(default_factory=dict)


class IngestWorker(FencedConsumer):
    """Consumes the readings topic until `stop` is set; see the module docstring."""

    def __init__(self, settings: Settings, stages: Sequence[BatchStage] = ()) -> None:
        super().__init__(settings, settings.topic_readings, settings.consumer_group, "wattstream-ingest")
        self._decoder = ReadingDecoder(
            unknown_fields=settings.unknown_fields,
            max_future_s=settings.max_future_s,
            earliest=settings.earliest_reading,
        )
        self._meters = MeterDirectory(register_unknown=settings.unknown_meters == "register")
        self.writer = ReadingWriter(settings.consumer_group, self._topic, stages)
        self._max_lateness_us = int(settings.max_lateness_s * 1_000_000)

    async def prepare_connection(self, conn: asyncpg.Connection) -> None:
        await self.writer.prepare(conn)

    def forget_state(self) -> None:
        self.writer.forget_state()

    async def process(self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        started = time.monotonic()
        decoded = self._decode(owned)
        advances = self.advances(owned)
        dead_letters_sent = False
        quarantine: list[QuarantineRow] = []

        async def write(conn: asyncpg.Connection) -> WriteResult:
            nonlocal dead_letters_sent, quarantine
            unknown = await self._meters.resolve(conn, set(decoded.keys))
            known = {self._meters.get(k) for k in set(decoded.keys) - unknown}
            await self.writer.load_state(conn, [m for m in known if m is not None])
            rows, quarantine = self._split(decoded, unknown)
            if not dead_letters_sent:
                await self.send_dead_letters(
                    conn, [(decoded.records[i], problems) for i, problems in decoded.problems.items()]
                )
                dead_letters_sent = True
            return await self.writer.write(conn, rows, advances, quarantine)

        result = await self.in_transaction(owned, stop, write)
        if result is None:
            return
        self.committed(owned)
        await self._publish_after_commit()
        metrics.READINGS_VALID.labels(self._topic).inc(len(decoded.keys))
        metrics.ROWS_WRITTEN.labels("copy").inc(result.copied)
        metrics.ROWS_WRITTEN.labels("upsert").inc(result.upserted)
        metrics.ROWS_WRITTEN.labels("unchanged").inc(result.unchanged)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        for q in quarantine:
            metrics.QUARANTINED.labels(q.reason).inc()
        if result.fell_back:
            log.info("straight COPY met a conflict; batch written by upsert", extra={"topic": self._topic})

    async def tick(self) -> None:
        for stage in self.writer.stages:
            if isinstance(stage, Timed):
                await stage.tick(self)

    async def _publish_after_commit(self) -> None:
        for stage in self.writer.stages:
            if isinstance(stage, Timed):
                await stage.after_commit(self)
        sends = [
            await self.producer.send(topic, value=value, key=key)
            for stage in self.writer.stages
            if isinstance(stage, Publishing)
            for topic, key, value in stage.take_messages()
        ]
        await self.acked(sends)

    def _decode(self, owned: dict[TopicPartition, list[ConsumerRecord]]) -> _Decoded:
        d = _Decoded()
        now = datetime.now(UTC)
        codes = READING_QUALITY_CODES
        for msgs in owned.values():
            for msg in msgs:
                i = len(d.records)
                d.records.append(msg)
                refused = self.screen(msg)
                good, bad = ([], [refused]) if refused else self._decoder.decode(msg.value, now)
                if bad:
                    d.problems[i] = bad
                for r in good:
                    d.origin.append(i)
                    d.keys.append((r.site, r.meter))
                    d.ts_us.append(r.ts_us)
                    d.energy.append(_NAN if r.energy_kwh is None else r.energy_kwh)
                    d.power.append(_NAN if r.power_kw is None else r.power_kw)
                    d.quality.append(codes[r.quality])
        return d

    def _split(self, d: _Decoded, unknown: set[tuple[str, str]]) -> tuple[ReadingRows, list[QuarantineRow]]:
        """Rows to write, and readings to quarantine: those further behind the newest reading their
        meter had before them (stored, or earlier in this batch) than the lateness limit. Readings
        of unknown meters are dead-lettered."""
        ids = [self._meters.get(k) for k in d.keys]
        newest: dict[int, int] = {}
        keep: list[int] = []
        quarantine: list[QuarantineRow] = []
        for j, (key, meter_id) in enumerate(zip(d.keys, ids, strict=True)):
            if meter_id is None:
                problem = InvalidMessage(
                    "unknown_meter", f"site {key[0]!r} meter {key[1]!r} is not registered"
                )
                bucket = d.problems.setdefault(d.origin[j], [])
                if problem not in bucket:
                    bucket.append(problem)
                continue
            ts = d.ts_us[j]
            before = newest.get(meter_id)
            if before is None:
                before = self.writer.latest(meter_id)
            if before is not None and before - ts > self._max_lateness_us:
                quarantine.append(self._quarantine_row(d, j, f"{(before - ts) / 86_400e6:.1f} days behind"))
                continue
            newest[meter_id] = ts if before is None else max(before, ts)
            keep.append(j)
        rows = ReadingRows.from_columns(
            [ids[j] for j in keep],  # type: ignore[misc]
            [d.ts_us[j] for j in keep],
            [d.energy[j] for j in keep],
            [d.power[j] for j in keep],
            [d.quality[j] for j in keep],
        )
        return rows, quarantine

    def _quarantine_row(self, d: _Decoded, j: int, detail: str) -> QuarantineRow:
        msg = d.records[d.origin[j]]
        log.info(
            "quarantined a reading beyond the lateness limit",
            extra={
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "reason": "too_late",
            },
        )
        site, meter = d.keys[j]
        energy, power = d.energy[j], d.power[j]
        return QuarantineRow(
            topic=msg.topic,
            partition=msg.partition,
            kafka_offset=msg.offset,
            site_id=site,
            meter=meter,
            ts=from_epoch_us(d.ts_us[j]),
            energy_kwh=None if math.isnan(energy) else energy,
            power_kw=None if math.isnan(power) else power,
            reason="too_late",
            detail=f"{detail} the meter's newest reading",
        )
