"""Nothing a producer sends can stop a partition, against the real Kafka and TimescaleDB: values too
large or too deep are dead-lettered (cut to fit the dead-letter topic, the whole record kept in
the database), forged dead-letter headers cannot pose as the worker's, and a record whose
processing fails is counted across restarts, then kept, dead-lettered and passed."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from helpers import Worker, fetch, read_topic, reading_stats, wait_for

from ingest.worker import IngestWorker
from ingest.writer import BatchStage, ReadingRows
from schemas.deadletter import read_dead_letter
from schemas.settings import Settings
from wattstream.wiring import batch_stages

pytestmark = pytest.mark.integration

T0_MS = 1_764_000_000_000
POISON_KWH = 666.0  # the value the exploding stage cannot take


def _reading(site: str, i: int, energy: float | None = None) -> bytes:
    e = float(i) if energy is None else energy
    return json.dumps({"site": site, "meter": "main", "ts": T0_MS + i * 60_000, "energy_kwh": e}).encode()


async def _send(
    s: Settings, messages: Sequence[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
) -> None:
    # as a producer may: up to the broker's 8 MB, not the client's default 1 MB
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", max_request_size=8_388_608)
    await producer.start()
    try:
        for key, value, headers in messages:
            await (await producer.send(s.topic_readings, value=value, key=key, headers=headers))
    finally:
        await producer.stop()


async def test_hostile_values_are_dead_lettered_and_nothing_stops(pipeline: Settings, tmp_path: Path) -> None:
    site = "poison-a"
    key = site.encode()
    big = b'{"site": "' + b"x" * 1_500_000 + b'"}'  # 1.5 MB: over the client's default request size
    huge = b" " * 7_000_000 + b"{}"  # 7 MB: over the consumer's 4 MB partition fetch setting
    deep = b'{"readings":[' + b"[" * 1000 + b"]" * 1000 + b"]}"
    forged = [("reason", b"ok"), ("wattstream.reason", b"forged"), ("wattstream.origin.offset", b"1")]
    bad: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], str]] = [
        (key, big, [], "too_large"),
        (key, huge, [], "too_large"),
        (key, deep, [], "too_deep"),
        (key, b'{"readings": null}', [], "wrong_type"),
        (key, b"\x00\xff", forged, "not_json"),
        (None, b"", [], "not_json"),
        (key, None, [], "not_json"),
    ]
    good = [(key, _reading(site, i), []) for i in range(40)]
    messages = [*good[:20], *[(k, v, h) for k, v, h, _ in bad], *good[20:]]
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    try:
        await _send(pipeline, messages)

        async def settled() -> object:
            rows = (await reading_stats(pipeline, {site}))[0]
            dead = len(await read_topic(pipeline, pipeline.topic_deadletter))
            return (rows, dead) == (40, len(bad)) or (rows, dead)

        await wait_for(settled, 90, "40 rows and every bad record dead-lettered")
        assert worker.alive(), "no record may stop the worker"
    finally:
        if worker.alive():
            worker.terminate()
    records = await read_topic(pipeline, pipeline.topic_deadletter)
    assert len({read_dead_letter(r.headers).origin for r in records}) == len(records) == len(bad)
    for _key, value, headers, reason in bad:
        # each carries its original bytes whole: the dead-letter topic takes 8 MB, so even the
        # 7 MB one fits (truncation is for what does not fit, below)
        (r,) = [r for r in records if r.value == value]
        d = read_dead_letter(r.headers)
        assert (d.reason, d.topic, d.truncated) == (reason, pipeline.topic_readings, False)
        own = list(r.headers)[len(r.headers) - len(headers) :] if headers else []
        assert own == headers, "the record's own headers follow the worker's, as they were"


async def test_a_dead_letter_too_large_for_its_topic_is_cut_and_kept(
    pipeline: Settings, tmp_path: Path
) -> None:
    # a dead-letter topic that takes less than the readings topic: its own max.message.bytes
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka_bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, pipeline.topic_deadletter, {"max.message.bytes": "1000000"}
                )
            ]
        )
    finally:
        await admin.close()
    site = "poison-b"
    value = (
        b'{"x": "' + bytes(range(97, 123)) * 80_000 + b'"}'
    )  # 2 MB: too large to ingest, too large to forward
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    try:
        await _send(
            pipeline, [(site.encode(), value, [("trace", b"abc")]), (site.encode(), _reading(site, 1), [])]
        )

        async def settled() -> object:
            rows = (await reading_stats(pipeline, {site}))[0]
            dead = len(await read_topic(pipeline, pipeline.topic_deadletter))
            return (rows, dead) == (1, 1) or (rows, dead)

        await wait_for(settled, 60, "the reading stored and the dead letter sent")
        assert worker.alive()
    finally:
        worker.terminate()
    (r,) = await read_topic(pipeline, pipeline.topic_deadletter)
    d = read_dead_letter(r.headers)
    assert (d.reason, d.truncated, d.length, d.sha256) == (
        "too_large",
        True,
        len(value),
        hashlib.sha256(value).hexdigest(),
    )
    assert r.value == value[: pipeline.deadletter_truncate_bytes]
    assert r.headers[-1] == ("trace", b"abc")
    (kept,) = await fetch(
        pipeline,
        "SELECT * FROM dead_letter_records WHERE topic = $1 AND kafka_offset = $2",
        pipeline.topic_readings,
        d.offset,
    )
    assert bytes(kept["record_value"]) == value, "the whole record is kept in the database"
    assert (kept["reason"], kept["truncated"], kept["value_length"]) == ("too_large", True, len(value))
    assert json.loads(kept["record_headers"]) == [["trace", "YWJj"]]


class _Exploding:
    """A batch stage that fails on one value, as a bug meeting an input it did not foresee would."""

    def __init__(self) -> None:
        self.failures = 0

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if (rows.energy_kwh == POISON_KWH).any():
            self.failures += 1
            raise RuntimeError("this stage cannot take 666 kWh")


@asynccontextmanager
async def _running(s: Settings, stages: list[BatchStage]) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(IngestWorker(s, stages).run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_record_that_keeps_failing_is_counted_kept_and_passed(pipeline: Settings) -> None:
    s = pipeline.model_copy(update={"ingest_max_failures": 4, "db_retry_initial_s": 0.05})
    site = "poison-c"
    key = site.encode()
    messages = [(key, _reading(site, i), []) for i in range(30)]
    messages.insert(15, (key, _reading(site, 100, POISON_KWH), []))
    exploding = _Exploding()
    count = "SELECT failures FROM ingest_failures WHERE topic = $1"

    # a first worker meets it twice and is stopped: its count survives in the database
    async with _running(s, [*batch_stages(s), exploding]):
        await _send(s, messages)

        async def failed_twice() -> object:
            rows = await fetch(s, count, s.topic_readings)
            return (bool(rows) and rows[0]["failures"] >= 2) or rows

        await wait_for(failed_twice, 60, "two failures counted")
    assert (await reading_stats(s, {site}))[0] == 15, "the readings before it are committed, none after"
    done = (await fetch(s, count, s.topic_readings))[0]["failures"]

    # the next worker carries on counting and passes it at the fourth failure
    async with _running(s, [*batch_stages(s), exploding]) as task:

        async def passed() -> object:
            rows = (await reading_stats(s, {site}))[0]
            return rows == 30 or rows

        await wait_for(passed, 60, "every other reading stored")
        assert not task.done(), "the worker carries on"
    (failures,) = await fetch(s, count, s.topic_readings)
    assert failures["failures"] == 4
    assert exploding.failures >= 4 - done
    (kept,) = await fetch(s, "SELECT * FROM dead_letter_records WHERE topic = $1", s.topic_readings)
    assert kept["reason"] == "processing_failed"
    assert bytes(kept["record_value"]) == messages[15][1]
    assert not kept["truncated"]
    dead = [read_dead_letter(r.headers) for r in await read_topic(s, s.topic_deadletter)]
    assert [(d.reason, d.offset) for d in dead] == [("processing_failed", 15)]
    assert "this stage cannot take 666 kWh" in dead[0].error


class _FailsAfterCommit:
    """A publishing stage whose messages cannot be built, as a bug after the commit would."""

    def __init__(self) -> None:
        self.calls = 0
        self._armed = False

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        self._armed = bool((rows.energy_kwh == POISON_KWH).any())

    def take_messages(self) -> list[tuple[str, bytes, bytes]]:
        self.calls += 1
        if self._armed:
            self._armed = False
            raise RuntimeError("cannot build this batch's events")
        return []


async def test_a_failure_after_the_commit_is_not_processed_again(pipeline: Settings) -> None:
    s = pipeline.model_copy(update={"db_retry_initial_s": 0.05})
    site = "poison-d"
    key = site.encode()
    messages = [(key, _reading(site, i, POISON_KWH if i == 5 else None), []) for i in range(12)]
    after = _FailsAfterCommit()
    async with _running(s, [*batch_stages(s), after]) as task:
        await _send(s, messages)

        async def stored() -> object:
            rows = (await reading_stats(s, {site}))[0]
            return rows == 12 or rows

        await wait_for(stored, 60, "every reading stored")
        assert not task.done()
    # committed once, never counted as a failing record, never dead-lettered, offsets never back
    assert await fetch(s, "SELECT * FROM ingest_failures WHERE topic = $1", s.topic_readings) == []
    assert await read_topic(s, s.topic_deadletter) == []
    (offset,) = await fetch(s, "SELECT next_offset FROM ingest_offsets WHERE topic = $1", s.topic_readings)
    assert offset["next_offset"] == 12


class _Switchable:
    """A stage that fails every batch while armed, with `error`; applies nothing otherwise."""

    def __init__(self, error: str) -> None:
        self.armed = True
        self.attempts = 0
        self._error = error

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if not self.armed or not len(rows):
            return
        self.attempts += 1
        if self._error == "undefined_table":
            await conn.execute("SELECT * FROM a_table_a_newer_migration_adds")  # code ahead of its schema
        raise RuntimeError("every record fails here")


@pytest.mark.parametrize(("error", "passed"), [("undefined_table", 0), ("every_record", 3)])
async def test_a_fault_that_fails_every_record_holds_instead_of_draining(
    pipeline: Settings, error: str, passed: int
) -> None:
    """A missing table is the deployment's fault: no record is blamed. A fault that fails
    record after record gives up on at most three in a row, then holds the partition."""
    s = pipeline.model_copy(
        update={"db_retry_initial_s": 0.05, "db_retry_max_s": 0.2, "ingest_max_failures": 2}
    )
    site = f"poison-sys-{passed}"
    key = site.encode()
    stage = _Switchable(error)
    async with _running(s, [*batch_stages(s), stage]) as task:
        await _send(s, [(key, _reading(site, i), []) for i in range(20)])

        async def tried_enough() -> object:
            return stage.attempts >= 30 or stage.attempts

        await wait_for(tried_enough, 60, "the stage to fail many times")
        dead = [read_dead_letter(r.headers) for r in await read_topic(s, s.topic_deadletter)]
        assert len(dead) == passed, dead
        assert (await reading_stats(s, {site}))[0] == 0
        stage.armed = False  # the fault is mended: everything else arrives, nothing was skipped

        async def stored() -> object:
            rows = (await reading_stats(s, {site}))[0]
            return rows == 20 - passed or rows

        await wait_for(stored, 60, "the held records stored once the fault is mended")
        assert not task.done()


class _BlipAfterCommit:
    """Fails one value in the batch stage and makes Kafka blip after the commit of another."""

    def __init__(self) -> None:
        self._armed = False
        self._blipped = False

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Nothing per connection."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if (rows.energy_kwh == POISON_KWH).any():
            raise RuntimeError("this stage cannot take 666 kWh")
        self._armed = bool((rows.energy_kwh == 2.0).any())

    def take_messages(self) -> list[tuple[str, bytes, bytes]]:
        if self._armed and not self._blipped:
            from aiokafka.errors import KafkaTimeoutError

            self._blipped = True
            raise KafkaTimeoutError("the broker blinked after this batch committed")
        return []


async def test_a_kafka_blip_after_a_committed_half_skips_nothing(pipeline: Settings) -> None:
    s = pipeline.model_copy(update={"db_retry_initial_s": 0.05, "ingest_max_failures": 2})
    site = "poison-e"
    key = site.encode()
    messages = [(key, _reading(site, i, POISON_KWH if i == 7 else None), []) for i in range(10)]
    # all in the topic before the worker starts: one batch, settled in halves, the first of
    # which (holding the 2 kWh reading) commits and then meets the blip
    await _send(s, messages)
    async with _running(s, [*batch_stages(s), _BlipAfterCommit()]) as task:

        async def stored() -> object:
            rows = (await reading_stats(s, {site}))[0]
            return rows == 9 or rows

        await wait_for(stored, 60, "every reading but the poison stored")
        assert not task.done()
    dead = [read_dead_letter(r.headers) for r in await read_topic(s, s.topic_deadletter)]
    assert [(d.reason, d.offset) for d in dead] == [("processing_failed", 7)]
