"""Registers sites and meters with what readings alone cannot say: kind, zone, roles, sub-items.

The ingest worker auto-registers unknown meters as plain `main` meters; sources that know
better (the simulator, replay, an operator's import) upsert the truth here first, and a later
upsert corrects an auto-registered row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

import asyncpg

from schemas.vocabulary import MeterRole, SiteKind, SubItem

__all__ = ["MeterRecord", "SiteRecord", "register"]


@dataclass(frozen=True, slots=True)
class SiteRecord:
    site_id: str
    name: str | None = None
    kind: SiteKind = "building"
    region: str | None = None
    timezone: str = "Asia/Shanghai"
    floor_area_m2: float | None = None
    tenant: str = "default"


@dataclass(frozen=True, slots=True)
class MeterRecord:
    site_id: str
    meter: str
    role: MeterRole = "main"
    sub_item: SubItem | None = None
    multiplier: float = 1.0
    rollover_kwh: float | None = None
    max_power_kw: float | None = None


_UPSERT_SITE = """
INSERT INTO sites (site_id, name, kind, region, timezone, floor_area_m2, tenant, auto_registered)
VALUES ($1, $2, $3, $4, $5, $6, $7, false)
ON CONFLICT (site_id) DO UPDATE
   SET name = EXCLUDED.name, kind = EXCLUDED.kind, region = EXCLUDED.region, timezone = EXCLUDED.timezone,
       floor_area_m2 = EXCLUDED.floor_area_m2, tenant = EXCLUDED.tenant, auto_registered = false
"""
_UPSERT_METER = """
INSERT INTO meters (site_id, meter, role, sub_item, multiplier, rollover_kwh, max_power_kw, auto_registered)
VALUES ($1, $2, $3, $4, $5, $6, $7, false)
ON CONFLICT (site_id, meter) DO UPDATE
   SET role = EXCLUDED.role, sub_item = EXCLUDED.sub_item, multiplier = EXCLUDED.multiplier,
       rollover_kwh = EXCLUDED.rollover_kwh, max_power_kw = EXCLUDED.max_power_kw, auto_registered = false
"""


async def register(dsn: str, sites: Sequence[SiteRecord], meters: Sequence[MeterRecord]) -> None:
    """Upsert these sites and meters in one transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.executemany(_UPSERT_SITE, [astuple(s) for s in sites])
            await conn.executemany(_UPSERT_METER, [astuple(m) for m in meters])
    finally:
        await conn.close()
