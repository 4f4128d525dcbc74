"""Energy series answers kept between site events: the generation guard, the stream's liveness,
expiry and the memory bound."""

from __future__ import annotations

import time

import pytest

from api.seriescache import SeriesCache


def _live(max_bytes: int = 1000, ttl_s: float = 60.0) -> SeriesCache:
    cache = SeriesCache(max_bytes, ttl_s)
    cache.set_live(True)
    return cache


def test_an_answer_is_kept_until_the_sites_next_event() -> None:
    cache = _live()
    g = cache.generation("a")
    cache.put("a", "k", g, b"one")
    cache.put("b", "kb", cache.generation("b"), b"other")
    assert cache.get("a", "k") == b"one"
    cache.invalidate("a")  # the site's energy changed
    assert cache.get("a", "k") is None
    assert cache.get("b", "kb") == b"other"  # another site's answers stay


def test_an_answer_computed_across_an_event_is_not_kept() -> None:
    cache = _live()
    before = cache.generation("a")  # read before the query
    cache.invalidate("a")  # a batch committed while the query ran
    cache.put("a", "k", before, b"maybe stale")
    assert cache.get("a", "k") is None


def test_nothing_is_kept_or_answered_while_the_stream_is_deaf() -> None:
    cache = SeriesCache(1000, 60)
    cache.put("a", "k", cache.generation("a"), b"x")
    assert cache.get("a", "k") is None  # never live yet
    cache.set_live(True)
    g = cache.generation("a")
    cache.put("a", "k", g, b"x")
    assert cache.get("a", "k") == b"x"
    cache.set_live(False)
    assert cache.get("a", "k") is None
    cache.put("a", "k2", cache.generation("a"), b"read while deaf")
    cache.set_live(True)  # reconnected: events may have been missed
    assert cache.get("a", "k") is None and cache.get("a", "k2") is None
    cache.put("a", "k3", g, b"started before the reconnection")
    assert cache.get("a", "k3") is None


def test_answers_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _live(ttl_s=5)
    cache.put("a", "k", cache.generation("a"), b"x")
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 2)
    cache.set_live(True)  # the stream keeps reporting
    assert cache.get("a", "k") == b"x"
    monkeypatch.setattr(time, "monotonic", lambda: now + 6)
    cache.set_live(True)
    assert cache.live and cache.get("a", "k") is None  # live, but the answer is older than 5 s


def test_a_stream_that_stops_reporting_is_deaf(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _live()
    cache.put("a", "k", cache.generation("a"), b"x")
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + SeriesCache.LIVE_FOR_S + 0.1)
    assert not cache.live and cache.get("a", "k") is None
    cache.set_live(True)  # it reports again: what was kept may have missed events
    assert cache.get("a", "k") is None


def test_memory_is_bounded_least_recently_used_first() -> None:
    entry = 25 + SeriesCache.ENTRY_OVERHEAD  # a body and what its entry costs around it
    cache = _live(max_bytes=4 * entry)
    for k in "abcd":
        cache.put("s", k, cache.generation("s"), b"x" * 25)
    assert cache.get("s", "a") == b"x" * 25  # a is now the most recently used
    cache.put("s", "e", cache.generation("s"), b"x" * 25)  # over the limit: b goes
    assert cache.get("s", "b") is None
    assert all(cache.get("s", k) is not None for k in "acde")
    cache.put("s", "big", cache.generation("s"), b"x" * (entry + 1))  # over a quarter: not kept
    assert cache.get("s", "big") is None


def test_disabled_with_no_memory() -> None:
    cache = _live(max_bytes=0)
    cache.put("a", "k", cache.generation("a"), b"")
    assert not cache.usable and cache.get("a", "k") is None
