"""The spine against real Kafka and TimescaleDB: every valid reading stored exactly once,
every invalid message dead-lettered alone with its reason, through crashes and a database outage."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
from helpers import (
    Stream,
    api_server,
    deploy,
    make_key,
    make_stream,
    read_topic,
    reading_stats,
    streaming,
    wait_for,
)

from schemas.deadletter import read_dead_letter
from schemas.settings import Settings

pytestmark = pytest.mark.integration


def _dead_letter_summary(records: list) -> tuple[Counter[str], set[tuple[int, int]]]:
    reasons: Counter[str] = Counter()
    origins: set[tuple[int, int]] = set()
    for r in records:
        d = read_dead_letter(r.headers)
        reasons[d.reason] += 1
        origins.add((d.partition, d.offset))
    return reasons, origins


async def _wait_for_rows(s: Settings, stream: Stream, at_least: int, within: float) -> None:
    async def enough() -> bool | int:
        rows = (await reading_stats(s, stream.sites))[0]
        return True if rows >= at_least else rows

    await wait_for(enough, within, f"{at_least} rows", interval=0.1)


async def _wait_until_stored(s: Settings, stream: Stream, within: float) -> None:
    await _wait_for_rows(s, stream, stream.valid, within)


async def _assert_exact(s: Settings, stream: Stream, *, dead_letters_exact: bool = True) -> None:
    await asyncio.sleep(2)  # anything extra would have arrived by now
    rows, energy, distinct = await reading_stats(s, stream.sites)
    assert rows == stream.valid == 19_800
    assert distinct == rows
    assert energy == pytest.approx(stream.energy_sum, rel=1e-12)
    records = await read_topic(s, s.topic_deadletter)
    reasons, origins = _dead_letter_summary(records)
    assert len(origins) == 200, "every invalid message dead-lettered, each once by origin"
    if dead_letters_exact:
        assert len(records) == 200
        assert reasons == stream.reasons
    else:
        # a crash between the dead letter's ack and the offset commit repeats it; its origin headers dedupe
        assert set(reasons) == set(stream.reasons)
    assert len(stream.reasons) >= 8
    # the dead letter carries the original bytes
    sent = {v for _, v in stream.messages}
    assert all(r.value in sent for r in records)


async def test_stream_of_20k_with_200_invalid(pipeline: Settings, tmp_path: Path) -> None:
    stream = make_stream("spine")
    async with streaming(pipeline, stream.messages, tmp_path / "worker.log") as (worker, producing):
        await producing
        await _wait_until_stored(pipeline, stream, 120)
        await _assert_exact(pipeline, stream)
        drain_s = worker.terminate()
        assert drain_s < 10, f"SIGTERM drain took {drain_s:.1f} s"
        assert worker.proc is not None and worker.proc.returncode == 0


async def test_sigkill_twice_mid_stream(pipeline: Settings, tmp_path: Path) -> None:
    stream = make_stream("kill", seed=11)
    async with streaming(pipeline, stream.messages, tmp_path / "worker.log", seconds=12) as (
        worker,
        producing,
    ):
        for at_least in (2_000, 8_000):
            await _wait_for_rows(pipeline, stream, at_least, 90)
            worker.kill()
            worker.start()
        await producing
        await _wait_until_stored(pipeline, stream, 120)
        await _assert_exact(pipeline, stream, dead_letters_exact=False)


async def test_database_outage_pauses_and_resumes(pipeline: Settings, tmp_path: Path) -> None:
    """The worker holds its batches through a database restart and loses nothing; the API
    answers 503 with Retry-After, in the one error shape, while the database is away, and
    recovers by itself."""
    stream = make_stream("outage", seed=13)
    log = tmp_path / "worker.log"
    site = sorted(stream.sites)[0]
    token = await make_key(pipeline, "operator")
    async with (
        api_server(pipeline) as base,
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api,
        streaming(pipeline, stream.messages, log, seconds=15) as (worker, producing),
    ):
        try:
            await _wait_for_rows(pipeline, stream, 1_000, 90)
            assert (await api.get(f"/v1/sites/{site}/meters")).status_code == 200
            await deploy("timescaledb", "stop")
            away = await api.get(f"/v1/sites/{site}/meters")
            assert away.status_code == 503, away.text
            assert away.headers["retry-after"] == "2"
            assert away.json() == {
                "error": {
                    "code": "database_unavailable",
                    "message": "the database is unavailable; retry shortly",
                    "field": None,
                }
            }
            assert (await api.get("/readyz")).status_code == 503
            await asyncio.sleep(20)
            assert worker.alive(), "the worker must ride out a database outage"
        finally:
            await deploy("timescaledb", "start")

        async def api_back() -> bool | int:
            status = (await api.get(f"/v1/sites/{site}/meters")).status_code
            return status == 200 or status

        await wait_for(api_back, 30, "the API to answer from the database again")
        await producing
        await _wait_until_stored(pipeline, stream, 180)
        await _assert_exact(pipeline, stream)
        assert worker.alive()
        assert "database unavailable" in log.read_text()


async def test_unknown_meters_dead_lettered_by_setting(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update={"unknown_meters": "deadletter"})
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        await conn.execute("INSERT INTO sites (site_id) VALUES ('pol-site')")
        await conn.execute("INSERT INTO meters (site_id, meter) VALUES ('pol-site', 'main')")
    finally:
        await conn.close()
    known = [
        {"site": "pol-site", "meter": "main", "ts": 1_764_000_000_000 + i * 60_000, "energy_kwh": i}
        for i in range(5)
    ]
    unknown_meter = {"site": "pol-site", "meter": "ghost", "ts": 1_764_000_000_000, "energy_kwh": 1.0}
    unknown_site = {"site": "pol-nowhere", "meter": "main", "ts": 1_764_000_000_000, "energy_kwh": 1.0}
    mixed_batch = {"readings": [*known[3:], unknown_meter]}
    messages = [(b"pol-site", json.dumps(r).encode()) for r in known[:3]]
    messages += [
        (b"pol-site", json.dumps(mixed_batch).encode()),
        (b"pol-site", json.dumps(unknown_meter).encode()),
        (b"pol-nowhere", json.dumps(unknown_site).encode()),
    ]
    async with streaming(s, messages, tmp_path / "worker.log") as (_, producing):
        await producing

        async def stored() -> bool | int:
            rows = (await reading_stats(s, {"pol-site", "pol-nowhere"}))[0]
            dead = len(await read_topic(s, s.topic_deadletter))
            return True if rows >= 5 and dead >= 3 else (rows, dead)

        await wait_for(stored, 60, "5 rows and 3 dead letters")
        await asyncio.sleep(1)
        assert (await reading_stats(s, {"pol-site", "pol-nowhere"}))[0] == 5
        records = await read_topic(s, s.topic_deadletter)
        assert sorted(json.loads(r.value) == mixed_batch for r in records) == [False, False, True]
        assert {read_dead_letter(r.headers).reason for r in records} == {"unknown_meter"}
        c = await asyncpg.connect(s.migrate_database_url.get_secret_value())
        try:
            assert await c.fetchval("SELECT count(*) FROM sites WHERE site_id = 'pol-nowhere'") == 0
        finally:
            await c.close()
