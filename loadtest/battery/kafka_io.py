"""Kafka as the battery's producer and observer: paced production that rides out a broker
restart, the topic ends, and everything a topic holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from schemas.settings import Settings

__all__ = ["Message", "Origin", "end_offsets", "max_record_bytes", "produce", "read_topic"]

Origin = tuple[int, int]  # (partition, offset) in the readings topic
_MAX_REQUEST = 16 * 1024 * 1024  # the battery sends records up to a few MB on purpose
_CHUNK = 200


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    readings: int = 0  # good readings it carries (for pacing and progress)


async def produce(
    s: Settings,
    messages: Sequence[Message],
    seconds: float,
    *,
    on_chunk: Callable[[int], None] | None = None,
    give_up_after: float = 180.0,
) -> list[Origin | None]:
    """Send `messages` in order to the readings topic, spread evenly over about `seconds`, each
    acknowledged by the broker (acks=all) before the next chunk; returns where each landed.

    A chunk that fails (the broker restarting) is sent again until `give_up_after` seconds pass
    without success: a good reading sent twice is a duplicate the pipeline must absorb anyway."""
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap,
        acks="all",
        linger_ms=5,
        max_request_size=_MAX_REQUEST,
        request_timeout_ms=15_000,
    )
    await producer.start()
    where: list[Origin | None] = [None] * len(messages)
    t0 = time.monotonic()
    chunks = max((len(messages) + _CHUNK - 1) // _CHUNK, 1)
    try:
        for c in range(chunks):
            todo = list(range(c * _CHUNK, min((c + 1) * _CHUNK, len(messages))))
            failing_since: float | None = None
            while todo:
                futures = []
                for i in todo:
                    m = messages[i]
                    try:
                        futures.append(
                            await producer.send(
                                s.topic_readings, value=m.value, key=m.key, headers=list(m.headers)
                            )
                        )
                    except KafkaError as exc:
                        futures.append(_failed(exc))
                results = await asyncio.gather(*futures, return_exceptions=True)
                retry = []
                for i, r in zip(todo, results, strict=True):
                    if isinstance(r, BaseException):
                        retry.append(i)
                    else:
                        where[i] = (r.partition, r.offset)
                todo = retry
                if todo:
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > give_up_after:
                        raise RuntimeError(f"Kafka refused {len(todo)} messages for {give_up_after:.0f} s")
                    await asyncio.sleep(0.5)
            if on_chunk is not None:
                on_chunk(min((c + 1) * _CHUNK, len(messages)))
            ahead = t0 + seconds * (c + 1) / chunks - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(producer.stop(), 30)
    return where


def _failed(exc: BaseException) -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def end_offsets(s: Settings, topic: str, partitions: int) -> dict[int, int] | None:
    """The end offset of every partition; None while the broker cannot say."""
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=5_000)
    try:
        await asyncio.wait_for(consumer.start(), 10)
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await asyncio.wait_for(consumer.end_offsets(parts), 10)
        return {tp.partition: int(v) for tp, v in ends.items()}
    except (KafkaError, OSError, TimeoutError):
        return None
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(consumer.stop(), 10)


async def max_record_bytes(s: Settings, topic: str, within: float = 30.0) -> int:
    """The topic's `max.message.bytes` as the broker applies it: the largest record batch it takes.
    (A topic created a moment ago may not be known to the broker's config handler yet.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    deadline = time.monotonic() + within
    why = "no answer"
    try:
        while time.monotonic() < deadline:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": None})]
            )
            for response in responses:
                for error, message, _type, _name, entries, *_ in response.resources:
                    why = f"error {error}: {message}"
                    for entry in entries if not error else ():
                        if entry[0] == "max.message.bytes":
                            return int(entry[1])
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise RuntimeError(f"the broker did not say the max.message.bytes of {topic} ({why})")


async def read_topic(s: Settings, topic: str, partitions: int) -> list[ConsumerRecord]:
    """Every record the topic holds now, read without a consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=s.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=_MAX_REQUEST,
        fetch_max_bytes=4 * _MAX_REQUEST,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(msgs)
        return records
    finally:
        await consumer.stop()
