"""`wattstream api` with WATTSTREAM_API_WORKERS=2: two processes on one socket, each with its own
stream consumer; /metrics adds both up; a worker that dies is replaced; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from helpers import ROOT, wait_for

from ingest.registry import SiteRecord, register
from loadtest.scratch import free_port, make_key, settings_env
from schemas.settings import Settings

pytestmark = pytest.mark.integration


def _workers(parent: int) -> list[int]:
    """The parent's worker processes (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if Path(f"/proc/{pid}").exists() and b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def test_two_workers_share_the_port_and_the_load(pipeline: Settings) -> None:
    s = pipeline
    await register(s.database_url.get_secret_value(), [SiteRecord("wk-a1", region="WK-R")], [])
    token = await make_key(s, "operator")
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    env = settings_env(s, WATTSTREAM_API_PORT=str(port), WATTSTREAM_API_WORKERS="2")
    env.pop("WATTSTREAM_METRICS_DIR", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wattstream", "api", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool | str:
                try:
                    return (await client.get("/readyz")).status_code == 200 and len(_workers(proc.pid)) == 2
                except httpx.TransportError as exc:
                    return repr(exc)

            await wait_for(ready, 60, "two workers answering")
            first = set(_workers(proc.pid))
            for _ in range(20):
                assert (await client.get("/v1/sites/wk-a1", headers=headers)).status_code == 200
            count = 'wattstream_api_request_seconds_count{method="GET",route="/v1/sites/{site}",status="200"}'

            async def counted() -> bool | str:
                # a worker records a request once its answer is sent, so /metrics (maybe served by
                # the other worker) can be read a moment before the last one is counted
                metrics = (await client.get("/metrics")).text
                line = next((ln for ln in metrics.splitlines() if ln.startswith(count)), "")
                return line == f"{count} 20.0" or line

            await wait_for(counted, 10, "both workers' requests added up in /metrics", interval=0.1)

            # a stream on each of several connections: whichever worker holds it delivers the event
            for _ in range(8):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                request = (
                    f"GET /v1/stream/sites/wk-a1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                )
                writer.write(request.encode() + b"\r\n")
                await reader.readuntil(b"\r\n\r\n")
                streams.append((reader, writer))
            await asyncio.sleep(3)  # each worker's consumer catches up with the topics
            producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap)
            await producer.start()
            try:
                await producer.send_and_wait(
                    s.topic_site_energy, b'{"site": "wk-a1", "power_kw": 7.5}', key=b"wk-a1"
                )
            finally:
                await producer.stop()
            for reader, _ in streams:
                seen = b""
                while b'"power_kw": 7.5' not in seen:
                    seen += await asyncio.wait_for(reader.read(4096), 15)

            # a worker that dies is replaced; the API keeps answering meanwhile
            victim = next(iter(first))
            os.kill(victim, signal.SIGKILL)

            async def replaced() -> bool | str:
                now = set(_workers(proc.pid))
                return (len(now) == 2 and victim not in now) or str(now)

            await wait_for(replaced, 30, "a replacement worker")
            assert (await client.get("/v1/sites/wk-a1", headers=headers)).status_code == 200
            workers = _workers(proc.pid)
    finally:
        for _, writer in streams:
            writer.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
    assert not _alive(workers)
