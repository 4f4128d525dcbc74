"""The in-process fan-out behind the SSE streams: replay after an id, bounded clients, shutdown."""

from __future__ import annotations

from api.streams import Event, StreamHub, parse_event_id, sse


def _event(channel: str, offset: int, partition: int = 0) -> Event:
    return Event(channel, partition, offset, b'{"n": %d}' % offset)


async def test_subscribers_get_their_channel_only_and_resume_after_an_id() -> None:
    hub = StreamHub(buffer=3, client_queue=10)
    a, _ = hub.subscribe("grid:A", None)
    b, _ = hub.subscribe("grid:B", None)
    for i in range(5):
        hub.publish(_event("grid:A", i))
    assert a.queue.qsize() == 5 and b.queue.qsize() == 0
    # a reconnecting client gets what it missed after its Last-Event-ID, as far as the buffer reaches
    _, missed = hub.subscribe("grid:A", parse_event_id("0.2"))
    assert [e.offset for e in missed] == [3, 4]
    _, gone = hub.subscribe("grid:A", parse_event_id("0.0"))
    assert [e.offset for e in gone] == [2, 3, 4]  # the buffer holds 3
    _, none = hub.subscribe("grid:A", None)
    assert none == []


async def test_a_slow_client_is_dropped_not_buffered() -> None:
    hub = StreamHub(buffer=100, client_queue=2)
    slow, _ = hub.subscribe("site:x", None)
    fast, _ = hub.subscribe("site:x", None)
    for i in range(3):
        hub.publish(_event("site:x", i))
        if i < 2:
            assert fast.queue.get_nowait() is not None
    assert slow.dropped and not fast.dropped
    assert slow.queue.qsize() <= 2 and list(_drain(slow))[-1] is None  # ends with the end marker
    assert hub.clients() == 1
    hub.publish(_event("site:x", 9))
    assert slow.queue.qsize() == 0  # no longer fed


async def test_close_all_ends_every_stream() -> None:
    hub = StreamHub(buffer=10, client_queue=10)
    subs = [hub.subscribe(f"grid:{r}", None)[0] for r in "ABC"]
    hub.close_all()
    assert all(s.queue.get_nowait() is None for s in subs) and hub.clients() == 0


def test_event_ids_and_wire_form() -> None:
    assert parse_event_id("3.41") == (3, 41)
    for bad in (None, "", "x", "1.", ".2", "1.2.3", "-1.2"):
        assert parse_event_id(bad) is None
    assert sse(_event("grid:CN-ZJ", 7, 2)) == b'id: 2.7\nevent: grid\ndata: {"n": 7}\n\n'


def _drain(sub: object) -> list[object]:
    out = []
    q = sub.queue  # type: ignore[attr-defined]
    while not q.empty():
        out.append(q.get_nowait())
    return out
