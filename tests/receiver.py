"""A webhook receiver for tests: a real HTTP server on loopback that records every request,
checks its signature, and can be told to fail or hang a share of them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from types import TracebackType

import msgspec

from schemas.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


@dataclass
class Received:
    event_id: str
    body: dict[str, object]
    signature_ok: bool
    answered: int | None  # None: the receiver hung up without answering


@dataclass
class Receiver:
    secret: str
    fail_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 3.0
    seed: int = 7
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._rng = random.Random(self.seed)
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> dict[str, Received]:
        """Event id -> the first request answered 2xx for it."""
        out: dict[str, Received] = {}
        for r in self.received:
            if r.answered is not None and 200 <= r.answered < 300:
                out.setdefault(r.event_id, r)
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ": " in line:
                    name, _, value = line.partition(": ")
                    headers[name.lower()] = value
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            ok = verify(self.secret, body, headers.get(SIGNATURE_HEADER.lower(), ""), time.time())
            # the first request hangs and the second fails (when those are asked for), then chance decides
            first = (0.0, self.hang_rate) if self.hang_rate else (self.hang_rate,)
            nth = len(self.received)
            roll = first[nth] if nth < len(first) and self.fail_rate else self._rng.random()
            event = headers.get(EVENT_ID_HEADER.lower(), "")
            decoded = msgspec.json.decode(body)
            if roll < self.hang_rate:
                self.received.append(Received(event, decoded, ok, None))
                await asyncio.sleep(self.hang_s)  # longer than the sender waits
                return
            status = 500 if roll < self.hang_rate + self.fail_rate else 200
            self.received.append(Received(event, decoded, ok, status))
            reason = b"OK" if status == 200 else b"Internal Server Error"
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (status, reason)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
