"""End-to-end ingest benchmark: readings in Kafka → rows in TimescaleDB, as a ratio to raw COPY.

Reference: raw asyncpg `copy_records_to_table` of the same rows into the same (indexed,
empty) hypertable on the same box, in the same run. wattstream: the ingest worker draining a
topic pre-filled with the same readings (decode, validate, resolve meters, split, COPY, meter
state, fenced offsets, commit, and the batch stages the CLI passes). Both start from an empty
table in a fresh database.

    wattstream bench --only ingest --readings 300000 --per-message 100
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from ingest.registry import MeterRecord, SiteRecord, register
from ingest.worker import IngestWorker
from ingest.writer import BatchStage
from loadtest.scratch import scratch
from schemas.settings import Settings

__all__ = ["Stages", "report", "run"]

Stages = Callable[[Settings], Sequence[BatchStage]]  # the composition root's batch_stages

_T0 = datetime(2026, 1, 1, tzinfo=UTC)


# (site, meter, epoch ms, energy_kwh, power_kw)
Row = tuple[str, str, int, float, float]


def _readings(n: int, sites: int, meters_per_site: int) -> list[Row]:
    meters = sites * meters_per_site
    t0_ms = int(_T0.timestamp() * 1000)
    rows: list[Row] = []
    for i in range(n):
        m, k = i % meters, i // meters
        rows.append(
            (
                f"bench-{m // meters_per_site:04d}",
                f"m{m % meters_per_site}",
                t0_ms + k * 60_000,
                1000.0 + k * 0.25,
                15.0,
            )
        )
    return rows


async def _raw_copy_rate(s: Settings, readings: list[Row]) -> float:
    """Rows/s of plain COPY of the same rows into the empty readings hypertable."""
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        ids: dict[tuple[str, str], int] = {}
        records = [
            (ids.setdefault((site, meter), len(ids) + 1), datetime.fromtimestamp(ts / 1000, UTC), e, p, 0)
            for site, meter, ts, e, p in readings
        ]
        t0 = time.perf_counter()
        for i in range(0, len(records), 5000):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "readings",
                    records=records[i : i + 5000],
                    columns=["meter_id", "ts", "energy_kwh", "power_kw", "quality"],
                )
        elapsed = time.perf_counter() - t0
        await conn.execute("TRUNCATE readings")
        return len(records) / elapsed
    finally:
        await conn.close()


async def _produce(s: Settings, readings: list[Row], per_message: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        by_site: dict[str, list[dict[str, object]]] = {}
        for site, meter, ts, e, p in readings:
            by_site.setdefault(site, []).append(
                {"site": site, "meter": meter, "ts": ts, "energy_kwh": e, "power_kw": p}
            )
        futures = []
        for site, rs in by_site.items():
            for i in range(0, len(rs), per_message):
                chunk = rs[i : i + per_message]
                value = json.dumps(chunk[0] if per_message == 1 else {"readings": chunk}).encode()
                futures.append(await producer.send(s.topic_readings, value=value, key=site.encode()))
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _wattstream_rate(s: Settings, n: int, stages: Stages) -> tuple[float, float]:
    """(rows/s, seconds to the first committed row) of the worker draining the topic."""
    stop = asyncio.Event()
    worker = IngestWorker(s, stages(s))
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    task = asyncio.create_task(worker.run(stop))
    try:
        t0 = time.perf_counter()
        first = None
        while True:
            count = await conn.fetchval("SELECT count(*) FROM readings")
            now = time.perf_counter()
            if count and first is None:
                first = now
            if count >= n:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        assert first is not None
        # the clock starts at the first commit: group join and partition assignment are not throughput
        return n / (now - first), first - t0
    finally:
        stop.set()
        await task
        await conn.close()


async def run(
    base: Settings,
    readings_n: int,
    per_message: int,
    *,
    stages: Stages,
    sites: int,
    meters_per_site: int,
    region: str | None = None,
) -> dict[str, float]:
    """With `region`, the sites are registered in that grid region first, so every batch also
    computes their emissions (from the region's annual factor: the bench has no grid feed)."""
    async with scratch(base, "bench", ingest_metrics_port=0) as s:
        readings = _readings(readings_n, sites, meters_per_site)
        raw = await _raw_copy_rate(s, readings)
        if region is not None:
            names = sorted({(site, meter) for site, meter, *_ in readings})
            await register(
                s.database_url.get_secret_value(),
                [SiteRecord(site, region=region) for site in sorted({n[0] for n in names})],
                [MeterRecord(site, meter) for site, meter in names],
            )
        t0 = time.perf_counter()
        await _produce(s, readings, per_message)
        produce_s = time.perf_counter() - t0
        rate, startup = await _wattstream_rate(s, readings_n, stages)
        return {
            "readings": readings_n,
            "per_message": per_message,
            "emissions": 1.0 if region is not None else 0.0,
            "raw_copy_rows_s": raw,
            "wattstream_rows_s": rate,
            "ratio": rate / raw,
            "produce_s": produce_s,
            "startup_s": startup,
        }


def report(r: dict[str, float]) -> str:
    return "\n".join(
        [
            f"ingest end to end: {r['readings']:,.0f} readings, {r['per_message']:.0f} per message"
            + (", sites in a grid region (emissions computed in-stream)" if r.get("emissions") else ""),
            f"  reference raw asyncpg COPY : {r['raw_copy_rows_s']:>10,.0f} rows/s",
            f"  wattstream Kafka → DB      : {r['wattstream_rows_s']:>10,.0f} rows/s",
            f"  ratio (wattstream / COPY)  : {r['ratio']:.2f}",
            f"  (producing took {r['produce_s']:.1f} s; first commit {r['startup_s']:.1f} s after start)",
        ]
    )
