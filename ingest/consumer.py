"""What every wattstream consumer shares: offsets kept in the database, fenced, and the loop.

Exactly-once effect: a consumer's offsets live in the database, written in the transaction
that writes the rows they produced; on assignment it seeks to them. Offsets are fenced: the
stored offset of each partition must still be the one this consumer last saw, or another
consumer has taken the partition over and the transaction rolls back. A record is
dead-lettered alone, never with its batch, and the dead letter is acknowledged by Kafka before
the offset that passes it commits, so nothing is lost (a crash in between repeats the dead
letter, which carries its origin topic/partition/offset for de-duplication).

`FencedConsumer` runs the loop (batches, rebalances, database outages, Kafka offset hints);
a subclass says what a batch does (`process`), using `in_transaction` for its database work.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from core.jsonscan import nesting_exceeds
from ingest import metrics
from ingest.errors import DatabaseUnavailable, FencedOffsets, IngestError, Stopping
from ingest.topics import max_message_bytes
from runtime.backoff import Backoff, pause
from runtime.dberrors import is_transient_db_error
from schemas.deadletter import dead_letter_headers
from schemas.messages import InvalidMessage
from schemas.settings import Settings

__all__ = [
    "NO_STORED_OFFSET",
    "FencedConsumer",
    "OffsetAdvance",
    "OffsetStore",
    "fit_dead_letter",
]

log = logging.getLogger(__name__)

NO_STORED_OFFSET = -1
_T = TypeVar("_T")
_HINT_COMMIT_EVERY_S = 5.0
_HINT_COMMIT_WITHIN_S = 2.0

_ADVANCE_OFFSETS = """
WITH advance AS (
    SELECT * FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS a(partition, expected, next_offset)
)
INSERT INTO ingest_offsets AS o (consumer_group, topic, partition, next_offset)
SELECT $1, $2, partition, next_offset FROM advance
ON CONFLICT (consumer_group, topic, partition) DO UPDATE
   SET next_offset = EXCLUDED.next_offset, updated_at = now()
 WHERE o.next_offset = (SELECT expected FROM advance WHERE advance.partition = o.partition)
RETURNING partition
"""
_STORED_OFFSETS = """
SELECT partition, next_offset FROM ingest_offsets
 WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::int[])
"""
_KEEP_RECORD = """
INSERT INTO dead_letter_records
       (consumer_group, topic, partition, kafka_offset, reason, error, record_key, record_value,
        record_headers, value_length, value_sha256, truncated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12)
ON CONFLICT (consumer_group, topic, partition, kafka_offset) DO UPDATE
   SET truncated = dead_letter_records.truncated OR EXCLUDED.truncated
"""
_COUNT_FAILURE = """
INSERT INTO ingest_failures AS f (consumer_group, topic, partition, kafka_offset, failures, error)
VALUES ($1, $2, $3, $4, 1, $5)
ON CONFLICT (consumer_group, topic, partition, kafka_offset) DO UPDATE
   SET failures = f.failures + 1, error = EXCLUDED.error, last_failed_at = now()
RETURNING failures
"""
# A record's own key beyond this is cut from a dead letter that does not fit its topic.
_TRUNCATED_KEY_BYTES = 1024
_SIZE_SLACK = 16


@dataclass(frozen=True, slots=True)
class OffsetAdvance:
    """Move a partition's stored offset from `expected` (or from no row) to `next_offset`."""

    partition: int
    expected: int
    next_offset: int


class OffsetStore:
    """The stored offsets of one consumer group and topic."""

    def __init__(self, consumer_group: str, topic: str) -> None:
        self.group = consumer_group
        self.topic = topic

    async def stored(self, conn: asyncpg.Connection, partitions: Sequence[int]) -> dict[int, int]:
        rows = await conn.fetch(_STORED_OFFSETS, self.group, self.topic, list(partitions))
        return {r["partition"]: r["next_offset"] for r in rows}

    async def advance(self, conn: asyncpg.Connection, offsets: Sequence[OffsetAdvance]) -> None:
        """Inside the batch transaction; raises FencedOffsets if another consumer moved any on."""
        if not offsets:
            return
        moved = await conn.fetch(
            _ADVANCE_OFFSETS,
            self.group,
            self.topic,
            [o.partition for o in offsets],
            [o.expected for o in offsets],
            [o.next_offset for o in offsets],
        )
        if len(moved) != len(offsets):
            lost = sorted({o.partition for o in offsets} - {r["partition"] for r in moved})
            raise FencedOffsets(f"{self.topic} partitions {lost} were advanced by another consumer")


@dataclass(frozen=True, slots=True)
class _Outgoing:
    """A dead letter as it goes to Kafka."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    truncated: bool


def fit_dead_letter(
    msg: ConsumerRecord, why: Sequence[InvalidMessage], *, max_bytes: int, truncate_to: int
) -> _Outgoing:
    """The dead letter of `msg`: its key, value and headers with the worker's in front, or, when
    that would not fit a record batch of `max_bytes` (the topic's `max.message.bytes`), the
    first `truncate_to` bytes of the value and 1 KiB of the key, with the original's length and
    hash, and without the record's own headers if they still do not fit."""
    value, key = msg.value, msg.key
    own = list(msg.headers or ())

    def ours(truncated: bool) -> list[tuple[str, bytes]]:
        return dead_letter_headers(
            reasons=[p.reason for p in why],
            error="; ".join(p.error for p in why),
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            value=msg.value,
            truncated=truncated,
        )

    headers = ours(False) + own
    if _record_bytes(key, value, headers) <= max_bytes:
        return _Outgoing(key, value, headers, truncated=False)
    cut = ours(True)
    key = key[:_TRUNCATED_KEY_BYTES] if key is not None else None
    headers = cut + own
    if _record_bytes(key, b"", headers) > max_bytes:
        headers = cut
    # as much of the value as the limit leaves room for, up to `truncate_to` (a record's size
    # grows by a few bytes of varint with its value's length: the slack covers them)
    room = max_bytes - _record_bytes(key, b"", headers) - _SIZE_SLACK
    value = (value or b"")[: max(0, min(truncate_to, room))]
    return _Outgoing(key, value, headers, truncated=True)


def _record_bytes(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    # the producer's own estimate of a one-record batch, which it checks against max_request_size
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


# SQLSTATE classes of a deployment at fault, not a record: 42 (an undefined table or column, a
# missing privilege: code ahead of its migration or grants) and 28 (authorisation)
_DEPLOYMENT_SQLSTATES: Final = ("42", "28")
# records given up one after another, none committed between them, before the consumer stops
# giving up and holds instead: a fault that fails every record is not theirs
_MAX_PASSED_IN_A_ROW: Final = 3


def _not_the_records(exc: BaseException) -> bool:
    code = getattr(exc, "sqlstate", None)
    return (
        isinstance(exc, asyncpg.PostgresError) and isinstance(code, str) and code[:2] in _DEPLOYMENT_SQLSTATES
    )


def _kafka_away(exc: BaseException) -> bool:
    """Kafka could not take the batch's output (a broker restarting, a leader moving): the batch
    is held and read again, as it is while the database is away."""
    return isinstance(exc, KafkaError) and (bool(exc.retriable) or isinstance(exc, KafkaTimeoutError))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: FencedConsumer) -> None:
        self._c = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # wait for the batch in flight: its rows and offsets commit before another worker reads them
        async with self._c.batch_lock:
            for tp in revoked:
                self._c.positions.pop(tp, None)
            self._c.forget_state()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._c.seek_to_stored(assigned)


class FencedConsumer(ABC):
    """Consumes one topic until `stop` is set; see the module docstring."""

    def __init__(self, settings: Settings, topic: str, group: str, client_id: str) -> None:
        self._s = settings
        self._topic = topic
        self._group = group
        self._client_id = client_id
        self.offsets = OffsetStore(group, topic)
        self.batch_lock = asyncio.Lock()
        self.positions: dict[TopicPartition, int] = {}  # stored offset per owned partition
        self._pool: asyncpg.Pool | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._last_hint = 0.0
        self._last_tick = time.monotonic()
        self._stop = asyncio.Event()
        self._deadletter_max_bytes = 0  # the dead-letter topic's max.message.bytes, read at start
        self._kafka_backoff = self._backoff()
        self._passed_in_a_row: dict[TopicPartition, int] = {}  # records given up since the last commit

    # --- what a subclass provides ---

    @abstractmethod
    async def process(self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        """Apply one batch of records from partitions this consumer owns."""

    @abstractmethod
    async def prepare_connection(self, conn: asyncpg.Connection) -> None:
        """Per-connection setup (temporary staging tables), run when the pool opens a connection."""

    @abstractmethod
    def forget_state(self) -> None:
        """Drop cached state after a rebalance: another worker may have moved it on."""

    async def tick(self) -> None:  # noqa: B027 - a hook; most consumers have no timer work
        """Timer work between batches (every `alert_tick_s`, holding the batch lock): none by default."""

    # --- the loop ---

    async def run(self, stop: asyncio.Event) -> None:
        s = self._s
        self._stop = stop
        self._pool = await self._create_pool(stop)
        try:
            limits = await self._record_limits(stop)
            # the producer may send whatever the dead-letter topic takes (dead letters are truncated
            # to fit it), and the consumer fetches whatever its topic takes: a record Kafka accepted
            # is one this consumer can read, and dead-letter
            self._deadletter_max_bytes = limits[s.topic_deadletter]
            self._producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                client_id=f"{self._client_id}-out",
                max_request_size=self._deadletter_max_bytes,
            )
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=s.kafka_bootstrap,
                group_id=self._group,
                client_id=self._client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                max_partition_fetch_bytes=max(s.ingest_max_partition_fetch_bytes, limits[self._topic]),
                session_timeout_ms=s.ingest_session_timeout_ms,
                heartbeat_interval_ms=max(s.ingest_session_timeout_ms // 5, 1000),
            )
            log.info(
                "record limits: %d bytes on %s, %d on %s",
                limits[self._topic],
                self._topic,
                self._deadletter_max_bytes,
                s.topic_deadletter,
                extra={"topic": self._topic},
            )
        except BaseException:
            await self._pool.close()
            raise
        try:
            await self._producer.start()
            self._consumer.subscribe([self._topic], listener=_Rebalance(self))
            await self._consumer.start()
            log.info("consuming", extra={"topic": self._topic, "group": self._group})
            while not stop.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=s.ingest_batch_timeout_ms, max_records=s.ingest_batch_max_records
                )
                if batch:
                    async with self.batch_lock:
                        owned = self._owned(batch)
                        if owned:
                            await self._guarded(owned, stop)
                    await self._hint_commit()
                if time.monotonic() - self._last_tick >= s.alert_tick_s and self.positions:
                    self._last_tick = time.monotonic()
                    async with self.batch_lock:
                        await self._guarded_tick()
        except (DatabaseUnavailable, Stopping) as exc:
            if not stop.is_set():
                raise
            # asked to stop while the database or Kafka is away: what is uncommitted is read again
            # by whoever owns the partitions next, so stopping now loses nothing
            log.warning("stopping with a batch uncommitted: %s", exc, extra={"topic": self._topic})
        finally:
            # with the broker away, aiokafka's stop waits on a coordinator it cannot reach: each
            # client gets a bounded share of the shutdown grace, then is left behind
            grace = self._s.shutdown_grace_s
            await _stop_within(self._consumer.stop(), 0.4 * grace, "the Kafka consumer", self._topic)
            await _stop_within(self._producer.stop(), 0.2 * grace, "the Kafka producer", self._topic)
            if not await _stop_within(self._pool.close(), 0.2 * grace, "the database pool", self._topic):
                self._pool.terminate()
            log.info("consumer stopped", extra={"topic": self._topic, "group": self._group})

    # --- what no record may do: stop the loop ---

    async def _guarded(self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event) -> None:
        """Process a batch; if that raises for any reason but the database or Kafka being away,
        find the records at fault (see `_settle`) instead of letting the exception reach the loop."""
        try:
            await self.process(owned, stop)
        except (DatabaseUnavailable, Stopping):
            raise  # stopping with the database or Kafka away: run() ends quietly
        except Exception as exc:  # noqa: BLE001 - the last-resort guard: nothing from a record reaches the loop
            if _kafka_away(exc):
                await self._hold(owned, stop, exc)
                return
            if _not_the_records(exc):
                await self._hold_systemic(owned, stop, exc)
                return
            first = min(owned.items(), key=lambda kv: kv[0].partition)
            log.warning(
                "batch failed, settling it record by record: %r",
                exc,
                extra={"topic": self._topic, "partition": first[0].partition, "offset": first[1][0].offset},
            )
            self.forget_state()
            for tp, msgs in sorted(owned.items(), key=lambda kv: kv[0].partition):
                if not await self._settle(tp, msgs, stop) and tp in self.positions:
                    # what is not settled is read again from the partition's stored offset:
                    # the fetch position is past the batch, and nothing may be skipped
                    self._rewind(tp, msgs[0].offset)
        else:
            self._kafka_backoff.reset()
            for tp in owned:
                self._passed_in_a_row.pop(tp, None)

    async def _settle(self, tp: TopicPartition, msgs: list[ConsumerRecord], stop: asyncio.Event) -> bool:
        """Process `msgs` (in order, of one partition) in halves until each failing record stands
        alone, committing what succeeds; True when all of them are committed or passed. A record
        that fails alone is counted in the database; it is read again after a pause until it has
        failed `ingest_max_failures` times, then kept, dead-lettered and passed (`_give_up`)."""
        if stop.is_set() or tp not in self.positions:
            return False
        # a batch can fail after its commit (publishing its derived events): what is committed is
        # not processed again, and a partition's stored offset never moves back
        msgs = [m for m in msgs if m.offset >= self.positions[tp]]
        if not msgs:
            return True
        try:
            await self.process({tp: msgs}, stop)
        except (DatabaseUnavailable, Stopping):
            raise
        except Exception as exc:  # noqa: BLE001 - halved until the record at fault stands alone
            self.forget_state()
            if self.positions.get(tp, NO_STORED_OFFSET) > msgs[-1].offset:
                # committed, then failed publishing what it derived: nothing of it to read again
                log.warning(
                    "a committed batch failed after its commit: %r",
                    exc,
                    extra={"topic": self._topic, "partition": tp.partition, "offset": msgs[-1].offset},
                )
                return True
            if _kafka_away(exc):
                await self._hold({tp: msgs}, stop, exc)
                return False
            if _not_the_records(exc):
                await self._hold_systemic({tp: msgs}, stop, exc)
                return False
            if len(msgs) > 1:
                mid = len(msgs) // 2
                return await self._settle(tp, msgs[:mid], stop) and await self._settle(tp, msgs[mid:], stop)
            return await self._failed(tp, msgs[0], exc, stop)
        # not moved on: the offsets were fenced and the consumer has sought elsewhere
        settled = bool(self.positions.get(tp) == msgs[-1].offset + 1)
        if settled:
            self._passed_in_a_row.pop(tp, None)
        return settled

    async def _failed(
        self, tp: TopicPartition, msg: ConsumerRecord, exc: Exception, stop: asyncio.Event
    ) -> bool:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        failures: int = await self._retrying(
            lambda conn: conn.fetchval(
                _COUNT_FAILURE, self._group, msg.topic, msg.partition, msg.offset, error
            )
        )
        metrics.PROCESSING_FAILURES.labels(self._topic).inc()
        where = {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
        log.error(
            "processing a record failed (%d of %d)",
            failures,
            self._s.ingest_max_failures,
            exc_info=exc,
            extra=where,
        )
        if failures < self._s.ingest_max_failures:
            # read it again after a pause: a fault that clears (a bug fixed by a redeploy, a
            # resource freed) must not cost a record
            self.kafka_consumer.seek(tp, msg.offset)
            await pause(min(self._s.db_retry_initial_s * 2**failures, self._s.db_retry_max_s), stop)
            return False
        return await self._give_up(tp, msg, f"processing failed {failures} times; last: {error}", stop)

    async def _give_up(
        self, tp: TopicPartition, msg: ConsumerRecord, error: str, stop: asyncio.Event
    ) -> bool:
        """Keep the record's bytes, dead-letter it as `processing_failed` and move past it; unless
        the records before it were passed the same way with none committed between them: a fault
        that fails every record is not theirs, and passing them would drain the stream."""
        if self._passed_in_a_row.get(tp, 0) >= _MAX_PASSED_IN_A_ROW:
            await self._hold_systemic({tp: [msg]}, stop, RuntimeError(error))
            return False
        why = [InvalidMessage("processing_failed", error)]

        async def keep_and_pass(conn: asyncpg.Connection) -> None:
            await self._keep_records(conn, [(msg, why, False)])
            await self.send_dead_letters(conn, [(msg, why)])
            async with conn.transaction():
                await self.offsets.advance(
                    conn, [OffsetAdvance(tp.partition, self.positions[tp], msg.offset + 1)]
                )

        try:
            await self._retrying(keep_and_pass)
        except FencedOffsets as exc:
            log.warning("offsets fenced, re-seeking: %s", exc, extra={"topic": self._topic})
            await self.seek_to_stored(list(self.positions))
            return False
        except Exception as exc:
            if not _kafka_away(exc):
                raise
            await self._hold({tp: [msg]}, stop, exc)
            return False
        self.positions[tp] = msg.offset + 1
        self._passed_in_a_row[tp] = self._passed_in_a_row.get(tp, 0) + 1
        metrics.POISON_PASSED.labels(self._topic).inc()
        log.error(
            "record passed after failing %d times: kept in dead_letter_records, dead-lettered",
            self._s.ingest_max_failures,
            extra={
                "topic": msg.topic,
                "partition": msg.partition,
                "offset": msg.offset,
                "reason": "processing_failed",
            },
        )
        return True

    def _rewind(self, tp: TopicPartition, first: int) -> None:
        stored = self.positions[tp]
        self.kafka_consumer.seek(tp, stored if stored >= 0 else first)

    async def _hold_systemic(
        self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event, exc: Exception
    ) -> None:
        """A failure that is not the records' (the schema or the grants behind the code, records
        failing one after another): hold the batch and read it again after a pause, as while
        the database is away, counted and logged as an error until someone mends it."""
        metrics.PROCESSING_FAILURES.labels(self._topic).inc()
        await self._held(
            owned, stop, exc, logging.ERROR, "processing fails for a reason that is not the records'"
        )

    async def _hold(
        self, owned: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event, exc: Exception
    ) -> None:
        """Kafka could not take a batch's output: read the uncommitted part again after a pause."""
        metrics.KAFKA_RETRIES.inc()
        await self._held(owned, stop, exc, logging.WARNING, "Kafka unavailable")

    async def _held(
        self,
        owned: dict[TopicPartition, list[ConsumerRecord]],
        stop: asyncio.Event,
        exc: Exception,
        level: int,
        why: str,
    ) -> None:
        """Read the uncommitted part of a batch again from each partition's stored offset, after
        a pause that grows while it keeps happening (reset by the next batch that commits)."""
        first = min(owned.items(), key=lambda kv: kv[0].partition)
        delay = self._kafka_backoff.failed()
        log.log(
            level,
            "%s: batch held, read again in %.1f s: %r",
            why,
            delay,
            exc,
            extra={"topic": self._topic, "partition": first[0].partition, "offset": first[1][0].offset},
        )
        for tp, msgs in owned.items():
            if tp in self.positions and self.positions[tp] <= msgs[-1].offset:
                self._rewind(tp, msgs[0].offset)
        self.forget_state()
        await pause(delay, stop)

    async def _guarded_tick(self) -> None:
        try:
            await self.tick()
        except (DatabaseUnavailable, Stopping):
            raise
        except Exception as exc:
            if not (_kafka_away(exc) or is_transient_db_error(exc)):
                metrics.PROCESSING_FAILURES.labels(self._topic).inc()
            # timer work is redone at the next tick from the database's state; a failure here
            # holds nothing back, and is counted and logged rather than stopping the consumer
            log.exception("timer work failed; retried at the next tick", extra={"topic": self._topic})

    def screen(self, msg: ConsumerRecord) -> InvalidMessage | None:
        """Refuse a record value too large or too deeply nested to decode, before decoding it."""
        value = msg.value
        if value is None:
            return None
        if len(value) > self._s.ingest_max_record_bytes:
            return InvalidMessage(
                "too_large",
                f"value is {len(value)} bytes, over the {self._s.ingest_max_record_bytes}-byte limit",
            )
        if nesting_exceeds(value, self._s.ingest_max_json_depth):
            return InvalidMessage(
                "too_deep", f"JSON nests deeper than {self._s.ingest_max_json_depth} levels"
            )
        return None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise IngestError("the consumer is not running")
        return self._pool

    @property
    def kafka_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise IngestError("the consumer is not running")
        return self._consumer

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise IngestError("the consumer is not running")
        return self._producer

    def _owned(
        self, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        owned = {tp: msgs for tp, msgs in batch.items() if msgs and tp in self.positions}
        assigned = self.kafka_consumer.assignment()
        for tp, msgs in batch.items():
            if msgs and tp not in owned and tp in assigned:
                # fetched before this consumer knew the partition's stored offset: read them again later
                self.kafka_consumer.seek(tp, msgs[0].offset)
        return owned

    def advances(self, owned: dict[TopicPartition, list[ConsumerRecord]]) -> list[OffsetAdvance]:
        return [
            OffsetAdvance(tp.partition, self.positions[tp], msgs[-1].offset + 1) for tp, msgs in owned.items()
        ]

    def committed(self, owned: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """After the batch transaction committed: move positions on and report lag."""
        for tp, msgs in owned.items():
            self.positions[tp] = msgs[-1].offset + 1
            metrics.MESSAGES_CONSUMED.labels(self._topic).inc(len(msgs))
            hw = self._consumer.highwater(tp) if self._consumer else None
            if hw is not None:
                metrics.CONSUMER_LAG.labels(self._topic, str(tp.partition)).set(
                    max(hw - self.positions[tp], 0)
                )

    async def seek_to_stored(self, assigned: Sequence[TopicPartition]) -> None:
        """Seek each partition to the offset stored with its rows (the beginning if none)."""
        if not assigned:
            return
        stored = await self._retrying(
            lambda conn: self.offsets.stored(conn, [tp.partition for tp in assigned])
        )
        for tp in assigned:
            offset = stored.get(tp.partition)
            if offset is None:
                await self.kafka_consumer.seek_to_beginning(tp)
                self.positions[tp] = NO_STORED_OFFSET
            else:
                self.kafka_consumer.seek(tp, offset)
                self.positions[tp] = offset
            log.info(
                "partition assigned",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": offset if offset is not None else 0,
                },
            )
        self.forget_state()

    async def in_transaction(
        self,
        owned: dict[TopicPartition, list[ConsumerRecord]],
        stop: asyncio.Event,
        op: Callable[[asyncpg.Connection], Awaitable[_T]],
    ) -> _T | None:
        """Run a batch's database work, retrying while the database is away (the batch is held,
        never skipped). None if the offsets were fenced: the consumer has re-sought and the
        batch will be read again by whoever owns it."""
        deadline: float | None = None
        backoff = self._backoff()
        while True:
            try:
                async with self.db.acquire() as conn:
                    return await op(conn)
            except FencedOffsets as exc:
                log.warning("offsets fenced, re-seeking: %s", exc, extra={"topic": self._topic})
                await self.seek_to_stored(list(self.positions))
                return None
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                metrics.DB_RETRIES.inc()
                first = min(owned.items(), key=lambda kv: kv[0].partition)
                delay = backoff.failed()
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
                await pause(delay, stop)

    async def send_dead_letters(
        self, conn: asyncpg.Connection, problems: Sequence[tuple[ConsumerRecord, Sequence[InvalidMessage]]]
    ) -> None:
        """Dead-letter each record with its reasons; returns once Kafka acknowledged them all. A
        dead letter too large for its topic goes out truncated, its whole record kept first."""
        outgoing = [
            (
                msg,
                why,
                fit_dead_letter(
                    msg,
                    why,
                    max_bytes=self._deadletter_max_bytes,
                    truncate_to=self._s.deadletter_truncate_bytes,
                ),
            )
            for msg, why in problems
        ]
        await self._keep_records(conn, [(msg, why, True) for msg, why, out in outgoing if out.truncated])
        sends = []
        for msg, why, out in outgoing:
            sends.append(
                await self.producer.send(
                    self._s.topic_deadletter, value=out.value, key=out.key, headers=out.headers
                )
            )
            for p in why:
                metrics.DEADLETTERED.labels(p.reason).inc()
            if out.truncated:
                metrics.TRUNCATED_DEAD_LETTERS.inc()
            log.info(
                "dead-lettered%s: %s",
                " (truncated)" if out.truncated else "",
                why[0].error,
                extra={
                    "topic": msg.topic,
                    "partition": msg.partition,
                    "offset": msg.offset,
                    "reason": why[0].reason,
                },
            )
        await self.acked(sends)  # acknowledged before the offsets passing them commit

    async def acked(self, sends: Sequence[asyncio.Future[Any]]) -> None:
        """Wait until Kafka acknowledged every send. Asked to stop meanwhile, wait a share of
        the shutdown grace more, then raise `Stopping`: the batch stays uncommitted (a broker
        that is away would hold the process for the producer's whole request timeout)."""
        if not sends:
            return
        done: asyncio.Future[Any] = asyncio.gather(*sends)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not done.done():
            try:
                await asyncio.wait_for(asyncio.shield(done), self._s.shutdown_grace_s / 4)
            except TimeoutError:
                done.cancel()
                raise Stopping("Kafka had not acknowledged the batch's output when asked to stop") from None
        done.result()

    async def _keep_records(
        self,
        conn: asyncpg.Connection,
        records: Sequence[tuple[ConsumerRecord, Sequence[InvalidMessage], bool]],
    ) -> None:
        """Keep whole records in `dead_letter_records` (idempotent: a repeat keeps the first)."""
        if not records:
            return
        await conn.executemany(
            _KEEP_RECORD,
            [
                (
                    self._group,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    why[0].reason,
                    "; ".join(p.error for p in why),
                    msg.key,
                    msg.value,
                    json.dumps([[k, base64.b64encode(v or b"").decode()] for k, v in msg.headers or ()]),
                    len(msg.value or b""),
                    None if msg.value is None else hashlib.sha256(msg.value).hexdigest(),
                    truncated,
                )
                for msg, why, truncated in records
            ],
        )

    async def _hint_commit(self) -> None:
        """Kafka's committed offsets are only a hint for lag tools; the database is the truth."""
        now = time.monotonic()
        if now - self._last_hint < _HINT_COMMIT_EVERY_S or not self.positions or self._consumer is None:
            return
        self._last_hint = now
        assigned = self.kafka_consumer.assignment()
        offsets = {
            tp: OffsetAndMetadata(pos, "")
            for tp, pos in self.positions.items()
            if pos >= 0 and tp in assigned
        }
        if not offsets:
            return
        try:
            # bounded: with the broker away aiokafka waits for a coordinator it cannot find, and a
            # hint is not worth holding the loop (or a SIGTERM) for
            await asyncio.wait_for(self.kafka_consumer.commit(offsets), _HINT_COMMIT_WITHIN_S)
        except (KafkaError, TimeoutError) as exc:  # a rebalance, or the broker away: the next hint will do
            log.info("kafka offset hint not committed: %r", exc, extra={"topic": self._topic})

    async def _retrying(self, op: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        backoff = self._backoff()
        while True:
            try:
                async with self.db.acquire() as conn:
                    return await op(conn)
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                if self._stop.is_set():
                    raise DatabaseUnavailable("stopping with the database away") from exc
                delay = backoff.failed()
                log.warning(
                    "database unavailable, retrying in %.1f s: %s", delay, exc, extra={"topic": self._topic}
                )
                await pause(delay, self._stop)

    async def _record_limits(self, stop: asyncio.Event) -> dict[str, int]:
        """The topics' max.message.bytes; waits for the broker and for topics just created
        (their metadata reaches the broker's cache a moment later)."""
        topics = [self._s.topic_deadletter, self._topic]
        backoff = self._backoff()
        while True:
            try:
                return await max_message_bytes(self._s.kafka_bootstrap, topics)
            except KafkaError as exc:
                if stop.is_set():
                    raise IngestError(f"cannot read the topics' limits: {exc}") from exc
                delay = backoff.failed()
                log.warning("cannot read the topics' limits yet, retrying in %.1f s: %s", delay, exc)
                await pause(delay, stop)

    async def _create_pool(self, stop: asyncio.Event) -> asyncpg.Pool:
        s = self._s
        backoff = self._backoff()
        while True:
            try:
                return await asyncpg.create_pool(
                    s.database_url.get_secret_value(), min_size=1, max_size=2, init=self.prepare_connection
                )
            except Exception as exc:
                if not is_transient_db_error(exc) or stop.is_set():
                    raise IngestError(f"cannot connect to the database: {exc}") from exc
                delay = backoff.failed()
                log.warning("database not reachable yet, retrying in %.1f s: %s", delay, exc)
                await pause(delay, stop)

    def _backoff(self) -> Backoff:
        return Backoff(self._s.db_retry_initial_s, self._s.db_retry_max_s)


async def _stop_within(closing: Awaitable[None], seconds: float, what: str, topic: str) -> bool:
    """Await a client's stop for at most `seconds`; False when it did not finish. A stop that
    fails is logged, not raised: the process is on its way out and has committed what it could."""
    try:
        await asyncio.wait_for(closing, seconds)
    except TimeoutError:
        log.warning("%s did not stop within %.1f s; left behind", what, seconds, extra={"topic": topic})
        return False
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this task is being cancelled: that is not the client's to swallow
        # aiokafka's fetcher can end in a CancelledError of its own when the broker is away
        log.warning("%s ended cancelled while stopping", what, extra={"topic": topic})
        return False
    except (KafkaError, OSError, asyncpg.PostgresError) as exc:
        log.warning("%s failed to stop cleanly: %s", what, exc, extra={"topic": topic})
        return False
    return True
