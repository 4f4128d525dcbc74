"""One way to wait between attempts: exponential backoff that a stop event cuts short.

Every loop that retries something that is away (the database, Kafka, a peer) keeps a `Backoff`:
`failed()` gives the delay to wait now and doubles the next one up to the ceiling, `reset()`
after a success starts again from the first. `pause(delay, stop)` waits that long or until
`stop` is set, whichever comes first, so a process asked to stop never sits out a delay.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Backoff", "pause"]


class Backoff:
    """Delays from `initial` doubling to at most `ceiling` seconds."""

    def __init__(self, initial: float, ceiling: float) -> None:
        if not 0 < initial <= ceiling:
            raise ValueError(f"need 0 < initial <= ceiling, got {initial} and {ceiling}")
        self._initial = initial
        self._ceiling = ceiling
        self._next = initial

    @property
    def delay(self) -> float:
        """The delay the next failure will wait."""
        return self._next

    def failed(self) -> float:
        """Another failure: the delay to wait now (the next one doubles)."""
        delay = self._next
        self._next = min(delay * 2, self._ceiling)
        return delay

    def reset(self) -> None:
        self._next = self._initial


async def pause(delay: float, stop: asyncio.Event) -> bool:
    """Wait `delay` seconds or until `stop` is set; True when stopped."""
    with contextlib.suppress(TimeoutError):  # the delay passed without a stop: the normal case
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()
