"""The stream hub: channels with their recent events (the replay buffer) and their subscribers.

A stream is a channel (`grid:<region>`, `site:<site>`, `alerts:all`). The hub keeps the newest
`buffer` events of each channel, so a client resuming with `Last-Event-ID` is sent what it
missed first, and the newest one is the latest-value cache. An event already published (same
channel and partition, an offset not newer) is neither buffered nor sent again, so the reader's
read-back at a restart sends nothing twice.

Fan-out: an event is formatted (and chunk-framed) once and written to each caught-up client
from the fan-out loop itself: straight to the connection's transport under uvicorn's httptools
server (`api.streams.wire.ServerWire`), else through the server's `send` (no task switch per
client either way); a client the server cannot write to at once gets it queued, and its own
task writes what is pending in one chunk (`Subscription`). Heartbeats come from one timer, not
one per client. Backpressure: a client that falls `client_queue` frames behind is dropped (its
stream ends; it may reconnect with Last-Event-ID), never allowed to grow memory. Nothing here
knows Kafka: `api.streams.reader` publishes into the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import Counter, Gauge

from api.streams.wire import ServerWire, chunked

__all__ = [
    "HEARTBEAT",
    "SSE_CLIENTS",
    "SSE_EVENTS",
    "Event",
    "StreamHub",
    "Subscription",
    "parse_event_id",
    "sse",
]

log = logging.getLogger(__name__)

SSE_CLIENTS: Final = Gauge(
    "wattstream_api_sse_clients", "SSE clients connected", ["stream"], multiprocess_mode="livesum"
)
SSE_EVENTS: Final = Counter("wattstream_api_sse_events_total", "Events sent to SSE clients", ["stream"])
SSE_DROPPED: Final = Counter(
    "wattstream_api_sse_dropped_total", "SSE clients dropped for falling too far behind", ["stream"]
)


@dataclass(frozen=True, slots=True)
class Event:
    channel: str
    partition: int
    offset: int
    data: bytes
    tags: tuple[tuple[str, str], ...] = ()  # from the record's headers: tenant, site, region (alerts)

    @property
    def id(self) -> str:
        return f"{self.partition}.{self.offset}"


# ASCII digits of a partition and an offset as Kafka bounds them: `str.isdigit` takes "²", which
# `int` refuses, and `int` refuses more than 4,300 digits
_EVENT_ID: Final = re.compile(r"([0-9]{1,10})\.([0-9]{1,19})")


def parse_event_id(text: str | None) -> tuple[int, int] | None:
    """The (partition, offset) of an event id; None for anything else (a client's resume point is
    a hint: a stream it cannot use starts from now, as without one)."""
    found = _EVENT_ID.fullmatch(text.strip()) if text else None
    return None if found is None else (int(found[1]), int(found[2]))


Writer = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


class Subscription:
    """One client's place in a channel.

    Delivery has two ways, and a frame never overtakes another. **Direct**: when the client is
    caught up, the hub writes the frame itself from its fan-out loop, with no task switch:
    to the connection (`wire`) when the server is uvicorn's httptools one, else through the
    server's own `send` (`direct`). That send is run only as far as it goes without waiting;
    the server waits only when the client's socket is full (flow control), and then the send is
    abandoned before it wrote anything, and the client is served the second way from then on.
    The wire declines the same case and is tried again once the client has caught up.
    **Queued**: the frame is appended to the client's pending frames and its task
    wakes and writes everything pending in one chunk. A client more than `limit` frames behind
    is dropped: its pending frames are discarded and its stream ends (it may reconnect with
    Last-Event-ID). Memory per client is bounded by `limit` frames plus what the server's
    transport holds before it pauses writing (its high-water mark, 64 KiB by default) and one
    chunk more. A write that fails (the connection is gone) ends that stream alone."""

    __slots__ = (
        "_pending",
        "_waiter",
        "accept",
        "broken",
        "channel",
        "closed",
        "direct",
        "dropped",
        "idle",
        "limit",
        "wire",
        "writing",
    )

    def __init__(self, channel: str, limit: int, accept: Callable[[Event], bool] | None = None) -> None:
        self.channel = channel
        self.limit = limit
        self.accept = accept  # a per-client filter (an alerts key's scope)
        self.closed = False
        self.broken = False  # the connection failed under a write (no end of stream to send)
        self.dropped = False
        self.idle = True  # nothing pushed since the last heartbeat
        self.direct: Writer | None = None  # set by the response once its head is written
        self.wire: ServerWire | None = None  # likewise, under uvicorn's httptools server
        self.writing = False  # the client's task is inside a send
        self._pending: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None

    def deliver(self, frame: bytes, chunk: bytes) -> bool:
        """Write the frame now if the client is caught up, else queue it; False (nothing queued)
        if the client is `limit` frames behind. `chunk` is the frame chunk-framed (`chunked`)."""
        if self.wire is not None and not self._pending and not self.writing and not self.closed:
            try:
                written = self.wire.write(chunk)
            except (OSError, RuntimeError):  # the connection is gone: end the stream
                self._broke()
                return True
            if written:
                self.idle = False
                return True
        elif self.direct is not None and not self._pending and not self.writing and not self.closed:
            send = self.direct({"type": "http.response.body", "body": frame, "more_body": True})
            try:
                send.send(None)
            except StopIteration:  # written without waiting
                self.idle = False
                return True
            except (OSError, RuntimeError):  # the server refused the write: end the stream
                log.warning("an SSE write failed; ending that stream", exc_info=True)
                self._broke()
                return True
            send.close()  # it would wait for the client to read: not here, in the client's task
            self.direct = None
        return self.push(frame)

    def push(self, frame: bytes) -> bool:
        """Queue a frame; False (and nothing queued) if the client is `limit` frames behind."""
        if len(self._pending) >= self.limit:
            return False
        self._pending.append(frame)
        self.idle = False
        self._wake()
        return True

    def _broke(self) -> None:
        """The connection failed under a write: nothing more can be written to it."""
        self.broken = True
        self.close(discard=True)

    def close(self, *, discard: bool = False) -> None:
        """End the stream after what is pending (or at once, with `discard`)."""
        self.closed = True
        self.direct = self.wire = None
        if discard:
            self._pending.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def pending(self) -> int:
        return len(self._pending)

    async def next(self) -> bytes | None:
        """Everything pending as one chunk, waiting for it if need be; None once closed."""
        while not self._pending:
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        return chunk


HEARTBEAT: Final = b": heartbeat\n\n"
_HEARTBEAT_CHUNK: Final = chunked(HEARTBEAT)


@dataclass
class StreamHub:
    """Channels with their recent events and subscribers."""

    buffer: int
    client_queue: int
    on_event: Callable[[Event], None] | None = None  # sees every event first (a cache's invalidation)
    on_live: Callable[[bool], None] | None = None  # the consumer caught up (True) or lost Kafka (False)
    _recent: dict[str, deque[Event]] = field(default_factory=dict)
    _subscribers: dict[str, set[Subscription]] = field(default_factory=dict)
    _last: dict[tuple[str, int], int] = field(default_factory=dict)  # (channel, partition) -> offset
    _closed: bool = False

    def publish(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        # a restarted consumer reads back `warm` records: what was already published is not again
        seen = (event.channel, event.partition)
        if event.offset <= self._last.get(seen, -1):
            return
        self._last[seen] = event.offset
        recent = self._recent.get(event.channel)
        if recent is None:
            recent = self._recent[event.channel] = deque(maxlen=self.buffer)
        recent.append(event)
        subs = self._subscribers.get(event.channel)
        if not subs:
            return
        kind = event.channel.split(":", 1)[0]
        frame = sse(event)
        chunk = chunked(frame)
        sent = 0
        for sub in list(subs):
            if sub.accept is not None and not sub.accept(event):
                continue
            if sub.deliver(frame, chunk):
                sent += 1
            else:
                self._drop(sub, kind)
        if sent:
            SSE_EVENTS.labels(kind).inc(sent)

    def _drop(self, sub: Subscription, kind: str) -> None:
        sub.dropped = True
        self._subscribers.get(sub.channel, set()).discard(sub)
        SSE_DROPPED.labels(kind).inc()
        sub.close(discard=True)

    def subscribe(
        self, channel: str, after: tuple[int, int] | None, accept: Callable[[Event], bool] | None = None
    ) -> tuple[Subscription, list[Event]]:
        """A subscription, and the buffered events after `after` (a Last-Event-ID) to send first;
        `accept`, if given, filters what this client receives."""
        sub = Subscription(channel, self.client_queue, accept)
        if self._closed:  # shutting down: the stream ends at once
            sub.close()
            return sub, []
        self._subscribers.setdefault(channel, set()).add(sub)
        missed: list[Event] = []
        if after is not None:
            missed = [
                e
                for e in self._recent.get(channel, ())
                if (e.partition, e.offset) > after and (accept is None or accept(e))
            ]
        return sub, missed

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.get(sub.channel, set()).discard(sub)

    def latest(self, channel: str) -> Event | None:
        """The newest event of a channel, if any is buffered (the latest-value cache)."""
        recent = self._recent.get(channel)
        return recent[-1] if recent else None

    def clients(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def heartbeat(self) -> None:
        """A comment line to every client sent nothing since the last heartbeat (keeps proxies
        and clients from timing the stream out)."""
        for subs in self._subscribers.values():
            for sub in subs:
                if sub.idle:
                    sub.deliver(HEARTBEAT, _HEARTBEAT_CHUNK)
                sub.idle = True

    async def run_heartbeats(self, period_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period_s)
            self.heartbeat()

    def close_all(self) -> None:
        """End every stream, and any opened from now on (shutdown)."""
        self._closed = True
        for subs in self._subscribers.values():
            for sub in subs:
                sub.close()
        self._subscribers.clear()


def sse(event: Event) -> bytes:
    """One SSE message; the payload is already JSON (one line)."""
    kind = event.channel.split(":", 1)[0]
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event.id.encode(), kind.encode(), event.data)
