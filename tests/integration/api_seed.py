"""Data behind every route of a real API, for the tests that throw hostile parameters at it: a site
in the zone furthest ahead of UTC with meters, readings and energy, a certificate, and a grid
region with history (both bases), a forecast and a mix. With them a generated request reaches the
route's queries and arithmetic instead of stopping at a 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from helpers import api_server

from ingest.registry import MeterRecord, SiteRecord, register
from loadtest.scratch import drop_topics, fresh_topics, make_key
from schemas.settings import Settings

__all__ = ["METER", "REGION", "SITE", "T0", "WINDOW", "SeededApi", "seeded_api"]

SITE, METER, REGION = "bnd-site", "main", "BND-R"
# +14:00 all year: local days and months start before the UTC ones, the case out-of-range
# instants first broke
ZONE = "Pacific/Kiritimati"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
WINDOW = {"start": "2026-04-01T00:00:00Z", "end": "2026-04-02T00:00:00Z"}

_READINGS = """
INSERT INTO readings (meter_id, ts, energy_kwh, power_kw)
SELECT m.meter_id, $2::timestamptz + i * interval '15 minutes', 100 + i, 4
  FROM meters m, generate_series(0, 95) i
 WHERE m.site_id = $1 AND m.meter = $3
ON CONFLICT DO NOTHING
"""
_ENERGY = """
INSERT INTO energy_interval (meter_id, bucket_start, kwh, coverage_s, n, quality)
SELECT m.meter_id, $2::timestamptz + i * interval '15 minutes', 1, 900, 1, 0
  FROM meters m, generate_series(0, 95) i
 WHERE m.site_id = $1
ON CONFLICT DO NOTHING
"""
_INTENSITY = """
INSERT INTO grid_intensity (region, ts, interval_s, factor_set, scope, basis, kind, intensity_g_per_kwh,
                            generation_mw, fossil_share, renewable_share, nonfossil_share)
SELECT $1, $2::timestamptz + i * interval '1 hour', 3600, 'ipcc2014-lifecycle', 'lifecycle', b, k,
       500 + 10 * (i % 7), 100, 0.6, 0.3, 0.4
  FROM generate_series(-48, 96) i, unnest(ARRAY['consumption', 'production']) b,
       unnest(ARRAY['actual', 'forecast']) k
ON CONFLICT DO NOTHING
"""
_MIX = """
INSERT INTO grid_mix (region, ts, interval_s, revision, generation_mw)
SELECT $1, $2::timestamptz + i * interval '1 hour', 3600, 0, '{"coal": 60, "wind": 40}'
  FROM generate_series(0, 23) i
ON CONFLICT DO NOTHING
"""
_CERTIFICATE = """
INSERT INTO green_certificates (site_id, kind, period_start, period_end, mwh)
VALUES ($1, 'certificate', $2, $2::timestamptz + interval '1 day', 5)
RETURNING certificate_id
"""


@dataclass(frozen=True, slots=True)
class SeededApi:
    base: str
    token: str  # an admin key that no rate limit stops
    certificate_id: int


async def _seed(s: Settings) -> int:
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(SITE, region=REGION, timezone=ZONE)],
        [MeterRecord(SITE, METER), MeterRecord(SITE, "light", role="sub_item", sub_item="照明插座")],
    )
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        await conn.execute(_READINGS, SITE, T0, METER)
        await conn.execute(_ENERGY, SITE, T0)
        await conn.execute(_INTENSITY, REGION, T0)
        await conn.execute(_MIX, REGION, T0)
        return int(await conn.fetchval(_CERTIFICATE, SITE, T0))
    finally:
        await conn.close()


@asynccontextmanager
async def seeded_api(settings: Settings, label: str) -> AsyncIterator[SeededApi]:
    """A real API over the session's database with the data above (added once per session: the
    inserts skip what is there), on topics of its own."""
    fresh = await fresh_topics(settings, label)
    try:
        certificate = await _seed(fresh)
        token = await make_key(fresh, rate_per_s=100_000, burst=100_000)
        async with api_server(fresh) as base:
            yield SeededApi(base, token, certificate)
    finally:
        await drop_topics(fresh)
