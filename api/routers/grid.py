"""Grid carbon intensity per region: now, history (as stored or rolled up, as known at any time),
the generation mix, non-fossil shares against the programme's targets, and the lowest-carbon
window for flexible load.

Every intensity names its factor set, basis (production, consumption, published) and kind.
When `factor_set` is not given, the region's computed set of the requested scope is used (the
one the grid consumer selected for it); `basis=published` means the operator's own figures.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Path, Query

from api.auth import GridRead, Principal, Scoped
from api.deps import SettingsDep
from api.errors import ApiError, NotFound, error_responses
from api.params import PRINTABLE, AsOf, End, Start, StartOrNow, check_range
from core.intensity import lowest_window
from schemas.api import (
    CarbonWindow,
    GridMixPublic,
    GridRegion,
    IntensityNow,
    IntensityPoint,
    IntensitySeries,
    ShareBucket,
    SharesSeries,
    TargetGap,
)
from schemas.grid import fuel_of
from schemas.messages import IDENTIFIER
from schemas.timeutil import from_epoch_us, to_epoch_us

__all__ = ["router"]

router = APIRouter(prefix="/v1/grid", tags=["grid"])

Region = Annotated[str, Path(pattern=IDENTIFIER, description="grid region", examples=["CN-ZJ"])]
Basis = Literal["production", "consumption", "published"]
ScopeQ = Annotated[
    Literal["lifecycle", "direct"] | None,
    Query(description="factor scope; default: the emissions scope setting"),
]
BasisQ = Annotated[
    Basis, Query(description="production, consumption (flow-traced) or the operator's published")
]
FactorSetQ = Annotated[
    str | None,
    Query(
        max_length=100, pattern=PRINTABLE, description="a factor set by name, e.g. publisher; overrides scope"
    ),
]

# a region exists if it has grid data; a manager sees the regions its sites are in
_EXISTS = """
SELECT (EXISTS (SELECT FROM grid_mix WHERE region = $1)
        OR EXISTS (SELECT FROM grid_intensity WHERE region = $1))
   AND ($2 OR EXISTS (SELECT FROM sites WHERE region = $1 AND (tenant = $3 OR site_id = ANY($4::text[]))))
"""
_REGIONS = """
SELECT region, max(ts) AS latest FROM grid_intensity
 WHERE superseded_at IS NULL AND kind = 'actual'
   AND ($1 OR region IN (SELECT region FROM sites WHERE tenant = $2 OR site_id = ANY($3::text[])))
 GROUP BY region ORDER BY region
"""
_DEFAULT_SET = """
SELECT factor_set FROM grid_intensity
 WHERE region = $1 AND scope = $2 AND factor_set <> 'publisher' AND superseded_at IS NULL
 ORDER BY ts DESC LIMIT 1
"""
_COLUMNS = """
region, ts, interval_s, factor_set, scope, basis, kind, intensity_g_per_kwh, generation_mw, fossil_share,
renewable_share, nonfossil_share, flags, mix_revision, recorded_at,
EXISTS (SELECT FROM grid_intensity p WHERE p.region = g.region AND p.factor_set = g.factor_set
          AND p.basis = g.basis AND p.kind = g.kind AND p.ts = g.ts AND p.superseded_at = g.recorded_at)
    AS restated
"""
_LATEST = f"""
SELECT DISTINCT ON (factor_set, basis) {_COLUMNS}
  FROM grid_intensity g
 WHERE region = $1 AND kind = 'actual' AND superseded_at IS NULL
   AND ts >= (SELECT max(ts) FROM grid_intensity
               WHERE region = $1 AND kind = 'actual' AND superseded_at IS NULL) - interval '1 day'
 ORDER BY factor_set, basis, ts DESC
"""  # noqa: S608 - a constant column list, no input
_AS_OF = (
    "(($7::timestamptz IS NULL AND superseded_at IS NULL) OR "
    "(recorded_at <= $7 AND (superseded_at IS NULL OR superseded_at > $7)))"
)
_HISTORY = f"""
SELECT {_COLUMNS} FROM grid_intensity g
 WHERE region = $1 AND factor_set = $2 AND basis = $3 AND kind = $4 AND ts >= $5 AND ts < $6 AND {_AS_OF}
 ORDER BY ts
 LIMIT $8
"""  # noqa: S608 - constant fragments, every value bound
_ROLLED = f"""
SELECT time_bucket($8::text::interval, ts) AS start,
       sum(intensity_g_per_kwh * coalesce(generation_mw, 1) * interval_s)
           / nullif(sum(coalesce(generation_mw, 1) * interval_s)
                    FILTER (WHERE intensity_g_per_kwh IS NOT NULL), 0)
           AS intensity,
       sum(generation_mw * interval_s) / 3600 AS mwh,
       sum(fossil_share * generation_mw * interval_s)
           / nullif(sum(generation_mw * interval_s), 0) AS fossil,
       sum(renewable_share * generation_mw * interval_s)
           / nullif(sum(generation_mw * interval_s), 0) AS renewable,
       sum(nonfossil_share * generation_mw * interval_s)
           / nullif(sum(generation_mw * interval_s), 0) AS nonfossil,
       array_agg(DISTINCT f) FILTER (WHERE f IS NOT NULL) AS flags,
       max(mix_revision) AS mix_revision, max(recorded_at) AS recorded_at,
       bool_or(EXISTS (SELECT FROM grid_intensity p WHERE p.region = g.region AND p.factor_set = g.factor_set
                        AND p.basis = g.basis AND p.kind = g.kind AND p.ts = g.ts
                        AND p.superseded_at = g.recorded_at)) AS restated
  FROM grid_intensity g LEFT JOIN LATERAL unnest(g.flags) AS f ON true
 WHERE region = $1 AND factor_set = $2 AND basis = $3 AND kind = $4 AND ts >= $5 AND ts < $6 AND {_AS_OF}
 GROUP BY 1 ORDER BY 1
"""  # noqa: S608 - constant fragments, every value bound
_MIX_LATEST = """
SELECT DISTINCT ON (ts) region, ts, interval_s, revision, generation_mw, imports_mw, exports_mw,
       emissions_t_per_h
  FROM grid_mix WHERE region = $1 AND ts = (SELECT max(ts) FROM grid_mix WHERE region = $1)
 ORDER BY ts, revision DESC
"""
_MIXES = """
SELECT DISTINCT ON (ts) region, ts, interval_s, revision, generation_mw, imports_mw, exports_mw,
       emissions_t_per_h
  FROM grid_mix WHERE region = $1 AND ts >= $2 AND ts < $3
 ORDER BY ts, revision DESC
 LIMIT $4
"""
_SHARES = """
SELECT time_bucket($4::text::interval, ts, $5::text) AS start,
       sum(generation_mw * interval_s) / 3600 AS mwh,
       sum(fossil_share * generation_mw * interval_s)
           / nullif(sum(generation_mw * interval_s), 0) AS fossil,
       sum(renewable_share * generation_mw * interval_s)
           / nullif(sum(generation_mw * interval_s), 0) AS renewable,
       sum(nonfossil_share * generation_mw * interval_s)
           / nullif(sum(generation_mw * interval_s), 0) AS nonfossil
  FROM grid_intensity
 WHERE region = $1 AND factor_set = $6 AND basis = 'production' AND kind = 'actual' AND superseded_at IS NULL
   AND ts >= $2 AND ts < $3 AND generation_mw > 0
 GROUP BY 1 ORDER BY 1
"""
_WINDOW_DATA = """
SELECT (extract(epoch FROM ts) * 1000000)::bigint AS s, interval_s, intensity_g_per_kwh AS v
  FROM grid_intensity
 WHERE region = $1 AND factor_set = $2 AND basis = $3 AND kind = $4 AND superseded_at IS NULL
   AND intensity_g_per_kwh IS NOT NULL AND ts >= $5 AND ts < $6
 ORDER BY ts
"""
_FORECAST_SETS = """
SELECT factor_set, basis FROM grid_intensity
 WHERE region = $1 AND kind = 'forecast' AND superseded_at IS NULL AND ts >= $2 AND ts < $3
 GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1
"""
_ROLLUP = {"hour": "1 hour", "day": "1 day", "month": "1 month"}
MAX_POINTS = 10_000


async def region_or_404(conn: Scoped, region: str, who: Principal) -> None:
    if not await conn.fetchval(_EXISTS, region, who.all_sites, who.tenant, sorted(who.sites)):
        raise NotFound(f"region {region!r} not found")


async def _factor_set(conn: Scoped, region: str, basis: Basis, scope: str, factor_set: str | None) -> str:
    if basis == "published":
        return "published"
    if factor_set is not None:
        return factor_set
    name = await conn.fetchval(_DEFAULT_SET, region, scope)
    return str(name) if name is not None else f"none-for-{scope}"


def _point(r: asyncpg.Record) -> IntensityPoint:
    return IntensityPoint(
        start=r["ts"],
        end=r["ts"] + timedelta(seconds=r["interval_s"]),
        intensity_g_per_kwh=r["intensity_g_per_kwh"],
        factor_set=r["factor_set"],
        scope=r["scope"],
        basis=r["basis"],
        kind=r["kind"],
        generation_mw=r["generation_mw"],
        fossil_share=r["fossil_share"],
        renewable_share=r["renewable_share"],
        nonfossil_share=r["nonfossil_share"],
        flags=list(r["flags"]),
        mix_revision=r["mix_revision"],
        recorded_at=r["recorded_at"],
        restated=r["restated"],
    )


def _mix(r: asyncpg.Record) -> GridMixPublic:
    generation = {k: float(v) for k, v in json.loads(r["generation_mw"]).items()}
    by_fuel: dict[str, float] = {}
    for k, v in generation.items():
        fuel = fuel_of(k) or "unknown"
        by_fuel[fuel] = by_fuel.get(fuel, 0.0) + v
    return GridMixPublic(
        region=r["region"],
        start=r["ts"],
        end=r["ts"] + timedelta(seconds=r["interval_s"]),
        revision=r["revision"],
        generation_mw=generation,
        by_fuel_mw=by_fuel,
        imports_mw=json.loads(r["imports_mw"]),
        exports_mw=json.loads(r["exports_mw"]),
        emissions_t_per_h=r["emissions_t_per_h"],
    )


def _targets(targets: dict[int, float], share: float | None) -> list[TargetGap]:
    return [
        TargetGap(
            year=year,
            target_share=target,
            nonfossil_share=share,
            gap=None if share is None else target - share,
            met=None if share is None else share >= target,
        )
        for year, target in sorted(targets.items())
    ]


@router.get(
    "/regions",
    response_model=list[GridRegion],
    summary="Regions with intensity, and their latest interval",
)
async def regions(conn: Scoped, who: GridRead) -> list[dict[str, Any]]:
    rows = await conn.fetch(_REGIONS, who.all_sites, who.tenant, sorted(who.sites))
    return [{"region": r["region"], "latest": r["latest"]} for r in rows]


@router.get(
    "/{region}/intensity/now",
    response_model=IntensityNow,
    summary="The latest intensity of every factor set and basis, the mix, and the non-fossil targets",
    responses=error_responses(404, 422),
)
async def intensity_now(conn: Scoped, who: GridRead, settings: SettingsDep, region: Region) -> IntensityNow:
    await region_or_404(conn, region, who)
    rows = await conn.fetch(_LATEST, region)
    mix = await conn.fetchrow(_MIX_LATEST, region)
    points = [_point(r) for r in rows]
    production = [p for p in points if p.basis == "production" and p.nonfossil_share is not None]
    share = max(production, key=lambda p: p.start).nonfossil_share if production else None
    return IntensityNow(
        region=region,
        as_of=max((p.start for p in points), default=None),
        intensities=points,
        mix=_mix(mix) if mix is not None else None,
        targets=_targets(settings.nonfossil_targets, share),
    )


@router.get(
    "/{region}/intensity",
    response_model=IntensitySeries,
    summary="Intensity history, as stored or rolled up (generation-weighted), as known at any time",
    responses=error_responses(404, 422),
)
async def intensity_history(
    conn: Scoped,
    who: GridRead,
    settings: SettingsDep,
    region: Region,
    start: Start,
    end: End,
    as_of: AsOf = None,
    basis: BasisQ = "consumption",
    scope: ScopeQ = None,
    factor_set: FactorSetQ = None,
    kind: Annotated[Literal["actual", "forecast"], Query()] = "actual",
    resolution: Annotated[Literal["raw", "hour", "day"], Query(description="raw: as stored")] = "raw",
) -> IntensitySeries:
    check_range(start, end, resolution, 300 if resolution == "raw" else None)
    await region_or_404(conn, region, who)
    fset = await _factor_set(conn, region, basis, scope or settings.emissions_scope, factor_set)
    if resolution == "raw":
        rows = await conn.fetch(_HISTORY, region, fset, basis, kind, start, end, as_of, MAX_POINTS)
        points = [_point(r) for r in rows]
    else:
        rows = await conn.fetch(_ROLLED, region, fset, basis, kind, start, end, as_of, _ROLLUP[resolution])
        step = timedelta(hours=1) if resolution == "hour" else timedelta(days=1)
        points = [
            IntensityPoint(
                start=r["start"],
                end=r["start"] + step,
                intensity_g_per_kwh=r["intensity"],
                factor_set=fset,
                scope="published" if basis == "published" else (scope or settings.emissions_scope),
                basis=basis,
                kind=kind,
                generation_mw=None if r["mwh"] is None else r["mwh"] / (step.total_seconds() / 3600),
                fossil_share=r["fossil"],
                renewable_share=r["renewable"],
                nonfossil_share=r["nonfossil"],
                flags=sorted(r["flags"] or []),
                mix_revision=r["mix_revision"],
                recorded_at=r["recorded_at"],
                restated=r["restated"],
            )
            for r in rows
        ]
    return IntensitySeries(
        region=region,
        factor_set=fset,
        basis=basis,
        kind=kind,
        resolution=resolution,
        as_of=as_of,
        points=points,
    )


@router.get(
    "/{region}/mix",
    response_model=list[GridMixPublic],
    summary="Generation mixes (the current revision of each interval)",
    responses=error_responses(404, 422),
)
async def mix_history(
    conn: Scoped, who: GridRead, region: Region, start: Start, end: End
) -> list[GridMixPublic]:
    check_range(start, end, "raw", 300)
    await region_or_404(conn, region, who)
    return [_mix(r) for r in await conn.fetch(_MIXES, region, start, end, MAX_POINTS)]


@router.get(
    "/{region}/shares",
    response_model=SharesSeries,
    summary="Fossil, renewable and non-fossil shares of generation, against the non-fossil targets",
    responses=error_responses(404, 422),
)
async def shares(
    conn: Scoped,
    who: GridRead,
    settings: SettingsDep,
    region: Region,
    start: Start,
    end: End,
    resolution: Annotated[Literal["hour", "day", "month"], Query()] = "day",
    timezone: Annotated[
        str, Query(max_length=64, pattern=PRINTABLE, description="IANA zone for days and months")
    ] = "UTC",
) -> SharesSeries:
    check_range(start, end, resolution)
    await region_or_404(conn, region, who)
    fset = await _factor_set(conn, region, "production", settings.emissions_scope, None)
    try:
        async with conn.transaction():  # a savepoint: a bad zone must not abort the request's transaction
            rows = await conn.fetch(_SHARES, region, start, end, _ROLLUP[resolution], timezone, fset)
    except asyncpg.InvalidParameterValueError as exc:
        raise ApiError(f"unknown time zone {timezone!r}", field="timezone") from exc
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "month": timedelta(days=31)}[resolution]
    buckets = [
        ShareBucket(
            start=r["start"],
            end=min(r["start"] + step, end) if resolution != "month" else r["start"] + step,
            generation_mwh=r["mwh"] or 0.0,
            fossil_share=r["fossil"],
            renewable_share=r["renewable"],
            nonfossil_share=r["nonfossil"],
        )
        for r in rows
    ]
    total = sum(b.generation_mwh for b in buckets)

    def weighted(attr: str) -> float | None:
        parts = [(getattr(b, attr), b.generation_mwh) for b in buckets if getattr(b, attr) is not None]
        weight = sum(w for _, w in parts)
        return sum(v * w for v, w in parts) / weight if weight else None

    overall = ShareBucket(
        start=start,
        end=end,
        generation_mwh=total,
        fossil_share=weighted("fossil_share"),
        renewable_share=weighted("renewable_share"),
        nonfossil_share=weighted("nonfossil_share"),
    )
    return SharesSeries(
        region=region,
        resolution=resolution,
        overall=overall,
        buckets=buckets,
        targets=_targets(settings.nonfossil_targets, overall.nonfossil_share),
    )


@router.get(
    "/{region}/lowest-carbon-window",
    response_model=CarbonWindow,
    summary="When to run a flexible load: the lowest-carbon window of a given length within a horizon",
    responses=error_responses(404, 422),
)
async def lowest_carbon_window(
    conn: Scoped,
    who: GridRead,
    settings: SettingsDep,
    region: Region,
    duration_minutes: Annotated[int, Query(ge=5, le=1440, description="how long the load runs")] = 60,
    horizon_hours: Annotated[int, Query(ge=1, le=72, description="how far ahead it may start and end")] = 24,
    start: StartOrNow = None,
    scope: ScopeQ = None,
) -> CarbonWindow:
    if duration_minutes > horizon_hours * 60:
        raise ApiError("the window must fit in the horizon", field="duration_minutes")
    await region_or_404(conn, region, who)
    # start is within schemas.bounds' range, whose margins hold the horizon and the days shifted
    # back: t0, t1 and the persistence window stay datetimes and timestamptz values
    t0 = (start or datetime.now(UTC)).astimezone(UTC)
    t1 = t0 + timedelta(hours=horizon_hours)
    forecast = await conn.fetchrow(_FORECAST_SETS, region, t0, t1)
    shifted = 0
    basis: Basis
    if forecast is not None:
        fset, basis, kind, lo, hi = forecast["factor_set"], forecast["basis"], "forecast", t0, t1
    else:  # persistence: the same hours, whole days back, shifted forward
        shifted = -(-horizon_hours // 24)
        basis = "consumption"
        fset = await _factor_set(conn, region, basis, scope or settings.emissions_scope, None)
        kind, lo, hi = "actual", t0 - timedelta(days=shifted), t1 - timedelta(days=shifted)
    rows = await conn.fetch(_WINDOW_DATA, region, fset, basis, kind, lo, hi)
    if not rows and kind == "actual":  # a region whose operator publishes intensity only
        basis, fset = "published", "published"
        rows = await conn.fetch(_WINDOW_DATA, region, fset, basis, kind, lo, hi)
    if not rows:
        raise NotFound(f"no intensity for {region!r} in the horizon or the same hours before it")
    starts = [r["s"] for r in rows]
    step = math.gcd(duration_minutes * 60, *(r["interval_s"] for r in rows))  # a grid fitting both
    lo_us, hi_us = to_epoch_us(lo), to_epoch_us(hi)
    ends = [s + r["interval_s"] * 1_000_000 for s, r in zip(starts, rows, strict=True)]
    clipped = [(max(s, lo_us), min(e, hi_us), r["v"]) for s, e, r in zip(starts, ends, rows, strict=True)]
    window = lowest_window(
        [c[0] for c in clipped], [c[1] for c in clipped], [c[2] for c in clipped], duration_minutes * 60, step
    )
    if window is None:
        raise NotFound(
            f"no gap-free {duration_minutes}-minute stretch of intensity for {region!r} in the horizon"
        )
    shift = timedelta(days=shifted)
    return CarbonWindow(
        region=region,
        start=from_epoch_us(window.start_us) + shift,
        end=from_epoch_us(window.end_us) + shift,
        duration_minutes=duration_minutes,
        mean_intensity_g_per_kwh=window.mean,
        horizon_mean_g_per_kwh=window.horizon_mean,
        saving_share=1 - window.mean / window.horizon_mean if window.horizon_mean else 0.0,
        source="forecast" if kind == "forecast" else "history",
        shifted_days=shifted,
        factor_set=fset,
        basis=basis,
    )
