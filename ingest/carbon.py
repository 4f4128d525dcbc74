"""Grid intensity and site emissions over the database: computed, stored with restatements, locked.

**Intensity.** For every timestamp a batch of mixes touches, the current mix (highest
revision) of every region at that timestamp is loaded and, per region, production-based
intensity and shares are computed with the region's selected factor set for each scope
(lifecycle and direct), and with the operator's own emissions where published (factor set
`publisher`: emissions ÷ all positive generation). Consumption-based intensity traces the
exchanges between the regions known at that timestamp (`core.intensity`); a neighbour with
no mix there is external, valued at its annual grid factor where an official table covers
it, else at its factor set's `unknown` factor, and the result is flagged
`neighbour_fallback:<region>`. Imports are taken from the importer's record; where it does
not list a neighbour, from that neighbour's exports.

**Emissions.** A site's bucket emissions are its total energy (main meters; facility meters
for a data centre without one) times the time-matched intensity of its region, weighted by
the overlap of each intensity interval with the bucket. Sources are tried in order:
consumption-based, production-based (the configured scope's factor set), then the operator's
published intensity. `measured`: the first source with any overlap covers the whole bucket;
`estimated`: it covers part of it, or the nearest interval within the tolerance is used;
`fallback`: the region's official annual grid factor; `missing`: nothing yet (restated when
intensity arrives). The residual factor (market-based, for energy no certificate covers) is
the official residual factor where one exists (China: national excluding market-traded
non-fossil power), else the location-based intensity, as the GHG Protocol's Scope 2
guidance allows where no residual mix is published.

**Restatements** are kept: a derived row is replaced by closing it (`superseded_at`) and
inserting the new one, both at the transaction time, only when a value changed.

**Locks.** A site's emissions read its region's intensity and its own energy, which two
different consumers write. Readings transactions take a shared advisory lock per region they
touch, grid transactions an exclusive one on the regions whose intensity they change, so
each sees the other's committed rows. Grid transactions also lock each timestamp they
compute (flow tracing reads every region at it). Lock order: timestamps, then regions, each
sorted, so there are no cycles.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any, Final

import asyncpg
import numpy as np

from core.emissions import IntensitySources, SourceSeries, bucket_emission
from core.exchanges import exchanges
from core.factors import FactorLibrary, Scope
from core.intensity import FUEL_CLASS, consumption_intensity, production_intensity
from ingest import metrics
from ingest.writer import ReadingRows
from schemas.grid import fuel_of
from schemas.timeutil import from_epoch_us, to_epoch_us

__all__ = [
    "EmissionRow",
    "EmissionsStage",
    "GridCarbon",
    "IntensityRow",
    "lock_regions",
    "lock_timestamps",
]

SCOPES: Final[tuple[Scope, ...]] = ("lifecycle", "direct")
_REGION_LOCK: Final = 1
_TS_LOCK: Final = 2
_US: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class IntensityRow:
    region: str
    ts: datetime
    interval_s: int
    factor_set: str
    scope: str
    basis: str
    kind: str
    intensity_g_per_kwh: float | None
    generation_mw: float | None
    fossil_share: float | None
    renewable_share: float | None
    nonfossil_share: float | None
    flags: list[str]
    mix_revision: int | None


@dataclass(frozen=True, slots=True)
class EmissionRow:
    site_id: str
    bucket_start: datetime
    bucket_s: int
    kwh: float
    intensity_g_per_kwh: float | None
    co2e_kg: float | None
    residual_g_per_kwh: float | None
    factor_set: str | None
    intensity_source: str | None
    quality: str


_INTENSITY_COLS: Final = tuple(f.name for f in fields(IntensityRow))
_EMISSION_COLS: Final = tuple(f.name for f in fields(EmissionRow))

# Restatement, for both derived tables: rows are staged, current rows whose values differ are
# closed, and staged rows with no current row left are inserted (and returned).
_INTENSITY_DDL = """
CREATE TEMP TABLE IF NOT EXISTS grid_intensity_stage (LIKE grid_intensity INCLUDING DEFAULTS)
    ON COMMIT DELETE ROWS
"""
_INTENSITY_CLOSE = """
UPDATE grid_intensity t SET superseded_at = now()
  FROM grid_intensity_stage s
 WHERE t.superseded_at IS NULL
   AND t.region = s.region AND t.factor_set = s.factor_set AND t.basis = s.basis AND t.kind = s.kind
   AND t.ts = s.ts
   AND (t.interval_s, t.intensity_g_per_kwh, t.generation_mw, t.fossil_share, t.renewable_share,
        t.nonfossil_share, t.flags)
       IS DISTINCT FROM
       (s.interval_s, s.intensity_g_per_kwh, s.generation_mw, s.fossil_share, s.renewable_share,
        s.nonfossil_share, s.flags)
   AND coalesce(s.mix_revision, 0) >= coalesce(t.mix_revision, 0)  -- a lower revision never restates
"""
_INTENSITY_INSERT = """
INSERT INTO grid_intensity
       (region, ts, interval_s, factor_set, scope, basis, kind, intensity_g_per_kwh,
        generation_mw, fossil_share, renewable_share, nonfossil_share, flags, mix_revision)
SELECT s.region, s.ts, s.interval_s, s.factor_set, s.scope, s.basis, s.kind, s.intensity_g_per_kwh,
       s.generation_mw, s.fossil_share, s.renewable_share, s.nonfossil_share, s.flags, s.mix_revision
  FROM grid_intensity_stage s
 WHERE NOT EXISTS (SELECT FROM grid_intensity t
                    WHERE t.superseded_at IS NULL AND t.region = s.region AND t.factor_set = s.factor_set
                      AND t.basis = s.basis AND t.kind = s.kind AND t.ts = s.ts)
RETURNING *
"""
_EMISSION_DDL = """
CREATE TEMP TABLE IF NOT EXISTS site_emissions_stage (LIKE site_emissions INCLUDING DEFAULTS)
    ON COMMIT DELETE ROWS
"""
_EMISSION_CLOSE = """
UPDATE site_emissions t SET superseded_at = now()
  FROM site_emissions_stage s
 WHERE t.superseded_at IS NULL AND t.site_id = s.site_id AND t.bucket_start = s.bucket_start
   AND (t.kwh, t.intensity_g_per_kwh, t.co2e_kg, t.residual_g_per_kwh, t.factor_set, t.intensity_source,
        t.quality)
       IS DISTINCT FROM
       (s.kwh, s.intensity_g_per_kwh, s.co2e_kg, s.residual_g_per_kwh, s.factor_set, s.intensity_source,
        s.quality)
"""
_EMISSION_INSERT = """
INSERT INTO site_emissions (site_id, bucket_start, bucket_s, kwh, intensity_g_per_kwh, co2e_kg,
                            residual_g_per_kwh, factor_set, intensity_source, quality)
SELECT s.site_id, s.bucket_start, s.bucket_s, s.kwh, s.intensity_g_per_kwh, s.co2e_kg,
       s.residual_g_per_kwh, s.factor_set, s.intensity_source, s.quality
  FROM site_emissions_stage s
 WHERE NOT EXISTS (SELECT FROM site_emissions t
                    WHERE t.superseded_at IS NULL AND t.site_id = s.site_id
                      AND t.bucket_start = s.bucket_start)
RETURNING site_id
"""

_MIXES_AT = """
SELECT DISTINCT ON (ts, region) region, (extract(epoch FROM ts) * 1000000)::bigint AS ts_us, interval_s,
       revision, generation_mw, imports_mw, exports_mw, emissions_t_per_h
  FROM grid_mix WHERE ts = ANY($1::timestamptz[])
 ORDER BY ts, region, revision DESC
"""
_SITE_ENERGY = """
SELECT w.site_id, w.bucket_start, s.region, sum(e.kwh) AS kwh
  FROM unnest($1::text[], $2::timestamptz[]) AS w(site_id, bucket_start)
  JOIN sites s ON s.site_id = w.site_id
  JOIN meters m ON m.site_id = w.site_id AND m.role = wattstream_total_role(w.site_id)
  JOIN energy_interval e ON e.meter_id = m.meter_id AND e.bucket_start = w.bucket_start
 WHERE s.region IS NOT NULL
 GROUP BY 1, 2, 3
"""
_INTENSITY_NEAR = """
SELECT region, (extract(epoch FROM ts) * 1000000)::bigint AS ts_us, interval_s, basis, factor_set,
       intensity_g_per_kwh
  FROM grid_intensity
 WHERE superseded_at IS NULL AND kind = 'actual' AND intensity_g_per_kwh IS NOT NULL
   AND region = $1 AND ts >= $2 AND ts < $3 AND (factor_set = $4 OR basis = 'published')
"""
_SITE_BUCKETS_IN = """
SELECT DISTINCT m.site_id, e.bucket_start
  FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS c(region, lo, hi)
  JOIN sites s ON s.region = c.region
  JOIN meters m ON m.site_id = s.site_id AND m.role = wattstream_total_role(s.site_id)
  JOIN energy_interval e ON e.meter_id = m.meter_id AND e.bucket_start >= c.lo AND e.bucket_start < c.hi
"""
_STAGE_SITE_BUCKETS = """
SELECT DISTINCT m.site_id, e.bucket_start, s.region
  FROM energy_stage e JOIN meters m USING (meter_id) JOIN sites s ON s.site_id = m.site_id
 WHERE m.role = wattstream_total_role(m.site_id) AND s.region IS NOT NULL
"""


def _lock_key(text: str) -> int:
    """A stable signed 32-bit key (Python's hash() is salted per process)."""
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


async def lock_regions(conn: asyncpg.Connection, regions: Iterable[str], *, shared: bool) -> None:
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    for key in sorted({_lock_key(r) for r in regions}):
        await conn.execute(f"SELECT {fn}($1::int, $2::int)", _REGION_LOCK, key)


async def lock_timestamps(conn: asyncpg.Connection, ts_us: Iterable[int]) -> None:
    for key in sorted({int((t // _US) % (1 << 31)) for t in ts_us}):
        await conn.execute("SELECT pg_advisory_xact_lock($1::int, $2::int)", _TS_LOCK, key)


async def _restate(
    conn: asyncpg.Connection,
    stage: str,
    rows: Sequence[IntensityRow] | Sequence[EmissionRow],
    cols: Sequence[str],
    close: str,
    insert: str,
) -> list[asyncpg.Record]:
    """Stage rows, close the current rows they change, insert them: the rows new or changed."""
    if not rows:
        return []
    await conn.copy_records_to_table(stage, records=[astuple(r) for r in rows], columns=cols)
    await conn.execute(close)
    changed = await conn.fetch(insert)
    await conn.execute(f"TRUNCATE {stage}")  # a constant name; the stage is reused in the transaction
    return list(changed)


def _json(value: Any) -> dict[str, float]:
    data = json.loads(value) if isinstance(value, str) else value
    return {str(k): float(v) for k, v in (data or {}).items()}


def _none_if_nan(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


class GridCarbon:
    """Intensity and emissions computation bound to a factor library and the settings."""

    def __init__(
        self,
        factors: FactorLibrary,
        *,
        emissions_scope: Scope = "lifecycle",
        tolerance_s: float = 3600.0,
        bucket_s: int = 900,
    ) -> None:
        self.factors = factors
        self._scope = emissions_scope
        self._tolerance_us = int(tolerance_s * _US)
        self._bucket_s = bucket_s

    async def prepare(self, conn: asyncpg.Connection) -> None:
        await conn.execute(_INTENSITY_DDL)
        await conn.execute(_EMISSION_DDL)

    # --- intensity ---

    async def compute_intensity(self, conn: asyncpg.Connection, ts_us: Sequence[int]) -> list[IntensityRow]:
        """Every region's intensity at these timestamps, from the current mixes (see the docstring)."""
        rows = await conn.fetch(_MIXES_AT, [from_epoch_us(t) for t in sorted(set(ts_us))])
        by_ts: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for r in rows:
            by_ts[r["ts_us"]].append(r)
        out: list[IntensityRow] = []
        for t, mixes in sorted(by_ts.items()):
            out.extend(self._intensity_at(t, mixes))
        return out

    def _intensity_at(self, t: int, mixes: Sequence[asyncpg.Record]) -> list[IntensityRow]:
        regions = [m["region"] for m in mixes]
        gen = [_json(m["generation_mw"]) for m in mixes]
        keys = sorted({k for g in gen for k in g})
        mw = np.array([[g.get(k, np.nan) for k in keys] for g in gen], dtype=np.float64)
        cls = np.array([FUEL_CLASS[fuel_of(k) or "unknown"] for k in keys], dtype=np.int8)
        ts = from_epoch_us(t)
        t_arr = np.array([t], dtype=np.int64)
        out: list[IntensityRow] = []
        imports = [_json(m["imports_mw"]) for m in mixes]
        exports = [_json(m["exports_mw"]) for m in mixes]
        for scope in SCOPES:
            sets = [self.factors.select(r, scope) for r in regions]
            factor = np.vstack([fs.matrix(keys, t_arr) for fs in sets])
            prod = production_intensity(mw, factor, cls)
            cons, flags = self._trace(t, regions, imports, exports, prod.generation_mw, prod.intensity, scope)
            for i, m in enumerate(mixes):
                for basis, value, f in (
                    ("production", prod.intensity[i], []),
                    ("consumption", cons[i], flags[i]),
                ):
                    out.append(
                        IntensityRow(
                            regions[i],
                            ts,
                            m["interval_s"],
                            sets[i].name,
                            scope,
                            basis,
                            "actual",
                            _none_if_nan(value),
                            float(prod.generation_mw[i]),
                            _none_if_nan(prod.fossil_share[i]),
                            _none_if_nan(prod.renewable_share[i]),
                            _none_if_nan(prod.nonfossil_share[i]),
                            f,
                            m["revision"],
                        )
                    )
        # shares are of primary generation, the same whatever the factors: the last scope's will do
        shares = prod
        for i, m in enumerate(mixes):
            if m["emissions_t_per_h"] is None:
                continue
            positive = float(np.nansum(np.where(mw[i] > 0, mw[i], 0.0)))
            value = m["emissions_t_per_h"] * 1000.0 / positive if positive > 0 else math.nan  # t/MWh -> g/kWh
            out.append(
                IntensityRow(
                    regions[i],
                    ts,
                    m["interval_s"],
                    "publisher",
                    "lifecycle",
                    "production",
                    "actual",
                    _none_if_nan(value),
                    positive,
                    _none_if_nan(shares.fossil_share[i]),
                    _none_if_nan(shares.renewable_share[i]),
                    _none_if_nan(shares.nonfossil_share[i]),
                    ["publisher_emissions"],
                    m["revision"],
                )
            )
        return out

    def _trace(
        self,
        t: int,
        regions: Sequence[str],
        imports: Sequence[dict[str, float]],
        exports: Sequence[dict[str, float]],
        production: np.ndarray,
        intensity: np.ndarray,
        scope: Scope,
    ) -> tuple[np.ndarray, list[list[str]]]:
        net = exchanges(regions, imports, exports)
        ext = np.array([[self._fallback(r, t, scope) for r in net.external]], dtype=np.float64)
        cons = consumption_intensity(
            production[None, :], np.where(production > 0, intensity, np.nan)[None, :], net.flows_mw[None], ext
        )
        return cons[0], net.flags

    def _fallback(self, region: str, t: int, scope: Scope) -> float:
        table = self.factors.annual_for(region)
        year = from_epoch_us(t).year
        if table is not None:
            found = table.average(region, year)
            if found is not None:
                return found[0]
        return self.factors.select(region, scope).value("unknown", t)

    async def store_intensity(
        self, conn: asyncpg.Connection, rows: Sequence[IntensityRow]
    ) -> list[asyncpg.Record]:
        """Rows that are new or changed (restated), as stored; unchanged ones are not written."""
        return await _restate(
            conn, "grid_intensity_stage", rows, _INTENSITY_COLS, _INTENSITY_CLOSE, _INTENSITY_INSERT
        )

    # --- emissions ---

    async def restate_emissions_after(
        self, conn: asyncpg.Connection, changed: Sequence[asyncpg.Record]
    ) -> int:
        """Recompute the emissions of every site bucket a changed intensity can reach."""
        spans: dict[str, tuple[int, int]] = {}
        for r in changed:
            if r["kind"] != "actual":
                continue
            t0 = to_epoch_us(r["ts"]) - self._tolerance_us - self._bucket_s * _US
            t1 = to_epoch_us(r["ts"]) + r["interval_s"] * _US + self._tolerance_us
            lo, hi = spans.get(r["region"], (t0, t1))
            spans[r["region"]] = (min(lo, t0), max(hi, t1))
        if not spans:
            return 0
        await lock_regions(conn, spans, shared=False)
        regions = list(spans)
        pairs = await conn.fetch(
            _SITE_BUCKETS_IN,
            regions,
            [from_epoch_us(spans[r][0]) for r in regions],
            [from_epoch_us(spans[r][1]) for r in regions],
        )
        return await self.store_emissions(conn, [(p["site_id"], p["bucket_start"]) for p in pairs])

    async def store_emissions(self, conn: asyncpg.Connection, pairs: Sequence[tuple[str, datetime]]) -> int:
        """Compute and store (restating what changed) the emissions of these site buckets."""
        rows = await self.compute_emissions(conn, pairs)
        changed = await _restate(
            conn, "site_emissions_stage", rows, _EMISSION_COLS, _EMISSION_CLOSE, _EMISSION_INSERT
        )
        return len(changed)

    async def compute_emissions(
        self, conn: asyncpg.Connection, pairs: Sequence[tuple[str, datetime]]
    ) -> list[EmissionRow]:
        if not pairs:
            return []
        energy = await conn.fetch(_SITE_ENERGY, [p[0] for p in pairs], [p[1] for p in pairs])
        by_region: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for e in energy:
            by_region[e["region"]].append(e)
        bucket_us = self._bucket_s * _US
        out: list[EmissionRow] = []
        for region, items in by_region.items():
            starts = [to_epoch_us(e["bucket_start"]) for e in items]
            lo, hi = (
                min(starts) - self._tolerance_us - 86_400 * _US,
                max(starts) + bucket_us + self._tolerance_us,
            )
            fset = self.factors.select(region, self._scope).name
            series = await conn.fetch(_INTENSITY_NEAR, region, from_epoch_us(lo), from_epoch_us(hi), fset)
            sources = _sources(series, fset)
            table = self.factors.annual_for(region)
            for e, b in zip(items, starts, strict=True):
                year = from_epoch_us(b).year
                value = bucket_emission(
                    float(e["kwh"]),
                    sources.match(b, b + bucket_us, self._tolerance_us),
                    annual=table.average(region, year) if table is not None else None,
                    annual_table=table.name if table is not None else None,
                    residual=table.residual(region, year) if table is not None else None,
                )
                out.append(
                    EmissionRow(
                        e["site_id"],
                        e["bucket_start"],
                        self._bucket_s,
                        float(e["kwh"]),
                        value.g_per_kwh,
                        value.co2e_kg,
                        value.residual_g_per_kwh,
                        value.factor_set,
                        value.source,
                        value.quality,
                    )
                )
        return out


def _sources(rows: Sequence[asyncpg.Record], factor_set: str) -> IntensitySources:
    """A region's intensity rows by source, in preference order (`core.emissions`)."""
    order = (("consumption", factor_set), ("production", factor_set), ("published", "published"))
    series = []
    for basis, fset in order:
        chosen = [r for r in rows if r["basis"] == basis and r["factor_set"] == fset]
        series.append(
            SourceSeries.of(
                basis,
                fset,
                [r["ts_us"] for r in chosen],
                [r["interval_s"] for r in chosen],
                [r["intensity_g_per_kwh"] for r in chosen],
            )
        )
    return IntensitySources(series)


class EmissionsStage:
    """The readings worker's batch stage: emissions of the site buckets whose energy this batch
    recomputed (they are still in `energy_stage`), in the same transaction."""

    def __init__(self, carbon: GridCarbon) -> None:
        self._carbon = carbon

    async def prepare(self, conn: asyncpg.Connection) -> None:
        await self._carbon.prepare(conn)

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if not len(rows):
            return
        touched = await conn.fetch(_STAGE_SITE_BUCKETS)
        if not touched:
            return
        await lock_regions(conn, {t["region"] for t in touched}, shared=True)
        n = await self._carbon.store_emissions(conn, [(t["site_id"], t["bucket_start"]) for t in touched])
        metrics.EMISSIONS_WRITTEN.labels("ingest").inc(n)
