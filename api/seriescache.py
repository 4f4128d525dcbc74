"""Energy series answers kept in memory, dropped by the live stream when the site's energy changes.

A dashboard asks for the same series again and again (today by quarter hour, the month by day),
and most of it has not changed since the last time. The readings consumer publishes a site
event after each batch it commits for a site; this API process reads every one of them (the
stream hub). So an answer can be kept until the next event for its site says the site's
energy moved, and `WATTSTREAM_API_SERIES_CACHE_S` at most.

Three guards keep a kept answer from being wrong:
- **A generation per site.** An event bumps the site's generation, and an answer is kept only
  if the generation did not move while it was computed. A query that read the database before
  a commit and finished after that commit's event is not kept.
- **No answers from a deaf stream.** The stream consumer reports about once a second whether it
  has read everything that was in the topics a check earlier. Without a report saying so in
  the last LIVE_FOR_S, nothing is kept or answered from memory, and everything kept is dropped
  when it catches up again (events may have been missed).
- **Bounded.** At most `max_bytes` of answers, least recently used first out.

The scope check is not the cache's: a route answers from it only for a key the site directory
shows the site to (`SiteDirectory.cached_visible`), and the answer does not depend on the key.
A client can ask past it with `Cache-Control: no-cache`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

from prometheus_client import Counter

__all__ = ["SERIES_CACHE", "Generation", "SeriesCache"]

Generation = tuple[int, int]  # (stream epoch, site generation)

SERIES_CACHE: Final = Counter(
    "wattstream_api_series_cache_total", "Energy series answers by cache outcome", ["outcome"]
)


class SeriesCache:
    # what an entry costs beyond its body: the key, the entry tuple, the ordered dict's node
    ENTRY_OVERHEAD: Final = 400
    # the stream consumer reports that it has caught up about once a second; without a report
    # for this long, it is taken to be deaf
    LIVE_FOR_S: Final = 3.0

    def __init__(self, max_bytes: int, ttl_s: float) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._live_until = 0.0
        self._entries: OrderedDict[Hashable, tuple[float, str, Generation, bytes]] = OrderedDict()
        self._generations: dict[str, int] = {}
        self._epoch = 0  # moves when the stream reconnects: nothing read while deaf is kept
        self._bytes = 0

    @property
    def live(self) -> bool:
        """The stream consumer reported, less than LIVE_FOR_S ago, that it had caught up."""
        return time.monotonic() < self._live_until

    @property
    def usable(self) -> bool:
        return self.max_bytes > 0 and self.live

    def generation(self, site: str) -> Generation:
        """Read it before querying; hand it to `put` with the answer."""
        return self._epoch, self._generations.get(site, 0)

    def get(self, site: str, key: Hashable) -> bytes | None:
        if not self.usable:
            return None
        entry = self._entries.get(key)
        if entry is None:
            SERIES_CACHE.labels("miss").inc()
            return None
        expires, entry_site, generation, body = entry
        if entry_site != site or generation != self.generation(site) or expires < time.monotonic():
            self._remove(key)
            SERIES_CACHE.labels("stale").inc()
            return None
        self._entries.move_to_end(key)
        SERIES_CACHE.labels("hit").inc()
        return body

    def put(self, site: str, key: Hashable, generation: Generation, body: bytes) -> None:
        """Keep `body` if the site's generation is still `generation` (read before the query)."""
        if not self.usable or generation != self.generation(site) or len(body) > self.max_bytes // 4:
            return
        self._remove(key)
        self._entries[key] = (time.monotonic() + self.ttl_s, site, generation, body)
        self._bytes += len(body) + self.ENTRY_OVERHEAD
        while self._bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def invalidate(self, site: str) -> None:
        """The site's energy changed: every answer kept for it is stale from now on."""
        self._generations[site] = self._generations.get(site, 0) + 1

    def set_live(self, live: bool) -> None:
        """The stream consumer has caught up (True), or is behind or cannot reach Kafka (False).
        Any change from live to deaf or back drops everything kept: events may have been missed."""
        if live != self.live:
            self._epoch += 1
            self.clear()
        self._live_until = time.monotonic() + self.LIVE_FOR_S if live else 0.0

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[3]) + self.ENTRY_OVERHEAD
