"""The server wire: a stream's body frames written straight to the connection's transport.

Under uvicorn's httptools server the hub need not build an ASGI message and a coroutine for each
of 10,000 clients per event: it chunk-frames the event once (`chunked`) and writes that to each
connection's transport, the bytes uvicorn's own `send` would write (`ServerWire`). This is the
one module that knows uvicorn's internals (its `RequestResponseCycle`: `chunked_encoding`,
`disconnected`, `response_complete`, `flow.write_paused`, `transport`); it finds them through
the server's own `send`, which the app keeps in each request's scope under `RAW_SEND`, past
every middleware. Any other server gets no wire and is written through its `send`.
tests/unit/test_server_wire.py fails if a uvicorn release moves what this relies on.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.types import Send

__all__ = ["RAW_SEND", "ServerWire", "chunked"]


def chunked(frame: bytes) -> bytes:
    """A body frame as one HTTP/1.1 chunk (what the server writes for it on a chunked stream)."""
    return b"%x\r\n%s\r\n" % (len(frame), frame)


class ServerWire:
    """The connection under a started stream, when the server is uvicorn's httptools one: the hub
    writes a frame, chunk-framed once per event, straight to its transport. That is exactly what
    uvicorn's `send` does for a body message that does not end the response, without building a
    message, a coroutine and the framing again for each of 10,000 clients. Only while uvicorn
    would write at once: not once the response ended, nor while flow control has paused writing
    (the client is not reading); then the frame goes the queued way, through uvicorn's `send`.
    Once the connection is gone it refuses (ConnectionError) and that stream ends. Any other
    server (or a response that is not chunked) gets no wire and is written through its `send`.
    tests/unit/test_server_wire.py holds uvicorn to this."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: Any) -> None:
        self._cycle = cycle

    @classmethod
    def of(cls, send: Send | None) -> ServerWire | None:
        cycle: Any = getattr(send, "__self__", None)
        kind = type(cycle)
        if kind.__module__ != _HTTPTOOLS_SERVER or kind.__name__ != "RequestResponseCycle":
            return None
        return cls(cycle) if cycle.chunked_encoding is True else None

    def write(self, chunk: bytes) -> bool:
        """Write one chunk now; False (nothing written) if uvicorn would not yet. Raises
        ConnectionError once the connection is gone: uvicorn marks only the connection's
        current request as disconnected, which is not the stream's when the client sent
        another request behind it, so the transport is asked too."""
        cycle = self._cycle
        if cycle.disconnected or cycle.transport.is_closing():
            raise ConnectionError("the client's connection is closed")
        if cycle.response_complete or cycle.flow.write_paused:
            return False
        cycle.transport.write(chunk)
        return True


_HTTPTOOLS_SERVER: Final = "uvicorn.protocols.http.httptools_impl"

# the scope key of the server's own `send` (set by the app before any middleware wraps it)
RAW_SEND: Final = "wattstream.raw_send"
