"""Helpers for integration tests: a known stream of readings, worker processes, topic reading."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from loadtest.scratch import free_port, make_key, settings_env
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_CST = ZoneInfo("Asia/Shanghai")


# Each invalid kind: (expected dead-letter reason, a function making the bad value)
def _invalid_values(site: str, ts: str) -> dict[str, tuple[str, bytes]]:
    ok = {"site": site, "meter": "main", "ts": ts, "energy_kwh": 1.0}

    def enc(d: dict[str, object]) -> bytes:
        return json.dumps(d).encode()

    return {
        "garbage": ("not_json", b"\x00\xffnot json at all"),
        "truncated": ("not_json", enc(ok)[:-7]),
        "array": ("not_an_object", b"[1, 2, 3]"),
        "naive": ("naive_timestamp", enc({**ok, "ts": ts[:19]})),
        "negative": ("negative_value", enc({**ok, "energy_kwh": -5.0})),
        "nan": ("non_finite_value", enc(ok).replace(b"1.0", b"NaN")),
        "missing": ("missing_field", enc({k: v for k, v in ok.items() if k != "meter"})),
        "unknown": ("unknown_field", enc({**ok, "voltage": 230})),
        "wrong_type": ("wrong_type", enc({**ok, "energy_kwh": "12.5"})),
        "future": ("future_timestamp", enc({**ok, "ts": "2999-01-01T00:00:00+00:00"})),
        "no_measurement": ("no_measurement", enc({k: v for k, v in ok.items() if k != "energy_kwh"})),
        "bad_id": ("bad_identifier", enc({**ok, "site": "has space"})),
    }


@dataclass
class Stream:
    """A produced stream and what a correct pipeline must make of it."""

    messages: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value) in send order
    valid: int = 0
    energy_sum: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    sites: set[str] = field(default_factory=set)
    first_ts: datetime = datetime(2026, 11, 20, tzinfo=UTC)


def make_stream(
    prefix: str, total: int = 20_000, n_sites: int = 50, n_invalid: int = 200, seed: int = 7
) -> Stream:
    """`total` readings over `n_sites` sites (2 meters each), `n_invalid` of them invalid single
    messages of every kind in `_invalid_values`; half the valid ones travel in batch messages."""
    rng = random.Random(seed)
    st = Stream()
    n_valid = total - n_invalid
    per_meter: dict[tuple[str, str], int] = {}
    valid_readings: list[tuple[str, dict[str, object]]] = []
    for i in range(n_valid):
        site = f"{prefix}-site{i % n_sites:03d}"
        meter = "main" if (i // n_sites) % 2 == 0 else "sub-hvac"
        k = per_meter.get((site, meter), 0)
        per_meter[(site, meter)] = k + 1
        ts = st.first_ts + timedelta(minutes=k)
        energy = round(1000.0 + k * rng.uniform(0.5, 2.0), 3)
        reading: dict[str, object] = {"site": site, "meter": meter, "energy_kwh": energy, "power_kw": 30.0}
        # alternate the two timestamp forms: RFC 3339 with +08:00 and epoch milliseconds
        if k % 2:
            reading["ts"] = ts.astimezone(_CST).isoformat()
        else:
            reading["ts"] = int(ts.timestamp() * 1000)
        valid_readings.append((site, reading))
        st.valid += 1
        st.energy_sum += energy
        st.sites.add(site)
    # singles for the first half, batches of up to 40 same-site readings for the rest
    half = len(valid_readings) // 2
    for site, reading in valid_readings[:half]:
        st.messages.append((site.encode(), json.dumps(reading).encode()))
    by_site: dict[str, list[dict[str, object]]] = {}
    for site, reading in valid_readings[half:]:
        by_site.setdefault(site, []).append(reading)
    for site, readings in by_site.items():
        for j in range(0, len(readings), 40):
            st.messages.append((site.encode(), json.dumps({"readings": readings[j : j + 40]}).encode()))
    kinds = list(_invalid_values("x", "2026-11-20T00:00:00+08:00"))
    for i in range(n_invalid):
        site = f"{prefix}-site{i % n_sites:03d}"
        reason, value = _invalid_values(site, "2026-11-21T08:00:00+08:00")[kinds[i % len(kinds)]]
        st.reasons[reason] += 1
        st.messages.insert(rng.randrange(len(st.messages) + 1), (site.encode(), value))
    return st


async def produce(
    settings: Settings, messages: list[tuple[bytes, bytes]], *, seconds: float = 0.0, topic: str | None = None
) -> None:
    """Send messages in order (to the readings topic unless `topic` is given); spread over about
    `seconds` when given (for mid-stream faults)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        chunk = 500
        pause = seconds / max(len(messages) / chunk, 1)
        for i in range(0, len(messages), chunk):
            futures = [
                await producer.send(topic or settings.topic_readings, value=v, key=k)
                for k, v in messages[i : i + chunk]
            ]
            await asyncio.gather(*futures)
            if pause:
                await asyncio.sleep(pause)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record currently in one of the settings' topics, read without a consumer group."""
    partitions = {spec.name: spec.partitions for spec in settings.topics()}[topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(msgs)
        return records
    finally:
        await consumer.stop()


class Worker:
    """A `wattstream ingest` subprocess with the test's settings."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._env = settings_env(settings)
        self._log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wattstream", "ingest"],
                env=self._env,
                stdout=log,
                stderr=log,
                cwd=ROOT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> float:
        """SIGTERM and wait; returns how long the drain took."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - t0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def wait_for(
    predicate: Callable[[], Awaitable[object]], within: float, what: str, interval: float = 0.5
) -> None:
    """Poll `predicate` until it returns True; fail after `within` seconds with its last answer."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last is True:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within} s waiting for {what}; last: {last}")


async def fetch(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows of one query, as the database owner (who sees every tenant's rows)."""
    conn = await asyncpg.connect(settings.migrate_database_url.get_secret_value())
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def reading_stats(settings: Settings, sites: set[str]) -> tuple[int, float, int]:
    """(rows, sum of energy, distinct (meter, ts)) over the given sites."""
    conn = await asyncpg.connect(settings.migrate_database_url.get_secret_value())
    try:
        row = await conn.fetchrow(
            """SELECT count(*) AS n, coalesce(sum(r.energy_kwh), 0) AS e,
                      count(DISTINCT (r.meter_id, r.ts)) AS d
                 FROM readings r JOIN meters m USING (meter_id) WHERE m.site_id = ANY($1::text[])""",
            sorted(sites),
        )
        return row["n"], row["e"], row["d"]
    finally:
        await conn.close()


async def deploy(service: str, action: str) -> None:
    """Run deploy/<service>.sh <action> without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec("bash", str(ROOT / "deploy" / f"{service}.sh"), action)
    if await proc.wait() != 0:
        raise AssertionError(f"deploy/{service}.sh {action} failed")


@asynccontextmanager
async def streaming(
    s: Settings, messages: list[tuple[bytes, bytes]], log_path: Path, *, seconds: float = 0.0
) -> AsyncIterator[tuple[Worker, asyncio.Task[None]]]:
    """A worker subprocess consuming while `messages` are produced over about `seconds`;
    both are stopped on exit whatever happened."""
    worker = Worker(s, log_path)
    worker.start()
    producing = asyncio.create_task(produce(s, messages, seconds=seconds))
    try:
        yield worker, producing
    finally:
        producing.cancel()
        if worker.alive():
            worker.kill()


@asynccontextmanager
async def api_server(s: Settings) -> AsyncIterator[str]:
    """A real `wattstream api` subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    env = settings_env(s, WATTSTREAM_API_PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wattstream",
        "api",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:

            async def up() -> bool | str:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError as exc:
                    return repr(exc)

            await wait_for(up, 30, "the API to answer /healthz", interval=0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


async def admin_headers(s: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_key(s)}"}
