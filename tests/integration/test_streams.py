"""Live SSE streams against the real pipeline: Kafka -> ingest consumers -> derived topics -> the
API's one consumer -> subscribed clients, within each key's scope, with resume and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import pytest
from helpers import Worker, api_server, make_key, produce

from ingest.registry import MeterRecord, SiteRecord, register
from ingest.topics import delete_topics, ensure_topics
from schemas.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, tzinfo=UTC)


class Listener:
    """An SSE client collecting events (id, event, data) and heartbeats in the background."""

    def __init__(self, client: httpx.AsyncClient, path: str, token: str, last_event_id: str | None = None):
        self.events: list[tuple[str, str, dict[str, object]]] = []
        self.heartbeats = 0
        self.status: int | None = None
        self._headers = {"Authorization": f"Bearer {token}"}
        if last_event_id:
            self._headers["Last-Event-ID"] = last_event_id
        self._task = asyncio.create_task(self._run(client, path))

    async def _run(self, client: httpx.AsyncClient, path: str) -> None:
        async with client.stream("GET", path, headers=self._headers, timeout=None) as r:
            self.status = r.status_code
            if r.status_code != 200:
                return
            fields: dict[str, str] = {}
            async for line in r.aiter_lines():
                if line.startswith(": heartbeat"):
                    self.heartbeats += 1
                elif line == "":
                    if "data" in fields:
                        self.events.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    fields = {}
                elif ": " in line:
                    name, _, value = line.partition(": ")
                    fields[name] = value

    async def until(self, predicate: object, within: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if predicate(self):  # type: ignore[operator]
                return
            if self._task.done():
                self._task.result()
                if predicate(self):  # type: ignore[operator]
                    return
                raise AssertionError(f"stream ended (status {self.status}) before {what}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; got {self.events[-3:]}, status {self.status}")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


@contextlib.asynccontextmanager
async def _listening(*listeners: Listener) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for listener in listeners:
            await listener.close()


def _mix(region: str, k: int) -> tuple[bytes, bytes]:
    record = {"region": region, "ts": (T0 + timedelta(minutes=15 * k)).isoformat(), "interval_s": 900,
              "generation_mw": {"coal": 500 + k, "wind": 500}}  # fmt: skip
    return region.encode(), msgspec.json.encode(record)


async def test_streams_in_scope_with_resume_and_heartbeats(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update={"sse_heartbeat_s": 0.5})
    await register(
        s.database_url.get_secret_value(),
        [
            SiteRecord("st-a1", region="ST-RA", tenant="st-a"),
            SiteRecord("st-b1", region="ST-RB", tenant="st-b"),
        ],
        [MeterRecord("st-a1", "main"), MeterRecord("st-b1", "main")],
    )
    operator = await make_key(s, "operator")
    manager = await make_key(s, "manager", tenant="st-a")
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, [_mix("ST-RA", 0), _mix("ST-RB", 0)], topic=s.topic_grid)  # the regions exist
        async with api_server(s) as base, httpx.AsyncClient(base_url=base) as client:
            for _ in range(100):  # wait until both regions have intensity (the 404s below need it)
                ok = await client.get("/v1/grid/regions", headers={"Authorization": f"Bearer {operator}"})
                if {"ST-RA", "ST-RB"} <= {r["region"] for r in ok.json()}:
                    break
                await asyncio.sleep(0.2)
            grid = Listener(client, "/v1/stream/grid/ST-RA", operator)
            site = Listener(client, "/v1/stream/sites/st-a1", manager)
            outside = Listener(client, "/v1/stream/grid/ST-RB", manager)
            other_site = Listener(client, "/v1/stream/sites/st-b1", manager)
            forged = Listener(client, "/v1/stream/grid/ST-RA", manager[:-3] + "abc")
            alerts_key = await make_key(s, "alerts")
            wrong_role = Listener(client, "/v1/stream/sites/st-a1", alerts_key)
            async with _listening(grid, site, outside, other_site, forged, wrong_role):
                await grid.until(lambda x: x.status == 200 and x.heartbeats > 0, 10, "a heartbeat")
                # out of scope: the manager's subscriptions answer as for a missing region or site
                for listener, status in ((outside, 404), (other_site, 404), (forged, 401), (wrong_role, 403)):
                    await listener.until(lambda x, st=status: x.status == st, 10, f"status {status}")
                    assert listener.events == []

                await produce(s, [_mix("ST-RA", 1)], topic=s.topic_grid)
                await grid.until(
                    lambda x: any(e[2]["ts"].startswith("2026-05-01T00:15") for e in x.events),
                    30,
                    "ST-RA's intensity",
                )
                got = [e for e in grid.events if e[2]["ts"].startswith("2026-05-01T00:15")]
                assert {e[1] for e in got} == {"grid"} and {e[2]["region"] for e in got} == {"ST-RA"}
                assert {(e[2]["factor_set"], e[2]["basis"]) for e in got} >= {
                    ("ipcc2014-lifecycle", "consumption"),
                    ("ipcc2014-lifecycle", "production"),
                }

                readings = [
                    (b"st-a1", msgspec.json.encode({
                        "site": "st-a1", "meter": "main", "ts": (T0 + timedelta(minutes=5 * k)).isoformat(),
                        "energy_kwh": 100 + k, "power_kw": 12.0,
                    }))
                    for k in range(4)
                ]  # fmt: skip
                await produce(s, readings)
                await site.until(
                    lambda x: any(e[2]["power_kw"] == 12.0 for e in x.events), 30, "the site's power"
                )
                event = site.events[-1][2]
                assert event["site"] == "st-a1" and event["kwh"] is not None
                assert (
                    event["factor_set"] == "ipcc2014-lifecycle" and event["emissions_quality"] == "measured"
                )
                last_id = grid.events[-1][0]
                # the latest-value endpoint answers from the same events, in memory
                latest = await client.get(
                    "/v1/sites/st-a1/latest", headers={"Authorization": f"Bearer {manager}"}
                )
                assert latest.status_code == 200 and latest.json()["source"] == "stream"
                # answered before routing, and measured under its route like any other answer
                metrics = (await client.get("/metrics")).text
                assert 'route="/v1/sites/{site}/latest",status="200"' in metrics
                assert (
                    latest.json()["power_kw"] == 12.0 and latest.json()["factor_set"] == "ipcc2014-lifecycle"
                )
                hidden = await client.get(
                    "/v1/sites/st-b1/latest", headers={"Authorization": f"Bearer {manager}"}
                )
                assert hidden.status_code == 404
                await _same_latest_from_the_database(s, manager, latest)

            # resume: events published while disconnected are replayed after Last-Event-ID
            await produce(s, [_mix("ST-RA", 2)], topic=s.topic_grid)
            watcher = Listener(client, "/v1/stream/grid/ST-RA", operator)
            async with _listening(watcher):
                await watcher.until(
                    lambda x: any(e[2]["ts"].startswith("2026-05-01T00:30") for e in x.events),
                    30,
                    "a fresh event",
                )
            resumed = Listener(client, "/v1/stream/grid/ST-RA", operator, last_event_id=last_id)
            async with _listening(resumed):
                await resumed.until(
                    lambda x: any(e[2]["ts"].startswith("2026-05-01T00:30") for e in x.events),
                    10,
                    "the missed events",
                )
                ids = [tuple(map(int, e[0].split("."))) for e in resumed.events]
                assert ids == sorted(ids) and ids[0] > tuple(map(int, last_id.split(".")))
    finally:
        worker.terminate()


async def _same_latest_from_the_database(s: Settings, key: str, from_memory: httpx.Response) -> None:
    """An API process that has seen no site event answers `/latest` from the database: the same
    body, byte for byte, but for its source."""
    quiet = s.model_copy(update={"topic_site_energy": f"{s.topic_site_energy}.quiet"})
    await ensure_topics(
        quiet.kafka_bootstrap, [t for t in quiet.topics() if t.name == quiet.topic_site_energy]
    )
    try:
        async with api_server(quiet) as base, httpx.AsyncClient(base_url=base) as client:
            stored = await client.get("/v1/sites/st-a1/latest", headers={"Authorization": f"Bearer {key}"})
    finally:
        await delete_topics(quiet.kafka_bootstrap, [quiet.topic_site_energy])
    assert stored.status_code == 200, stored.text
    assert stored.json()["source"] == "database"
    assert stored.content == from_memory.content.replace(b'"source":"stream"', b'"source":"database"')
    assert from_memory.json()["as_of"].endswith("Z"), "one time form, UTC with Z"


async def _open_stalled(
    base: str, path: str, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An SSE subscription with a tiny receive buffer that reads the response head, then nothing."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.hostname, url.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def test_a_client_that_stops_reading_is_dropped_and_holds_nobody_up(pipeline: Settings) -> None:
    """Backpressure with the real server: a subscriber that stops reading is written to until its
    socket is full, then queued up to WATTSTREAM_SSE_CLIENT_QUEUE frames, then dropped; the other
    subscriber of the same stream receives every event meanwhile; when the stalled one reads
    again it gets an unbroken prefix of the events and then the end of its stream."""
    s = pipeline.model_copy(update={"sse_client_queue": 4})
    await register(s.database_url.get_secret_value(), [SiteRecord("st-slow", region="ST-RS")], [])
    operator = await make_key(s, "operator")
    pad = "x" * 20_000  # large events fill the stalled client's socket after a few dozen
    events = [(b"st-slow", msgspec.json.encode({"site": "st-slow", "n": n, "pad": pad})) for n in range(300)]
    async with api_server(s) as base, httpx.AsyncClient(base_url=base) as client:
        reader, writer = await _open_stalled(base, "/v1/stream/sites/st-slow", operator)
        reading = Listener(client, "/v1/stream/sites/st-slow", operator)
        async with _listening(reading):
            await reading.until(lambda x: x.status == 200, 10, "the reading client's subscription")
            await asyncio.sleep(0.5)
            await produce(s, events, topic=s.topic_site_energy)
            await reading.until(lambda x: len(x.events) == 300, 60, "every event at the reading client")
            assert [e[2]["n"] for e in reading.events] == list(range(300))
            metrics = (await client.get("/metrics")).text
            dropped = [
                line
                for line in metrics.splitlines()
                if line.startswith('wattstream_api_sse_dropped_total{stream="site"}')
            ]
            assert dropped and float(dropped[0].split()[-1]) >= 1, dropped

        # the stalled client reads again: what it was written, in order, then the end of the stream
        received = b""
        with contextlib.suppress(asyncio.IncompleteReadError):
            while not received.endswith(b"0\r\n\r\n"):
                received += await asyncio.wait_for(reader.read(1 << 16), 20)
                if reader.at_eof():
                    break
        writer.close()
        got = [json.loads(line[6:])["n"] for line in received.split(b"\n") if line.startswith(b"data: ")]
        assert 0 < len(got) < 300 and got == list(range(len(got))), got[-5:]
        assert received.endswith(b"0\r\n\r\n")  # the chunked body's end: the server ended the stream
