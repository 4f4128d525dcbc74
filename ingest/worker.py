"""The readings consumer: Kafka batches in, rows and offsets committed together, bad records dead-lettered.

Exactly-once effect: offsets live in the database, written in the transaction that writes the
rows they produced; on assignment the consumer seeks to them. A record is dead-lettered alone,
never with its batch, and the dead letter is acknowledged by Kafka before the offset that
passes it is committed, so nothing is lost (a crash in between repeats the dead letter, which
carries its origin topic/partition/offset for de-duplication).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from ingest import metrics
from ingest.errors import DatabaseUnavailable, FencedOffsets, IngestError
from ingest.meters import MeterDirectory
from ingest.writer import (
    NO_STORED_OFFSET,
    BatchStage,
    OffsetAdvance,
    QuarantineRow,
    ReadingRows,
    ReadingWriter,
)
from schemas.messages import QUALITY_CODES, InvalidMessage, ReadingDecoder
from schemas.settings import Settings
from schemas.timeutil import from_epoch_us

__all__ = ["IngestWorker"]

log = logging.getLogger(__name__)

_NAN = float("nan")


_T = TypeVar("_T")
_HINT_COMMIT_EVERY_S = 5.0


def is_transient_db_error(exc: BaseException) -> bool:
    """Errors that mean "the database is away or restarting", not "this batch is wrong"."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.CannotConnectNowError
        | asyncpg.OperatorInterventionError
        | asyncpg.SerializationError
        | asyncpg.DeadlockDetectedError,
    )


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


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: IngestWorker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # wait for the batch in flight: its rows and offsets commit before another worker reads them
        async with self._worker.batch_lock:
            for tp in revoked:
                self._worker.positions.pop(tp, None)
            self._worker.writer.forget_state()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._worker.seek_to_stored(assigned)


class IngestWorker:
    """Consumes the readings topic until `stop` is set; see the module docstring."""

    def __init__(self, settings: Settings, stages: Sequence[BatchStage] = ()) -> None:
        self._s = settings
        self._topic = settings.topic_readings
        self._decoder = ReadingDecoder(
            unknown_fields=settings.unknown_fields,
            max_future_s=settings.max_future_s,
            earliest=settings.earliest_reading,
        )
        self._meters = MeterDirectory(register_unknown=settings.unknown_meters == "register")
        self.writer = ReadingWriter(settings.consumer_group, self._topic, stages)
        self.batch_lock = asyncio.Lock()
        self.positions: dict[TopicPartition, int] = {}  # stored offset per owned partition
        self._pool: asyncpg.Pool | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._last_hint = 0.0
        self._max_lateness_us = int(settings.max_lateness_s * 1_000_000)

    async def run(self, stop: asyncio.Event) -> None:
        s = self._s
        self._pool = await _create_pool(s, stop, self.writer)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            client_id="wattstream-ingest-dlq",
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.consumer_group,
            client_id="wattstream-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=s.ingest_max_partition_fetch_bytes,
            session_timeout_ms=s.ingest_session_timeout_ms,
            heartbeat_interval_ms=max(s.ingest_session_timeout_ms // 5, 1000),
        )
        try:
            await self._producer.start()
            self._consumer.subscribe([self._topic], listener=_Rebalance(self))
            await self._consumer.start()
            log.info("ingest worker consuming", extra={"topic": self._topic, "group": s.consumer_group})
            while not stop.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=s.ingest_batch_timeout_ms, max_records=s.ingest_batch_max_records
                )
                if batch:
                    async with self.batch_lock:
                        await self._process(batch, stop)
                    await self._hint_commit()
        finally:
            await self._consumer.stop()
            await self._producer.stop()
            await self._pool.close()
            log.info("ingest worker stopped", extra={"topic": self._topic})

    @property
    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise IngestError("the worker is not running")
        return self._pool

    @property
    def _kafka_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise IngestError("the worker is not running")
        return self._consumer

    @property
    def _kafka_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise IngestError("the worker is not running")
        return self._producer

    async def seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        """Seek each partition to the offset stored with its rows (the beginning if none)."""
        if not assigned:
            return
        stored = await self._retrying(
            lambda conn: self.writer.stored_offsets(conn, [tp.partition for tp in assigned])
        )
        for tp in assigned:
            offset = stored.get(tp.partition)
            if offset is None:
                await self._kafka_consumer.seek_to_beginning(tp)
                self.positions[tp] = NO_STORED_OFFSET
            else:
                self._kafka_consumer.seek(tp, offset)
                self.positions[tp] = offset
            log.info(
                "partition assigned",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": offset if offset is not None else 0,
                },
            )
        self.writer.forget_state()

    async def _process(self, batch: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        started = time.monotonic()
        owned = {tp: msgs for tp, msgs in batch.items() if msgs and tp in self.positions}
        assigned = self._kafka_consumer.assignment()
        for tp, msgs in batch.items():
            if msgs and tp not in owned and tp in assigned:
                # fetched before this worker knew the partition's stored offset: read them again later
                self._kafka_consumer.seek(tp, msgs[0].offset)
        if not owned:
            return
        decoded = self._decode(owned)
        advances = [
            OffsetAdvance(tp.partition, self.positions[tp], msgs[-1].offset + 1) for tp, msgs in owned.items()
        ]
        dead_letters_sent = False
        deadline: float | None = None
        delay = self._s.db_retry_initial_s
        while True:
            try:
                async with self._db.acquire() as conn:
                    unknown = await self._meters.resolve(conn, set(decoded.keys))
                    known = {self._meters.get(k) for k in set(decoded.keys) - unknown}
                    await self.writer.load_state(conn, [m for m in known if m is not None])
                    rows, quarantine = self._split(decoded, unknown)
                    if not dead_letters_sent:
                        await self._send_dead_letters(decoded)
                        dead_letters_sent = True
                    result = await self.writer.write(conn, rows, advances, quarantine)
                break
            except FencedOffsets as exc:
                log.warning("offsets fenced, re-seeking: %s", exc, extra={"topic": self._topic})
                await self.seek_to_stored(list(self.positions))
                return
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                metrics.DB_RETRIES.inc()
                first = min(owned.items(), key=lambda kv: kv[0].partition)
                log.warning(
                    "database unavailable, batch held and retried in %.1f s: %s",
                    delay,
                    exc,
                    extra={
                        "topic": self._topic,
                        "partition": first[0].partition,
                        "offset": first[1][0].offset,
                    },
                )
                if stop.is_set():
                    deadline = deadline or time.monotonic() + self._s.shutdown_grace_s
                    if time.monotonic() + delay > deadline:
                        raise DatabaseUnavailable(
                            "stopping with the database away; batch left uncommitted"
                        ) from exc
                await _sleep_or_stop(delay, stop)
                delay = min(delay * 2, self._s.db_retry_max_s)
        for tp, msgs in owned.items():
            self.positions[tp] = msgs[-1].offset + 1
            metrics.MESSAGES_CONSUMED.labels(self._topic).inc(len(msgs))
            hw = self._consumer.highwater(tp) if self._consumer else None
            if hw is not None:
                metrics.CONSUMER_LAG.labels(self._topic, str(tp.partition)).set(
                    max(hw - self.positions[tp], 0)
                )
        metrics.READINGS_VALID.labels(self._topic).inc(len(decoded.keys))
        metrics.ROWS_WRITTEN.labels("copy").inc(result.copied)
        metrics.ROWS_WRITTEN.labels("upsert").inc(result.upserted)
        metrics.ROWS_WRITTEN.labels("unchanged").inc(result.unchanged)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        for q in quarantine:
            metrics.QUARANTINED.labels(q.reason).inc()
        if result.fell_back:
            log.info("straight COPY met a conflict; batch written by upsert", extra={"topic": self._topic})

    def _decode(self, owned: dict[TopicPartition, list[ConsumerRecord]]) -> _Decoded:
        d = _Decoded()
        now = datetime.now(UTC)
        codes = QUALITY_CODES
        for msgs in owned.values():
            for msg in msgs:
                i = len(d.records)
                d.records.append(msg)
                good, bad = self._decoder.decode(msg.value, now)
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

    async def _send_dead_letters(self, d: _Decoded) -> None:
        if not d.problems:
            return
        sends = []
        for i, problems in d.problems.items():
            msg = d.records[i]
            headers = [
                *(msg.headers or ()),
                ("reason", problems[0].reason.encode()),
                ("topic", msg.topic.encode()),
                ("partition", str(msg.partition).encode()),
                ("offset", str(msg.offset).encode()),
                ("error", "; ".join(p.error for p in problems)[:4000].encode()),
            ]
            if len({p.reason for p in problems}) > 1:
                headers.append(("reasons", ",".join(sorted({p.reason for p in problems})).encode()))
            sends.append(
                await self._kafka_producer.send(
                    self._s.topic_deadletter, value=msg.value, key=msg.key, headers=headers
                )
            )
            for p in problems:
                metrics.DEADLETTERED.labels(p.reason).inc()
            log.info(
                "dead-lettered: %s",
                problems[0].error,
                extra={
                    "topic": msg.topic,
                    "partition": msg.partition,
                    "offset": msg.offset,
                    "reason": problems[0].reason,
                },
            )
        await asyncio.gather(*sends)  # acknowledged before the offsets passing them commit

    async def _hint_commit(self) -> None:
        """Kafka's committed offsets are only a hint for lag tools; the database is the truth."""
        now = time.monotonic()
        if now - self._last_hint < _HINT_COMMIT_EVERY_S or not self.positions or self._consumer is None:
            return
        self._last_hint = now
        assigned = self._kafka_consumer.assignment()
        offsets = {
            tp: OffsetAndMetadata(pos, "")
            for tp, pos in self.positions.items()
            if pos >= 0 and tp in assigned
        }
        if not offsets:
            return
        try:
            await self._kafka_consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress; the next hint will do
            log.info("kafka offset hint not committed: %s", exc, extra={"topic": self._topic})

    async def _retrying(self, op: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        delay = self._s.db_retry_initial_s
        while True:
            try:
                async with self._db.acquire() as conn:
                    return await op(conn)
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                log.warning(
                    "database unavailable, retrying in %.1f s: %s", delay, exc, extra={"topic": self._topic}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._s.db_retry_max_s)


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):  # the delay passed without a stop: that is the normal case
        await asyncio.wait_for(stop.wait(), delay)


async def _create_pool(s: Settings, stop: asyncio.Event, writer: ReadingWriter) -> asyncpg.Pool:
    delay = s.db_retry_initial_s
    while True:
        try:
            return await asyncpg.create_pool(
                s.database_url.get_secret_value(), min_size=1, max_size=2, init=writer.prepare
            )
        except Exception as exc:
            if not is_transient_db_error(exc) or stop.is_set():
                raise IngestError(f"cannot connect to the database: {exc}") from exc
            log.warning("database not reachable yet, retrying in %.1f s: %s", delay, exc)
            await _sleep_or_stop(delay, stop)
            delay = min(delay * 2, s.db_retry_max_s)
