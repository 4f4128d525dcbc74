"""Readings to Kafka: one record per reading, or batches of one site's readings, keyed by site."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from schemas.messages import Reading, encode_reading
from schemas.settings import Settings

__all__ = ["ReadingSender", "SendCounts", "reading_producer"]


class SendCounts(Protocol):
    """Where a sender counts what it handed to Kafka."""

    readings: int
    messages: int


def reading_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """An idempotent producer that waits for every in-sync replica: a source's readings are not
    duplicated by its own retries, and an acknowledged reading survives a broker restart."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )


class ReadingSender:
    """Readings to Kafka records keyed by site: one reading, or `batch` of one site per record."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, batch: int, summary: SendCounts) -> None:
        self._producer, self._topic, self._batch, self._summary = producer, topic, batch, summary
        self._buffers: dict[str, list[Reading]] = {}
        self._pending: list[asyncio.Future[Any]] = []

    async def add(self, reading: Reading) -> None:
        if self._batch == 1:
            await self._send(reading.site, reading)
            return
        buffer = self._buffers.setdefault(reading.site, [])
        buffer.append(reading)
        if len(buffer) >= self._batch:
            del self._buffers[reading.site]
            await self._send(reading.site, buffer)

    async def flush(self) -> None:
        """Send partial batches, then wait for every delivery; a failed one raises."""
        buffers, self._buffers = self._buffers, {}
        for site, buffer in buffers.items():
            await self._send(site, buffer)
        await self._producer.flush()
        await self._settle()

    async def _send(self, site: str, readings: Reading | list[Reading]) -> None:
        self._pending.append(
            await self._producer.send(self._topic, encode_reading(readings), key=site.encode())
        )
        self._summary.readings += len(readings) if isinstance(readings, list) else 1
        self._summary.messages += 1
        if len(self._pending) >= 10_000:
            await self._settle()

    async def _settle(self) -> None:
        # asyncio.wait, not gather: being cancelled here must not cancel the delivery futures
        if self._pending:
            await asyncio.wait(self._pending)
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()
