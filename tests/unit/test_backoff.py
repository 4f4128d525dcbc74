"""The one backoff: doubling to a ceiling, reset after a success, a pause that a stop cuts short."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.backoff import Backoff, pause


def test_doubles_to_the_ceiling_and_resets() -> None:
    b = Backoff(0.5, 3.0)
    assert [b.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.delay == 3.0
    b.reset()
    assert b.failed() == 0.5


@pytest.mark.parametrize(("initial", "ceiling"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_refuses_nonsense(initial: float, ceiling: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial, ceiling)


async def test_pause_returns_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    assert await pause(0.01, stop) is False
    stop.set()
    t0 = time.monotonic()
    assert await pause(60.0, stop) is True
    assert time.monotonic() - t0 < 5.0  # not the 60 s: a stop cuts the pause short
