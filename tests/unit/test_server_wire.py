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

from api.streams import ServerWire, chunked

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
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_config=None, access_log=False)
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
        self.transport = type("T", (), {"write": lambda _, data: self.written.append(data)})()


@pytest.mark.parametrize("state", ["disconnected", "response_complete", "write_paused"])
def test_the_wire_declines_where_uvicorn_would_not_write_at_once(state: str) -> None:
    cycle = _Cycle()
    wire = ServerWire(cycle)
    assert wire.write(b"a") and cycle.written == [b"a"]
    setattr(cycle.flow if state == "write_paused" else cycle, state, True)
    assert not wire.write(b"b") and cycle.written == [b"a"]
