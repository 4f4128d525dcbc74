"""The derived-topic reader: the Kafka consumer that feeds the hub, one per API process.

The consumer (no consumer group: every API process reads everything) is assigned every
partition of the derived topics and, at start, seeks back `warm` records per partition, so the
hub's per-channel ring buffers are warm and a client can resume with `Last-Event-ID` across API
restarts. An event's id is `<partition>.<offset>` of its Kafka record, so ids are the same in
every API process and ordered within a channel (a channel's key always maps to one partition).
Clients never create Kafka consumers: this one, started in the API's lifespan, serves them all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from api.streams.hub import Event, StreamHub
from runtime.backoff import Backoff, pause

__all__ = ["ALERTS_CHANNEL", "DerivedTopics", "derived_consumer", "run_derived_consumer"]

log = logging.getLogger(__name__)

ALERTS_CHANNEL: Final = "alerts:all"


def _channel_of(topic_kinds: dict[str, str]) -> Callable[[str, bytes | None], str | None]:
    """Grid and site topics: a channel per key (region, site). Alerts: one channel, each client
    filtered by its scope (alert keys are fingerprints; nobody subscribes to one)."""

    def channel(topic: str, key: bytes | None) -> str | None:
        kind = topic_kinds.get(topic)
        if kind == "alerts":
            return ALERTS_CHANNEL
        return None if kind is None or key is None else f"{kind}:{key.decode(errors='replace')}"

    return channel


@dataclass(frozen=True)
class DerivedTopics:
    """What the stream consumer reads: each topic's stream kind and partition count."""

    bootstrap: str
    kinds: dict[str, str]  # topic -> "grid" | "site" | "alerts"
    partitions: dict[str, int]
    warm: int  # records to read back per partition at start


async def run_derived_consumer(topics: DerivedTopics, hub: StreamHub, stop: asyncio.Event) -> None:
    """`derived_consumer`, restarted with backoff when it fails, until `stop`."""
    backoff = Backoff(0.5, 10.0)
    while not stop.is_set():
        try:
            await derived_consumer(topics, hub, stop)
        except Exception as exc:  # the streams pause and recover; the API keeps serving queries
            delay = backoff.failed()
            if isinstance(exc, KafkaError | OSError):
                log.warning("stream consumer lost Kafka, restarting in %.1f s: %s", delay, exc)
            else:
                log.exception("stream consumer failed, restarting in %.1f s", delay)
            await pause(delay, stop)


async def derived_consumer(topics: DerivedTopics, hub: StreamHub, stop: asyncio.Event) -> None:
    """Read the derived topics into the hub until `stop`; starts `warm` records back per partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=topics.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        client_id="wattstream-api-streams",
        isolation_level="read_committed",
    )
    channel = _channel_of(topics.kinds)
    await consumer.start()
    try:
        # every partition, as `wattstream topics` creates them (the settings are their source)
        partitions = [TopicPartition(t, p) for t, n in topics.partitions.items() for p in range(n)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        begins = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(ends[tp] - topics.warm, begins[tp]))
        caught_up = _CatchUp(consumer, partitions, hub)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    name = channel(tp.topic, r.key)
                    if name is not None and r.value is not None:
                        tags = tuple((k, v.decode(errors="replace")) for k, v in r.headers or ())
                        hub.publish(Event(name, tp.partition, r.offset, r.value, tags))
            await caught_up.check()
    finally:
        if hub.on_live is not None:
            hub.on_live(False)
        await consumer.stop()


class _CatchUp:
    """Tells the hub, about once a second, whether this consumer has read everything that was in
    the topics a check earlier. aiokafka does not raise when it loses a broker (it retries and
    returns empty batches), so "no error" is not "live": this asks the broker for the ends and
    compares them with what was read."""

    EVERY_S: Final = 1.0

    def __init__(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], hub: StreamHub) -> None:
        self.consumer, self.partitions, self.hub = consumer, partitions, hub
        self.ends: dict[TopicPartition, int] | None = None
        self.due = 0.0

    async def check(self) -> None:
        if self.hub.on_live is None or time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.EVERY_S
        try:
            if self.ends is not None:
                read = {tp: await self.consumer.position(tp) for tp in self.partitions}
                self.hub.on_live(all(read[tp] >= end for tp, end in self.ends.items()))
            self.ends = await asyncio.wait_for(self.consumer.end_offsets(self.partitions), self.EVERY_S)
        except (KafkaError, TimeoutError) as exc:
            log.warning("stream consumer cannot reach Kafka: %s", exc)
            self.hub.on_live(False)
            self.ends = None
