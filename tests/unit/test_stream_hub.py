"""The in-process fan-out behind the SSE streams: replay after an id, bounded clients, heartbeats,
shutdown."""

from __future__ import annotations

import asyncio

from api.streams import HEARTBEAT, Event, StreamHub, Subscription, parse_event_id, sse


def _event(channel: str, offset: int, partition: int = 0) -> Event:
    return Event(channel, partition, offset, b'{"n": %d}' % offset)


async def test_subscribers_get_their_channel_only_and_resume_after_an_id() -> None:
    hub = StreamHub(buffer=3, client_queue=10)
    a, _ = hub.subscribe("grid:A", None)
    b, _ = hub.subscribe("grid:B", None)
    for i in range(5):
        hub.publish(_event("grid:A", i))
    assert a.pending() == 5 and b.pending() == 0
    # everything pending arrives as one chunk, in order, each event framed once
    assert await a.next() == b"".join(sse(_event("grid:A", i)) for i in range(5))
    assert a.pending() == 0
    # a reconnecting client gets what it missed after its Last-Event-ID, as far as the buffer reaches
    _, missed = hub.subscribe("grid:A", parse_event_id("0.2"))
    assert [e.offset for e in missed] == [3, 4]
    _, gone = hub.subscribe("grid:A", parse_event_id("0.0"))
    assert [e.offset for e in gone] == [2, 3, 4]  # the buffer holds 3
    _, none = hub.subscribe("grid:A", None)
    assert none == []


async def test_a_waiting_client_wakes_on_publish() -> None:
    hub = StreamHub(buffer=10, client_queue=10)
    sub, _ = hub.subscribe("grid:A", None)
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    hub.publish(_event("grid:A", 1))
    assert await asyncio.wait_for(waiting, 1) == sse(_event("grid:A", 1))


async def test_a_slow_client_is_dropped_not_buffered() -> None:
    hub = StreamHub(buffer=100, client_queue=2)
    slow, _ = hub.subscribe("site:x", None)
    fast, _ = hub.subscribe("site:x", None)
    for i in range(3):
        hub.publish(_event("site:x", i))
        if i < 2:
            assert await fast.next() == sse(_event("site:x", i))
    assert slow.dropped and not fast.dropped
    # a dropped client's pending frames are discarded and its stream ends
    assert slow.pending() == 0 and await slow.next() is None
    assert hub.clients() == 1
    hub.publish(_event("site:x", 9))
    assert slow.pending() == 0  # no longer fed
    assert fast.pending() == 2  # events 2 and 9


async def test_filtered_clients_receive_only_what_they_accept() -> None:
    hub = StreamHub(buffer=10, client_queue=10)
    odd, _ = hub.subscribe("alerts:all", None, accept=lambda e: e.offset % 2 == 1)
    for i in range(4):
        hub.publish(_event("alerts:all", i))
    assert await odd.next() == sse(_event("alerts:all", 1)) + sse(_event("alerts:all", 3))


async def test_heartbeats_go_to_idle_clients_only() -> None:
    hub = StreamHub(buffer=10, client_queue=10)
    busy, _ = hub.subscribe("grid:A", None)
    idle, _ = hub.subscribe("grid:B", None)
    hub.heartbeat()  # a first tick marks both idle again (a new client has had nothing yet)
    assert await idle.next() == HEARTBEAT and await busy.next() == HEARTBEAT
    hub.publish(_event("grid:A", 1))
    hub.heartbeat()
    assert busy.pending() == 1 and idle.pending() == 1
    assert await busy.next() == sse(_event("grid:A", 1))
    assert await idle.next() == HEARTBEAT


async def test_close_all_ends_every_stream() -> None:
    hub = StreamHub(buffer=10, client_queue=10)
    subs = [hub.subscribe(f"grid:{r}", None)[0] for r in "ABC"]
    hub.publish(_event("grid:A", 1))
    hub.close_all()
    assert hub.clients() == 0
    # what was pending is still written, then the stream ends
    assert await subs[0].next() == sse(_event("grid:A", 1)) and await subs[0].next() is None
    assert all([await s.next() is None for s in subs[1:]])


def test_event_ids_and_wire_form() -> None:
    assert parse_event_id("3.41") == (3, 41)
    for bad in (None, "", "x", "1.", ".2", "1.2.3", "-1.2"):
        assert parse_event_id(bad) is None
    # digits `str.isdigit` takes and `int` refuses ("²"), and more digits than `int` converts
    for bad in ("².1", "1.²", "١.٢", "1." + "9" * 5000, "9" * 5000 + ".1"):
        assert parse_event_id(bad) is None
    assert sse(_event("grid:CN-ZJ", 7, 2)) == b'id: 2.7\nevent: grid\ndata: {"n": 7}\n\n'


class _Server:
    """A stand-in for the server's `send`: writes at once, or waits (a full socket) when `full`."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.full = False
        self.broken = False

    async def send(self, message: dict[str, object]) -> None:
        if self.broken:
            raise RuntimeError("connection lost")
        if self.full:
            await asyncio.get_running_loop().create_future()  # flow control: wait for the reader
        self.written.append(message["body"])  # type: ignore[arg-type]


def _direct_client() -> tuple[StreamHub, Subscription, _Server]:
    """A hub with one subscriber of grid:A whose frames the hub may write through `server`."""
    hub = StreamHub(buffer=10, client_queue=3)
    sub, _ = hub.subscribe("grid:A", None)
    server = _Server()
    sub.direct = server.send
    return hub, sub, server


async def test_caught_up_clients_are_written_directly_from_the_fan_out_loop() -> None:
    hub, sub, server = _direct_client()
    hub.publish(_event("grid:A", 1))
    hub.publish(_event("grid:A", 2))
    assert server.written == [sse(_event("grid:A", 1)), sse(_event("grid:A", 2))]
    assert sub.pending() == 0  # no task was needed


async def test_a_client_the_server_cannot_write_to_at_once_is_queued_in_order() -> None:
    hub, sub, server = _direct_client()
    hub.publish(_event("grid:A", 1))
    server.full = True
    hub.publish(_event("grid:A", 2))  # the send would wait: abandoned before writing, queued
    assert server.written == [sse(_event("grid:A", 1))]
    assert sub.direct is None and sub.pending() == 1
    server.full = False
    hub.publish(_event("grid:A", 3))  # still queued: nothing overtakes a pending frame
    assert sub.pending() == 2 and len(server.written) == 1
    assert await sub.next() == sse(_event("grid:A", 2)) + sse(_event("grid:A", 3))
    # and the queue is bounded as before
    for i in range(4, 8):
        hub.publish(_event("grid:A", i))
    assert sub.dropped and await sub.next() is None


async def test_nothing_is_written_directly_while_the_clients_task_writes() -> None:
    hub, sub, server = _direct_client()
    sub.writing = True
    hub.publish(_event("grid:A", 1))
    assert server.written == [] and sub.pending() == 1


async def test_a_broken_connection_ends_the_stream() -> None:
    hub, sub, server = _direct_client()
    server.broken = True
    hub.publish(_event("grid:A", 1))
    assert sub.closed and await sub.next() is None


async def test_a_restarted_consumer_does_not_publish_what_it_read_before() -> None:
    seen: list[int] = []
    hub = StreamHub(buffer=10, client_queue=10, on_event=lambda e: seen.append(e.offset))
    sub, _ = hub.subscribe("grid:A", None)
    for i in (1, 2, 3):
        hub.publish(_event("grid:A", i))
    for i in (2, 3, 4):  # read back after a restart, then one new event
        hub.publish(_event("grid:A", i))
    assert await sub.next() == b"".join(sse(_event("grid:A", i)) for i in (1, 2, 3, 4))
    assert hub.latest("grid:A") == _event("grid:A", 4)
    assert seen == [1, 2, 3, 2, 3, 4]  # invalidations still see everything
    # another partition of the same channel (the alerts channel spans partitions) is its own order
    hub.publish(_event("grid:A", 1, partition=1))
    assert await sub.next() == sse(_event("grid:A", 1, partition=1))
