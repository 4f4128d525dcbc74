"""The sites an API process knows, in memory: the hot paths' scope check without a round trip.

`/v1/sites/{site}/latest` and the site stream check a site against the key's scope on every
request. The directory holds every site's tenant, region and time zone, reloaded every
`WATTSTREAM_API_SITE_REFRESH_S` and whenever the database announces a change to a site or a
meter (migration 008). A site the directory does not show to a key (absent, or another
tenant's) is then looked up in the database under the key's scope (row-level security). So a
hidden site and a missing one cost the same lookup and answer the same 404, and a site
registered since the last reload is found at once. A site moved to another tenant is hidden
from the old tenant's keys as soon as the announcement arrives (the periodic reload covers an
announcement lost with a dropped connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import asyncpg

from api.auth import Principal, scoped_connection
from api.params import site_or_404
from runtime.backoff import Backoff, pause
from runtime.dberrors import TRANSIENT_DB_ERRORS

__all__ = ["CHANNEL", "SERVICE", "SiteDirectory", "SiteInfo"]

log = logging.getLogger(__name__)

# the directory's own reads see every site (the API role's row-level security is told so)
SERVICE = Principal(key_id="", name="api site directory", role="operator", tenant=None, sites=frozenset())

_ALL = "SELECT site_id, tenant, region, timezone FROM sites"


@dataclass(frozen=True, slots=True)
class SiteInfo:
    site_id: str
    tenant: str
    region: str | None
    timezone: str


def _info(row: asyncpg.Record) -> SiteInfo:
    return SiteInfo(row["site_id"], row["tenant"], row["region"], row["timezone"])


CHANNEL = "wattstream_registry"  # migration 008: a site or meter changed; the payload is the site


class SiteDirectory:
    """Every site, in memory. Reloaded when the database announces a change to a site or a
    meter (NOTIFY on `CHANNEL`, from a connection of its own given `dsn`), and every
    `refresh_s` in any case; `on_change(site)` is told which sites changed once the reload
    shows them (the series cache drops their answers)."""

    # announcements are gathered this long before one reload: registering 500 sites is one
    COALESCE_S: Final = 0.05

    def __init__(
        self,
        pool: asyncpg.Pool,
        refresh_s: float,
        dsn: str | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._pool = pool
        self._refresh_s = refresh_s
        self._dsn = dsn
        self._on_change = on_change
        self._sites: dict[str, SiteInfo] = {}
        self._changed: set[str] = set()
        self._wake = asyncio.Event()

    async def load(self) -> None:
        async with scoped_connection(self._pool, SERVICE) as conn:
            rows = await conn.fetch(_ALL)
        self._sites = {r["site_id"]: _info(r) for r in rows}

    async def run(self, stop: asyncio.Event) -> None:
        """Reload on each announcement and every `refresh_s` until `stop`; a failed reload keeps
        the last one and is tried again."""
        listener = asyncio.create_task(self._listen(stop)) if self._dsn else None
        try:
            while not stop.is_set():
                await _first_of(self._refresh_s, stop, self._wake)
                if stop.is_set():
                    return
                await asyncio.sleep(self.COALESCE_S)
                self._wake.clear()
                changed, self._changed = self._changed, set()
                try:
                    await self.load()
                except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
                    log.warning("site directory reload failed (keeping the last one): %s", exc)
                    self._changed |= changed
                    continue
                if self._on_change is not None:
                    for site in changed:
                        self._on_change(site)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    def _announced(self, _conn: object, _pid: int, _channel: str, site: str) -> None:
        self._changed.add(site)
        self._wake.set()

    async def _listen(self, stop: asyncio.Event) -> None:
        """Hold a connection that LISTENs on `CHANNEL`; reconnect when it is lost. Whatever
        changed while nobody listened is caught by a whole reload on each (re)connection."""
        dsn = self._dsn or ""
        backoff = Backoff(1.0, 30.0)
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(dsn)
            except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
                delay = backoff.failed()
                log.warning("registry announcements: cannot listen, retrying in %.0f s: %s", delay, exc)
                await pause(delay, stop)
                continue
            lost = asyncio.Event()
            try:
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._announced)
                backoff.reset()
                self._wake.set()  # a whole reload: changes made while nobody listened
                await _first_of(None, stop, lost)
            except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("registry announcements: listening failed: %s", exc)
            finally:
                conn.terminate()

    def cached_visible(self, site: str, who: Principal) -> SiteInfo | None:
        """The site if the directory holds it and `who` may see it (no round trip)."""
        info = self._sites.get(site)
        return info if info is not None and who.can_see(info.site_id, info.tenant) else None

    async def visible(self, site: str, who: Principal) -> SiteInfo:
        """The site if `who` may see it, else the 404 of a missing site (`site_or_404`'s)."""
        info = self.cached_visible(site, who)
        if info is not None:
            return info
        async with scoped_connection(self._pool, who) as conn:
            row = await site_or_404(conn, site, who)
        info = self._sites[site] = _info(row)
        return info


async def _first_of(within: float | None, *events: asyncio.Event) -> None:
    """Return when any of the events is set, or after `within` seconds (None: no limit)."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()
