"""API benchmark: query latency while ingest runs, latest-value throughput, SSE fan-out.

Everything is real and on loopback: a scratch database and topics, `wattstream ingest` and
`wattstream simulate` running (the "while ingest runs" load), `wattstream api` (one uvicorn
worker), an admin key. The load generator is a minimal HTTP/1.1 keep-alive client on asyncio
streams; its own ceiling is measured in the same run against a stub server (another process
that answers every request with a fixed response), so the API figures can be read against it.

1. A meter's 30 days at 15 minutes (2,880 buckets): one client, 1,000 sequential requests; HTTP
   latency at the client and the server's own time (its `Server-Timing` header): p50 / p99.
   The month is vacuumed first, as autovacuum leaves settled history.
   Twice: from the database (`Cache-Control: no-cache`), then as kept between the site's live
   events (`api.seriescache`; the benchmark's meter gets no new readings meanwhile).
2. `GET /v1/sites/{site}/latest` (answered from memory): `connections` concurrent clients for
   `seconds`: requests/s, p50 / p99 (the simulator is stopped from here on; the worker idles).
3. SSE: `sse_clients` subscribers of one region's stream; one event a second published to the
   intensity topic for `seconds`; fan-out latency p50 / p99 over every (event, client): from
   the publish to the moment the client's kernel received the event (its `SO_TIMESTAMPNS`
   stamp; on loopback, when the server's write delivered it), and the same to the moment the
   client read it (which adds the generator's own scheduling); the median first delivery of an
   event (the way through Kafka and the consumer, before fan-out); and the CPU of the API
   process and of the generator over the window (shares of one core). The subscribers are one
   C program (`sse_load.c`: one thread, epoll; built with the machine's `cc` into the cache),
   so that they take as little of the two cores as clients can. The generator's own ceiling:
   the same clients against its stub server mode (C), which writes each event to every
   connection from one loop, with nothing behind it.

    python -m loadtest.bench_api --seconds 10 --connections 16 --sse-clients 2000 [--workers 2]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer

from loadtest.scratch import cpu_seconds, free_port, make_key, percentile, scratch, settings_env
from schemas.settings import Settings

__all__ = ["ApiBench", "main", "report", "run"]

_SITE, _REGION = "bench-api-1", "BENCH-R"
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class ApiBench:
    generator_ceiling_rps: float
    query_http_p50_ms: float
    query_http_p99_ms: float
    query_server_p50_ms: float
    query_server_p99_ms: float
    cached_http_p50_ms: float  # the same query answered from the series cache
    cached_http_p99_ms: float
    cached_server_p50_ms: float
    cached_server_p99_ms: float
    query_buckets: int
    latest_rps: float
    latest_p50_ms: float
    latest_p99_ms: float
    sse_clients: int
    sse_events: int
    sse_p50_ms: float  # publish to the client's kernel receiving the event (the server's write)
    sse_p99_ms: float
    sse_read_p50_ms: float  # publish to the client reading it (adds the generator's own delay)
    sse_read_p99_ms: float
    sse_first_ms: float  # median over events of the first delivery: Kafka and the consumer
    sse_api_cpu_share: float  # of one core
    sse_generator_cpu_share: float
    sse_dropped: int  # deliveries missing
    sse_closed: int  # streams the API ended (clients dropped for falling behind)
    sse_ceiling_p50_ms: float  # the same clients against a C stub server that writes from one loop
    sse_ceiling_p99_ms: float
    sse_ceiling_read_p50_ms: float
    sse_ceiling_read_p99_ms: float
    sse_ceiling_cpu_share: float


class _Conn:
    """One keep-alive HTTP/1.1 connection: request, then read the answer by Content-Length."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, request: bytes) -> tuple[int, float | None]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, server_ms = 0, None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"server-timing":
                server_ms = float(value.split(b"dur=")[1])
        await self.reader.readexactly(length)
        return status, server_ms

    def close(self) -> None:
        self.writer.close()


def _request(path: str, token: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Accept: application/json\r\n{extra}\r\n"
    ).encode()


async def _sequential(
    port: int, request: bytes, n: int = 1000, warm: int = 20
) -> tuple[list[float], list[float]]:
    """One client, `n` requests one after another (after `warm` unmeasured): HTTP and server ms."""
    conn = await _Conn.open(port)
    http_ms: list[float] = []
    server_ms: list[float] = []
    try:
        for i in range(warm + n):
            t = time.perf_counter()
            status, server = await conn.get(request)
            if status != 200:
                raise RuntimeError(f"energy query answered {status}")
            if i >= warm:  # the first requests warm caches and prepared statements
                http_ms.append((time.perf_counter() - t) * 1000)
                server_ms.append(server or float("nan"))
    finally:
        conn.close()
    return http_ms, server_ms


async def _load(port: int, request: bytes, connections: int, seconds: float) -> tuple[int, list[float], int]:
    """(requests answered, latencies in ms, non-200 answers) with `connections` clients."""
    latencies: list[float] = []
    bad = 0
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal bad
        conn = await _Conn.open(port)
        try:
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                status, _ = await conn.get(request)
                latencies.append((time.perf_counter() - t) * 1000)
                bad += status != 200
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return len(latencies), latencies, bad


def _stub_server(port: int, ready: Any) -> None:
    """A fixed-answer HTTP server: the load generator's ceiling, with no application behind it."""

    body = b'{"site": "stub", "power_kw": 1.0}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


async def _generator_ceiling(connections: int, seconds: float) -> float:
    port = free_port()
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_stub_server, args=(port, ready), daemon=True)
    proc.start()
    ready.wait(10)
    try:
        n, _, _ = await _load(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", connections, seconds)
        return n / seconds
    finally:
        proc.terminate()
        proc.join(5)


_SSE_LOAD = Path(__file__).with_name("sse_load.c")


def _sse_tool() -> Path:
    """The SSE load generator (`sse_load.c`), compiled with the machine's C compiler into the
    cache once per version of its source."""
    source = _SSE_LOAD.read_bytes()
    cache = Path(os.environ.get("WATTSTREAM_CACHE", Path.home() / ".cache/wattstream"))
    exe = cache / "bin" / f"sse_load-{hashlib.sha256(source).hexdigest()[:12]}"
    if not exe.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        partial = exe.with_suffix(".part")
        subprocess.run([cc, "-O2", "-o", str(partial), str(_SSE_LOAD)], check=True)
        partial.replace(exe)
    return exe


async def _line(proc: asyncio.subprocess.Process, within_s: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), within_s)
    if not line:
        raise RuntimeError(f"the SSE load generator ended (exit {await proc.wait()})")
    return line.decode().strip()


async def _sse(
    port: int, path: str, token: str, clients: int, seconds: float, pid: int, publish: Any
) -> dict[str, float]:
    """`clients` subscribers of `path` (the C generator, in one process of its own); `publish()`
    once a second for `seconds`: per-delivery latency from the stamp in each event, the server
    process's CPU and the generator's (shares of one core)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latencies"
        gen = await asyncio.create_subprocess_exec(
            str(_sse_tool()),
            "clients",
            str(port),
            path,
            token,
            str(clients),
            str(out),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert gen.stdin is not None
        try:
            if await _line(gen, 120) != "connected":
                raise RuntimeError("the SSE load generator did not connect")
            await asyncio.sleep(1.0)
            gen.stdin.write(b"start\n")
            cpu0, gen0, t0 = cpu_seconds(pid), cpu_seconds(gen.pid), time.perf_counter()
            events = int(seconds)
            for _ in range(events):
                await publish()
                await asyncio.sleep(1.0)
            await asyncio.sleep(1.0)
            wall = time.perf_counter() - t0
            cpu, gen_cpu = (cpu_seconds(pid) - cpu0) / wall, (cpu_seconds(gen.pid) - gen0) / wall
            gen.stdin.write(b"stop\n")
            done = await _line(gen, 30)
            triples = array.array("d", out.read_bytes()).tolist()
            delivered, read = triples[1::3], triples[2::3]
            first: dict[float, float] = {}  # each event's first delivery: the way in, before fan-out
            for sent, ms in zip(triples[::3], delivered, strict=True):
                first[sent] = min(ms, first.get(sent, ms))
            said, count, closed = [*done.split(), "", ""][:3]
            if said != "done" or count != str(len(delivered)) or not closed.isdigit():
                raise RuntimeError(f"the SSE load generator said {done!r}")
        finally:
            if gen.returncode is None:
                gen.kill()
            await gen.wait()
    return {
        "events": events,
        "p50": percentile(delivered, 0.5),
        "p99": percentile(delivered, 0.99),
        "read_p50": percentile(read, 0.5),
        "read_p99": percentile(read, 0.99),
        "first": statistics.median(first.values()) if first else float("nan"),
        "cpu": cpu,
        "generator_cpu": gen_cpu,
        "missing": events * clients - len(delivered),
        "closed": int(closed),
    }


async def _sse_ceiling(clients: int, seconds: float) -> dict[str, float]:
    """The same generator against the C stub server (`sse_load serve`): nothing behind it, each
    event written to every connection from one loop, so this is what the generator and the
    machine's loopback allow."""
    port = free_port()
    stub = await asyncio.create_subprocess_exec(
        str(_sse_tool()), "serve", str(port), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert stub.stdin is not None
    stdin = stub.stdin

    async def publish() -> None:
        stdin.write(b"go\n")
        await stdin.drain()

    try:
        if await _line(stub, 10) != "ready":
            raise RuntimeError("the SSE stub server did not start")
        return await _sse(port, "/", "stub", clients, seconds, stub.pid, publish)
    finally:
        stub.kill()
        await stub.wait()


async def _prepare(s: Settings) -> None:
    """A site with 30 days of 5-minute register readings, through the real ingest worker."""
    from ingest.registry import MeterRecord, SiteRecord, register

    await register(
        s.database_url.get_secret_value(), [SiteRecord(_SITE, region=_REGION)], [MeterRecord(_SITE, "main")]
    )
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        steps = 30 * 288 + 1
        batch = [
            {
                "site": _SITE,
                "meter": "main",
                "ts": int((_T0 + timedelta(minutes=5 * k)).timestamp() * 1000),
                "energy_kwh": 1000 + k * 2.5,
                "power_kw": 30.0,
            }
            for k in range(steps)
        ]
        for i in range(0, steps, 500):
            await producer.send(
                s.topic_readings, msgspec.json.encode({"readings": batch[i : i + 500]}), key=_SITE.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        await conn.execute(
            "INSERT INTO grid_mix (region, ts, interval_s, revision, generation_mw)"
            " VALUES ($1, $2, 300, 0, $3)",
            _REGION,
            _T0,
            '{"coal": 1}',
        )
        for _ in range(600):
            if await conn.fetchval("SELECT count(*) FROM readings") >= steps:
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError("the worker did not store the benchmark's readings in time")
        # a month of history is settled: autovacuum has long marked its pages all-visible, so
        # the series is read from the index alone (migration 007). Here it was written a moment
        # ago; do what autovacuum would have done.
        await conn.execute("VACUUM (ANALYZE) energy_interval")
    finally:
        await conn.close()


async def run(
    base: Settings, seconds: float = 10.0, connections: int = 16, sse_clients: int = 2000, workers: int = 1
) -> ApiBench:
    async with scratch(
        base, "benchapi", ingest_metrics_port=0, api_rate_per_s=1e9, api_rate_burst=10**9
    ) as s:
        port = free_port()
        env = settings_env(s, WATTSTREAM_API_PORT=str(port), WATTSTREAM_API_WORKERS=str(workers))
        exe = [sys.executable, "-m", "wattstream"]

        async def spawn(*args: str) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                *exe, *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )

        procs = [await spawn("ingest")]
        try:
            await _prepare(s)
            sim = await spawn("simulate", "--sites", "20", "--rate", "200", "--no-progress")
            procs.append(sim)
            api = await spawn("api")
            procs.append(api)
            token = await make_key(s)
            await _wait_http(port)
            ceiling = await _generator_ceiling(connections, seconds)

            start, end = (
                _T0.isoformat().replace("+00:00", "Z"),
                (_T0 + timedelta(days=30)).isoformat().replace("+00:00", "Z"),
            )
            path = f"/v1/sites/{_SITE}/meters/main/energy?start={start}&end={end}&resolution=15min"
            query = _request(path, token)
            uncached = _request(path, token, "Cache-Control: no-cache\r\n")
            http_ms, server_ms = await _sequential(port, uncached)
            cached_http_ms, cached_server_ms = await _sequential(port, query)
            buckets = await _buckets(port, query)
            sim.send_signal(signal.SIGTERM)  # the rest is measured without the simulator's load
            await sim.wait()

            latest = _request(f"/v1/sites/{_SITE}/latest", token)
            await _load(port, latest, connections, 1.0)  # warm-up
            n, lat, bad = await _load(port, latest, connections, seconds)
            if bad:
                raise RuntimeError(f"{bad} latest-value requests failed")

            producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
            await producer.start()

            async def publish() -> None:
                value = json.dumps({"region": _REGION, "bench_sent": time.time()}).encode()
                await producer.send_and_wait(s.topic_intensity, value, key=_REGION.encode())

            try:
                sse = await _sse(
                    port, f"/v1/stream/grid/{_REGION}", token, sse_clients, seconds, api.pid, publish
                )
            finally:
                await producer.stop()
            sse_stub = await _sse_ceiling(sse_clients, seconds)
            return ApiBench(
                generator_ceiling_rps=ceiling,
                query_http_p50_ms=percentile(http_ms, 0.5),
                query_http_p99_ms=percentile(http_ms, 0.99),
                query_server_p50_ms=statistics.median(server_ms),
                query_server_p99_ms=percentile(server_ms, 0.99),
                cached_http_p50_ms=percentile(cached_http_ms, 0.5),
                cached_http_p99_ms=percentile(cached_http_ms, 0.99),
                cached_server_p50_ms=statistics.median(cached_server_ms),
                cached_server_p99_ms=percentile(cached_server_ms, 0.99),
                query_buckets=buckets,
                latest_rps=n / seconds,
                latest_p50_ms=percentile(lat, 0.5),
                latest_p99_ms=percentile(lat, 0.99),
                sse_clients=sse_clients,
                sse_events=int(sse["events"]),
                sse_p50_ms=sse["p50"],
                sse_p99_ms=sse["p99"],
                sse_read_p50_ms=sse["read_p50"],
                sse_read_p99_ms=sse["read_p99"],
                sse_first_ms=sse["first"],
                sse_api_cpu_share=sse["cpu"],
                sse_generator_cpu_share=sse["generator_cpu"],
                sse_dropped=int(sse["missing"]),
                sse_closed=int(sse["closed"]),
                sse_ceiling_p50_ms=sse_stub["p50"],
                sse_ceiling_p99_ms=sse_stub["p99"],
                sse_ceiling_read_p50_ms=sse_stub["read_p50"],
                sse_ceiling_read_p99_ms=sse_stub["read_p99"],
                sse_ceiling_cpu_share=sse_stub["cpu"],
            )
        finally:
            for proc in reversed(procs):
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()


async def _wait_http(port: int) -> None:
    for _ in range(300):
        try:
            conn = await _Conn.open(port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        status, _ = await conn.get(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.close()
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not become ready")


async def _buckets(port: int, query: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(query.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    raw = await reader.read()
    writer.close()
    return len(json.loads(raw.split(b"\r\n\r\n", 1)[1])["buckets"])


def report(b: ApiBench) -> str:
    return "\n".join(
        [
            f"load generator ceiling (stub server): {b.generator_ceiling_rps:,.0f} req/s",
            f"30-day 15-minute meter query ({b.query_buckets} buckets), while ingest runs, "
            f"from the database (Cache-Control: no-cache): "
            f"server p50 {b.query_server_p50_ms:.2f} ms p99 {b.query_server_p99_ms:.2f} ms; "
            f"HTTP p50 {b.query_http_p50_ms:.2f} ms p99 {b.query_http_p99_ms:.2f} ms",
            f"the same query kept between the site's events (series cache): "
            f"server p50 {b.cached_server_p50_ms:.2f} ms p99 {b.cached_server_p99_ms:.2f} ms; "
            f"HTTP p50 {b.cached_http_p50_ms:.2f} ms p99 {b.cached_http_p99_ms:.2f} ms",
            f"latest value: {b.latest_rps:,.0f} req/s "
            f"(p50 {b.latest_p50_ms:.2f} ms, p99 {b.latest_p99_ms:.2f} ms), "
            f"{b.latest_rps / b.generator_ceiling_rps:.2f} of the generator's ceiling",
            f"SSE: {b.sse_clients} clients × {b.sse_events} events: fan-out (publish to the client's "
            f"socket) p50 {b.sse_p50_ms:.1f} ms, p99 {b.sse_p99_ms:.1f} ms; read by the client "
            f"p50 {b.sse_read_p50_ms:.1f} ms, p99 {b.sse_read_p99_ms:.1f} ms; "
            f"first delivery {b.sse_first_ms:.1f} ms; API CPU {b.sse_api_cpu_share:.1%} of a core "
            f"(the generator's {b.sse_generator_cpu_share:.1%}); {b.sse_dropped} deliveries missing, "
            f"{b.sse_closed} streams ended by the server",
            f"SSE load generator ceiling (the same clients, a C stub server writing from one loop): "
            f"fan-out p50 {b.sse_ceiling_p50_ms:.1f} ms, p99 {b.sse_ceiling_p99_ms:.1f} ms; "
            f"read p50 {b.sse_ceiling_read_p50_ms:.1f} ms, p99 {b.sse_ceiling_read_p99_ms:.1f} ms; "
            f"stub CPU {b.sse_ceiling_cpu_share:.1%} of a core",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sse-clients", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1, help="API processes (CPU is their sum)")
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args()
    result = asyncio.run(run(Settings(), a.seconds, a.connections, a.sse_clients, a.workers))
    print(report(result))
    if a.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
