"""The hub's straight write to uvicorn's connection (`ServerWire`) against a real uvicorn server:
it is found under the httptools server, what it writes is byte for byte what uvicorn's own
`send` writes, and it declines (so the frame goes through `send`) where uvicorn would not write
at once. If a uvicorn release moves what the wire relies on, this fails rather than the
streams silently taking the slower way."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from api.routers.streams import EventStream
from api.streams import RAW_SEND, Event, ServerWire, StreamHub, chunked

_FRAMES = [b"id: 0.1\nevent: grid\ndata: {}\n\n", b": heartbeat\n\n"]


class _App:
    """Answers every request with a stream: each frame through `send` (`?via=send`) or the wire;
    `?length=N` sends a Content-Length (not chunked)."""

    def __init__(self) -> None:
        self.wires: list[ServerWire | None] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = scope["query_string"].decode()
        headers = [(b"content-type", b"text/event-stream")]
        if query.startswith("length="):
            headers.append((b"content-length", query.split("=")[1].encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        wire = ServerWire.of(send)
        self.wires.append(wire)
        for frame in _FRAMES:
            if query == "via=send" or wire is None:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            else:
                assert wire.write(chunked(frame))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@asynccontextmanager
async def _server(app: Any) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http="httptools", lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def _get(port: int, target: str, version: str = "1.1") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/{version}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return raw.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("version", ["1.1", "1.0"])
async def test_the_wire_writes_what_send_writes(version: str) -> None:
    app = _App()
    async with _server(app) as port:
        by_send = await _get(port, "/?via=send", version)
        by_wire = await _get(port, "/", version)
    assert all(isinstance(w, ServerWire) for w in app.wires)
    assert by_wire == by_send == b"".join(chunked(f) for f in _FRAMES) + b"0\r\n\r\n"


async def test_no_wire_for_a_response_that_is_not_chunked() -> None:
    app = _App()
    length = sum(map(len, _FRAMES))
    async with _server(app) as port:
        body = await _get(port, f"/?length={length}")
    assert app.wires == [None] and body == b"".join(_FRAMES)


def test_no_wire_for_another_server() -> None:
    async def send(message: Any) -> None:
        pass

    assert ServerWire.of(send) is None and ServerWire.of(None) is None


class _Cycle:
    def __init__(self) -> None:
        self.disconnected = self.response_complete = False
        self.flow = type("Flow", (), {"write_paused": False})()
        self.written: list[bytes] = []
        self.closing = False
        self.transport = type(
            "T",
            (),
            {"write": lambda _, data: self.written.append(data), "is_closing": lambda _: self.closing},
        )()


@pytest.mark.parametrize("state", ["response_complete", "write_paused"])
def test_the_wire_declines_where_uvicorn_would_not_write_at_once(state: str) -> None:
    cycle = _Cycle()
    wire = ServerWire(cycle)
    assert wire.write(b"a") and cycle.written == [b"a"]
    setattr(cycle.flow if state == "write_paused" else cycle, state, True)
    assert not wire.write(b"b") and cycle.written == [b"a"]


@pytest.mark.parametrize("state", ["disconnected", "closing"])
def test_the_wire_refuses_a_connection_that_is_gone(state: str) -> None:
    cycle = _Cycle()
    setattr(cycle, state, True)
    with pytest.raises(ConnectionError):
        ServerWire(cycle).write(b"a")
    assert cycle.written == []


async def _pipelined_then_gone() -> tuple[list[int], int, bytes]:
    """A stream whose client sends another request behind it and then closes the connection,
    beside a client that keeps reading: the hub publishes three events."""
    hub = StreamHub(buffer=10, client_queue=4)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
            await EventStream(hub, "grid:X", None, None)(scope, receive, send)

    async with _server(app) as port:
        request = b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n"
        gone_r, gone_w = await asyncio.open_connection("127.0.0.1", port)
        gone_w.write(request + request)  # the second waits behind the stream, for ever
        await gone_r.readuntil(b"retry: 3000\n\n\r\n")
        kept_r, kept_w = await asyncio.open_connection("127.0.0.1", port)
        kept_w.write(request)
        await kept_r.readuntil(b"retry: 3000\n\n\r\n")
        gone_w.close()
        await asyncio.sleep(0.2)
        clients = []
        for offset in range(3):
            hub.publish(Event("grid:X", 0, offset, b"{}"))  # must not raise
            await asyncio.sleep(0.1)
            clients.append(hub.clients())
        hub.heartbeat()
        received = b""
        while received.count(b"event: grid") < 3:
            received += await asyncio.wait_for(kept_r.read(4096), 5)
        kept_w.close()
        return clients, hub.clients(), received


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connection_gone_behind_a_pipelined_request_ends_only_its_stream(loop: str) -> None:
    """uvicorn marks only the connection's current request (the one queued behind the stream)
    as disconnected; the wire must see the closed transport, end that stream alone and let
    every other client have every event."""
    import uvloop

    run = uvloop.run if loop == "uvloop" else asyncio.run
    clients, _, received = run(_pipelined_then_gone())
    assert clients[-1] == 1  # the gone client's stream ended; the reading one stays
    assert [line for line in received.split(b"\n") if line.startswith(b"id: ")] == [
        b"id: 0.0",
        b"id: 0.1",
        b"id: 0.2",
    ]
