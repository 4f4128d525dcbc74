"""Maps (site, meter) names in readings to meter ids, registering unknown ones when allowed."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

__all__ = ["MeterDirectory"]

_LOOKUP = """
SELECT m.site_id, m.meter, m.meter_id
  FROM meters m JOIN unnest($1::text[], $2::text[]) AS k(site_id, meter)
    ON m.site_id = k.site_id AND m.meter = k.meter
"""
_REGISTER_SITES = """
INSERT INTO sites (site_id, auto_registered)
SELECT DISTINCT s, true FROM unnest($1::text[]) AS s
ON CONFLICT (site_id) DO NOTHING
"""
_REGISTER_METERS = """
INSERT INTO meters (site_id, meter, auto_registered)
SELECT site_id, meter, true FROM unnest($1::text[], $2::text[]) AS k(site_id, meter)
ON CONFLICT (site_id, meter) DO NOTHING
"""

Key = tuple[str, str]


class MeterDirectory:
    """A cache of meter ids; ids never change, so entries never go stale."""

    def __init__(self, *, register_unknown: bool) -> None:
        self._register = register_unknown
        self._ids: dict[Key, int] = {}

    def get(self, key: Key) -> int | None:
        return self._ids.get(key)

    async def resolve(self, conn: asyncpg.Connection, keys: Iterable[Key]) -> set[Key]:
        """Learn the ids of these meters; returns the keys that stay unknown (not registered)."""
        missing = {k for k in keys if k not in self._ids}
        if missing:
            await self._lookup(conn, missing)
            missing -= self._ids.keys()
        if missing and self._register:
            sites, meters = zip(*sorted(missing), strict=True)
            async with conn.transaction():
                await conn.execute(_REGISTER_SITES, list(sites))
                await conn.execute(_REGISTER_METERS, list(sites), list(meters))
            await self._lookup(conn, missing)
            missing -= self._ids.keys()
        return missing

    async def _lookup(self, conn: asyncpg.Connection, keys: set[Key]) -> None:
        sites, meters = zip(*keys, strict=True)
        for r in await conn.fetch(_LOOKUP, list(sites), list(meters)):
            self._ids[(r["site_id"], r["meter"])] = r["meter_id"]
