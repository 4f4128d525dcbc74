"""The sites an API process knows, in memory: the hot paths' scope check without a round trip.

`/v1/sites/{site}/latest` and the site stream check a site against the key's scope on every
request. The directory holds every site's tenant, region and time zone, reloaded every
`WATTSTREAM_API_SITE_REFRESH_S`. A site the directory does not show to a key (absent, or
another tenant's) is then looked up in the database under the key's scope (row-level
security). So a hidden site and a missing one cost the same lookup and answer the same 404,
and a site registered since the last reload is found at once. A site moved to another tenant
is seen by the directory at its next reload, as a revoked key is by the key cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

from api.auth import Principal, scoped_connection
from api.params import site_or_404
from wattstream.dberrors import TRANSIENT_DB_ERRORS

__all__ = ["SERVICE", "SiteDirectory", "SiteInfo"]

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


class SiteDirectory:
    def __init__(self, pool: asyncpg.Pool, refresh_s: float) -> None:
        self._pool = pool
        self._refresh_s = refresh_s
        self._sites: dict[str, SiteInfo] = {}

    async def load(self) -> None:
        async with scoped_connection(self._pool, SERVICE) as conn:
            rows = await conn.fetch(_ALL)
        self._sites = {r["site_id"]: _info(r) for r in rows}

    async def run(self, stop: asyncio.Event) -> None:
        """Reload every `refresh_s` until `stop`; a failed reload keeps the last one."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._refresh_s)
            if stop.is_set():
                return
            try:
                await self.load()
            except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("site directory reload failed (keeping the last one): %s", exc)

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
