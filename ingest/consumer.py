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
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from ingest import metrics
from ingest.errors import DatabaseUnavailable, FencedOffsets, IngestError
from schemas.messages import InvalidMessage
from schemas.settings import Settings
from wattstream.dberrors import is_transient_db_error

__all__ = [
    "NO_STORED_OFFSET",
    "FencedConsumer",
    "OffsetAdvance",
    "OffsetStore",
]

log = logging.getLogger(__name__)

NO_STORED_OFFSET = -1
_T = TypeVar("_T")
_HINT_COMMIT_EVERY_S = 5.0

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
        self._pool = await self._create_pool(stop)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            client_id=f"{self._client_id}-out",
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self._group,
            client_id=self._client_id,
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
            log.info("consuming", extra={"topic": self._topic, "group": self._group})
            while not stop.is_set():
                batch = await self._consumer.getmany(
                    timeout_ms=s.ingest_batch_timeout_ms, max_records=s.ingest_batch_max_records
                )
                if batch:
                    async with self.batch_lock:
                        owned = self._owned(batch)
                        if owned:
                            await self.process(owned, stop)
                    await self._hint_commit()
                if time.monotonic() - self._last_tick >= s.alert_tick_s and self.positions:
                    self._last_tick = time.monotonic()
                    async with self.batch_lock:
                        await self.tick()
        finally:
            await self._consumer.stop()
            await self._producer.stop()
            await self._pool.close()
            log.info("consumer stopped", extra={"topic": self._topic, "group": self._group})

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
        delay = self._s.db_retry_initial_s
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

    async def send_dead_letters(
        self, problems: Sequence[tuple[ConsumerRecord, Sequence[InvalidMessage]]]
    ) -> None:
        """Dead-letter each record with its reasons; returns once Kafka acknowledged them all."""
        sends = []
        for msg, why in problems:
            headers = [
                *(msg.headers or ()),
                ("reason", why[0].reason.encode()),
                ("topic", msg.topic.encode()),
                ("partition", str(msg.partition).encode()),
                ("offset", str(msg.offset).encode()),
                ("error", "; ".join(p.error for p in why)[:4000].encode()),
            ]
            if len({p.reason for p in why}) > 1:
                headers.append(("reasons", ",".join(sorted({p.reason for p in why})).encode()))
            sends.append(
                await self.producer.send(
                    self._s.topic_deadletter, value=msg.value, key=msg.key, headers=headers
                )
            )
            for p in why:
                metrics.DEADLETTERED.labels(p.reason).inc()
            log.info(
                "dead-lettered: %s",
                why[0].error,
                extra={
                    "topic": msg.topic,
                    "partition": msg.partition,
                    "offset": msg.offset,
                    "reason": why[0].reason,
                },
            )
        await asyncio.gather(*sends)  # acknowledged before the offsets passing them commit

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
            await self.kafka_consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress; the next hint will do
            log.info("kafka offset hint not committed: %s", exc, extra={"topic": self._topic})

    async def _retrying(self, op: Callable[[asyncpg.Connection], Awaitable[_T]]) -> _T:
        delay = self._s.db_retry_initial_s
        while True:
            try:
                async with self.db.acquire() as conn:
                    return await op(conn)
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                log.warning(
                    "database unavailable, retrying in %.1f s: %s", delay, exc, extra={"topic": self._topic}
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._s.db_retry_max_s)

    async def _create_pool(self, stop: asyncio.Event) -> asyncpg.Pool:
        s = self._s
        delay = s.db_retry_initial_s
        while True:
            try:
                return await asyncpg.create_pool(
                    s.database_url.get_secret_value(), min_size=1, max_size=2, init=self.prepare_connection
                )
            except Exception as exc:
                if not is_transient_db_error(exc) or stop.is_set():
                    raise IngestError(f"cannot connect to the database: {exc}") from exc
                log.warning("database not reachable yet, retrying in %.1f s: %s", delay, exc)
                await _sleep_or_stop(delay, stop)
                delay = min(delay * 2, s.db_retry_max_s)


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):  # the delay passed without a stop: that is the normal case
        await asyncio.wait_for(stop.wait(), delay)
