"""Interval energy of a meter or a site, at 15 min / hour / day / month in the site's time zone.

Every bucket carries its coverage (the share of its time measured) and a quality, so a user can
tell a measured number from an estimate. Local days and months follow the site's time zone and
its DST rules: a local day can be 23, 24 or 25 hours long.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import StringConstraints

from api.auth import Principal, Scoped, SitesRead, scoped_connection
from api.deps import SettingsDep
from api.errors import NotFound, error_responses
from api.export import CSV_RESPONSE, energy_csv, wants_csv
from api.hotpath import latest_body
from api.params import INTERVAL, End, Res, Start, check_series, site_or_404, visible_or_404
from api.seriescache import Generation
from core.jsontext import bucket_array_json
from schemas.api import BalanceBucket, EnergySeries, SiteBalance, SiteLatest, SiteNow
from schemas.events import SiteLatestBody, encode_latest
from schemas.messages import IDENTIFIER
from schemas.timeutil import utc_text
from schemas.vocabulary import BUCKET_QUALITIES, RESOLUTION_S, Resolution, SubItem

__all__ = ["router"]

router = APIRouter(prefix="/v1/sites", tags=["energy"])
sites_router = APIRouter()  # routes over several sites


# A series comes back as one row of arrays in PostgreSQL's binary array form (`array_send`),
# which the driver hands over as bytes and numpy reads in place (`_array`): a month of quarter
# hours is 2,880 buckets, and decoding them as rows, or as arrays the driver turns into lists of
# datetimes and floats, cost more than the query. energy_interval buckets divide an hour, so any
# local hour, day or month is an exact union of them, and their bounds are whole seconds.
#
# Each series shape is written once, with placeholders for where its meters, window, step and
# time zone come from, and joined below to the site's row (`_ONE_METER`, `_SITE_TOTAL`): the
# meters and zone from the rows, the window and step from $3, $4 and $5.
#
# A bucket's quality travels in its coverage's sign: the only quality the database decides is
# "estimated" (a reading in it was; measured or partial follow from the coverage), and coverage
# seconds are never negative (a CHECK), so an estimated bucket's seconds come negated. `abs`
# first clears the sign bit of anything else (-0.0, a NaN), so it says "estimated" and nothing
# else. Each array of a month costs the database about 0.2 ms: this saves one of four.
_ARRAYS = """
SELECT array_send(array_agg(start ORDER BY start)) AS starts, {ends} AS ends,
       array_send(array_agg(kwh ORDER BY start)) AS kwh,
       array_send(array_agg(CASE WHEN worst = 2 THEN -abs(coverage_s) ELSE abs(coverage_s) END
                            ORDER BY start)) AS signed_coverage_s
  FROM ({buckets}) b
"""
# 15-minute buckets need no time zone arithmetic: every zone's UTC offset is a whole number of
# quarter hours (+05:45 and +12:45 included), so UTC quarters are local quarters; they end 900 s
# after they start. Stored buckets longer than a quarter hour never get here (`check_series`).
_QUARTERS = _ARRAYS.format(
    ends="NULL::bytea",
    buckets="""
        SELECT time_bucket('15 minutes', e.bucket_start) AS start,
               sum(e.kwh) AS kwh, sum(e.coverage_s) AS coverage_s, max(e.quality) AS worst
          FROM energy_interval e
         WHERE e.meter_id = ANY({meters}) AND e.bucket_start >= {start} AND e.bucket_start < {end}
         GROUP BY 1""",
)
# one meter whose stored buckets are quarter hours (WATTSTREAM_ENERGY_BUCKET_S = 900, the
# default): its rows are the series, read in order from the index alone (migration 007)
_QUARTER_ROWS = _ARRAYS.format(
    ends="NULL::bytea",
    buckets="""
        SELECT bucket_start AS start, kwh, coverage_s, quality AS worst
          FROM energy_interval
         WHERE meter_id = {meter} AND bucket_start >= {start} AND bucket_start < {end}""",
)
_SERIES = _ARRAYS.format(
    ends="array_send(array_agg(((start AT TIME ZONE {zone}) + {step}) AT TIME ZONE {zone} ORDER BY start))",
    buckets="""
        SELECT time_bucket({step}, e.bucket_start, {zone}) AS start,
               sum(e.kwh) AS kwh, sum(e.coverage_s) AS coverage_s, max(e.quality) AS worst
          FROM energy_interval e
         WHERE e.meter_id = ANY({meters}) AND e.bucket_start >= {start} AND e.bucket_start < {end}
         GROUP BY 1""",
)
_PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z: PostgreSQL's binary timestamps count µs from it


def _array(data: bytes | None, item: str) -> npt.NDArray[Any]:
    """A one-dimensional array without NULLs in PostgreSQL's binary form, as numpy (big-endian):
    a 12-byte header (dimensions, flags, element type), 8 bytes for the dimension, then each
    element as its 4-byte length and its bytes."""
    if data is None or len(data) <= 12:  # no rows, or an empty array (no dimension)
        return np.empty(0, dtype=item)
    elements = np.frombuffer(data, dtype=[("size", ">i4"), ("value", item)], offset=20)
    if (elements["size"] < 0).any():
        raise ValueError("a series array holds NULL")
    return elements["value"]


def _epoch_seconds(data: bytes | None) -> npt.NDArray[np.int64]:
    return _array(data, ">i8").astype(np.int64) // 1_000_000 + _PG_EPOCH_S


# The series is read in the same round trip as the site and its meters, under row-level
# security: a key that may not see the site gets no row, so nothing is computed for it. Joined
# this way, the statement's meters and zone come from the rows, not from parameters, and the
# plan PostgreSQL keeps for it is the one it would choose each time (a nested loop into the
# index); a series over a parameter array of meter ids took 8 to 13 ms with a kept plan.
_ONE_METER = """
SELECT s.site_id, s.tenant, s.timezone, m.meter_id, 1 AS meters,
       q.starts, q.ends, q.kwh, q.signed_coverage_s
  FROM sites s
  LEFT JOIN meters m ON m.site_id = s.site_id AND m.meter = $2
  LEFT JOIN LATERAL ({series}) q ON true
 WHERE s.site_id = $1
"""
# a site's total (its main meters, or its facility meters: `wattstream_total_role`), or one
# sub-item's meters
_SITE_TOTAL = """
SELECT s.site_id, s.tenant, s.timezone, cardinality(m.ids) AS meters,
       q.starts, q.ends, q.kwh, q.signed_coverage_s
  FROM sites s
  CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(meter_id), '{{}}') AS ids FROM meters
         WHERE site_id = s.site_id
           AND (($2::text IS NULL AND role = wattstream_total_role(s.site_id))
                OR ($2::text IS NOT NULL AND role = 'sub_item' AND sub_item = $2))) m
  LEFT JOIN LATERAL ({series}) q ON true
 WHERE s.site_id = $1
"""
_FROM_ROWS = {"start": "$3", "end": "$4", "step": "$5::text::interval", "zone": "s.timezone"}
_SHAPES = {"quarter_rows": _QUARTER_ROWS, "quarters": _QUARTERS, "series": _SERIES}
_OF_ONE_METER = {
    k: _ONE_METER.format(series=q.format(meters="ARRAY[m.meter_id]", meter="m.meter_id", **_FROM_ROWS))
    for k, q in _SHAPES.items()
}
_OF_SITE = {
    k: _SITE_TOTAL.format(series=q.format(meters="m.ids", **_FROM_ROWS))
    for k, q in _SHAPES.items()
    if k != "quarter_rows"
}


def _shape_of(resolution: Resolution, bucket_s: int | None = None) -> str:
    """Quarter hours of one meter stored as quarter hours are its rows; other quarter hours are
    grouped; hours, days and months are local time buckets."""
    if resolution != "15min":
        return "series"
    return "quarter_rows" if bucket_s == RESOLUTION_S["15min"] else "quarters"


class _Buckets:
    """A series' buckets as columns: bounds in epoch seconds, energy, coverage, quality code.
    The answer's encoder writes them as the JSON array of `EnergyBucket` objects through
    `core.jsontext` (byte for byte msgspec's text of those objects, without an object per
    bucket); `rows()` gives them for CSV."""

    __slots__ = ("coverage", "ends", "kwh", "quality", "starts")

    def __init__(
        self,
        starts: npt.NDArray[np.int64],
        ends: npt.NDArray[np.int64],
        kwh: npt.NDArray[np.float64],
        coverage: npt.NDArray[np.float64],
        quality: npt.NDArray[np.int64],
    ) -> None:
        self.starts, self.ends, self.kwh, self.coverage, self.quality = starts, ends, kwh, coverage, quality

    def __len__(self) -> int:
        return len(self.starts)

    def json(self) -> msgspec.Raw:
        return msgspec.Raw(bucket_array_json(self.starts, self.ends, self.kwh, self.coverage, self.quality))

    def rows(self) -> Iterator[tuple[str, str, float, float, str]]:
        """(start, end, kWh, coverage, quality) per bucket, the bounds as the JSON writes them."""
        return zip(
            utc_text(self.starts.tolist()),
            utc_text(self.ends.tolist()),
            self.kwh.tolist(),
            self.coverage.tolist(),
            [BUCKET_QUALITIES[q] for q in self.quality.tolist()],
            strict=True,
        )


def _encode_more(obj: Any) -> Any:
    if isinstance(obj, _Buckets):
        return obj.json()
    raise TypeError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_encode_more)

OneSubItem = Annotated[
    SubItem | None,
    Query(description="only this sub-item's meters; default: the site total (no double counting)"),
]


def _shaped(
    row: asyncpg.Record,
    resolution: Resolution,
    *,
    meter: str | None = None,
    sub_item: SubItem | None = None,
) -> dict[str, Any]:
    """A series row as an `EnergySeries` in plain data. A bucket's coverage is its measured
    seconds over its length times the meters; its quality is "estimated" if any reading in it
    was, else "measured" when fully covered, else "partial"."""
    starts = _epoch_seconds(row["starts"])
    # quarter hours come without their ends (`_QUARTERS`), and so does a series without buckets
    ends = starts + RESOLUTION_S["15min"] if row["ends"] is None else _epoch_seconds(row["ends"])
    lengths = (ends - starts).astype(np.float64) * max(row["meters"], 1)
    signed = _array(row["signed_coverage_s"], ">f8").astype(np.float64)  # negative: estimated
    seconds = np.abs(signed)
    coverage = np.minimum(np.divide(seconds, lengths, out=np.zeros_like(seconds), where=lengths > 0), 1.0)
    quality = np.where(np.signbit(signed), 2, np.where(coverage >= 1.0 - 1e-9, 0, 1))
    kwh = _array(row["kwh"], ">f8").astype(np.float64)
    span = float(lengths.sum())
    return {
        "site": row["site_id"],
        "meter": meter,
        "sub_item": sub_item,
        "resolution": resolution,
        "timezone": row["timezone"],
        "total_kwh": float(kwh.sum()),
        "coverage": float(seconds.sum()) / span if span else 0.0,
        "buckets": _Buckets(starts, ends, kwh, coverage, quality),
    }


def _answer(request: Request, series: list[dict[str, Any]], one: bool) -> Response:
    if wants_csv(request):
        return energy_csv(series)
    return Response(_encoder.encode(series[0] if one else series), media_type="application/json")


def _kept(request: Request, who: Principal, site: str, key: Hashable) -> Response | None:
    """The series answer kept for `key` (`api.seriescache`), if the key may see the site by the
    site directory, the client did not ask past the cache, and it is still current."""
    if (
        wants_csv(request)
        or "no-cache" in request.headers.get("cache-control", "")
        or request.app.state.sites.cached_visible(site, who) is None
    ):
        return None
    body = request.app.state.series_cache.get(site, key)
    return None if body is None else Response(body, media_type="application/json", headers={"X-Cache": "hit"})


def _answer_and_keep(
    request: Request, series: dict[str, Any], site: str, key: Hashable, generation: Generation
) -> Response:
    if wants_csv(request):
        return energy_csv([series])
    body = _encoder.encode(series)
    request.app.state.series_cache.put(site, key, generation, body)
    return Response(body, media_type="application/json", headers={"X-Cache": "miss"})


_KEPT_NOTE = (
    "JSON answers are kept until the site's next live event (`X-Cache: hit`); send "
    "`Cache-Control: no-cache` to have the database asked."
)


@router.get(
    "/{site}/meters/{meter}/energy",
    response_model=EnergySeries,
    summary="A meter's interval energy (JSON, or CSV with Accept: text/csv)",
    description=_KEPT_NOTE,
    responses={**error_responses(404, 422), **CSV_RESPONSE},
)
async def meter_energy(
    request: Request,
    who: SitesRead,
    site: Annotated[str, Path(pattern=IDENTIFIER)],
    meter: Annotated[str, Path(pattern=IDENTIFIER)],
    start: Start,
    end: End,
    resolution: Res = "hour",
) -> Response:
    bucket_s = request.app.state.settings.energy_bucket_s
    check_series(start, end, resolution, bucket_s)
    key = ("meter", site, meter, start, end, resolution)
    if (kept := _kept(request, who, site, key)) is not None:
        return kept
    generation = request.app.state.series_cache.generation(site)
    shape = _shape_of(resolution, bucket_s)
    args = (site, meter, start, end) if shape != "series" else (site, meter, start, end, INTERVAL[resolution])
    async with scoped_connection(request.app.state.pool, who) as conn:
        row = visible_or_404(await conn.fetchrow(_OF_ONE_METER[shape], *args), who, site)
    if row["meter_id"] is None:
        raise NotFound(f"meter {meter!r} not found at site {site!r}")
    series = _shaped(row, resolution, meter=meter)
    return _answer_and_keep(request, series, site, key, generation)


@router.get(
    "/{site}/energy",
    response_model=EnergySeries,
    summary="A site's interval energy: its main meters (or facility meters), or one sub-item "
    "(JSON, or CSV with Accept: text/csv)",
    description=_KEPT_NOTE,
    responses={**error_responses(404, 422), **CSV_RESPONSE},
)
async def site_energy(
    request: Request,
    who: SitesRead,
    site: Annotated[str, Path(pattern=IDENTIFIER)],
    start: Start,
    end: End,
    resolution: Res = "hour",
    sub_item: OneSubItem = None,
) -> Response:
    check_series(start, end, resolution, request.app.state.settings.energy_bucket_s)
    key = ("site", site, sub_item, start, end, resolution)
    if (kept := _kept(request, who, site, key)) is not None:
        return kept
    generation = request.app.state.series_cache.generation(site)
    async with scoped_connection(request.app.state.pool, who) as conn:
        series = await _site_series(conn, who, site, start, end, resolution, sub_item)
    return _answer_and_keep(request, series, site, key, generation)


async def _site_series(
    conn: Scoped,
    who: Principal,
    site: str,
    start: datetime,
    end: datetime,
    resolution: Resolution,
    sub_item: SubItem | None,
) -> dict[str, Any]:
    shape = _shape_of(resolution)
    args = (
        (site, sub_item, start, end)
        if shape != "series"
        else (site, sub_item, start, end, INTERVAL[resolution])
    )
    row = visible_or_404(await conn.fetchrow(_OF_SITE[shape], *args), who, site)
    return _shaped(row, resolution, sub_item=sub_item)


MAX_SITES = 100


@sites_router.get(
    "/v1/energy",
    response_model=list[EnergySeries],
    summary="Interval energy of several sites, each in its own time zone (JSON, or CSV)",
    responses={**error_responses(404, 422), **CSV_RESPONSE},
    tags=["energy"],
)
async def many_sites_energy(
    request: Request,
    conn: Scoped,
    who: SitesRead,
    site: Annotated[
        list[Annotated[str, StringConstraints(pattern=IDENTIFIER)]],
        Query(min_length=1, max_length=MAX_SITES, description=f"repeat for each site, at most {MAX_SITES}"),
    ],
    start: Start,
    end: End,
    resolution: Res = "hour",
    sub_item: OneSubItem = None,
) -> Response:
    check_series(start, end, resolution, request.app.state.settings.energy_bucket_s)
    out = [await _site_series(conn, who, s, start, end, resolution, sub_item) for s in dict.fromkeys(site)]
    return _answer(request, out, one=False)


_NOW = """
SELECT sum(st.last_power_kw) AS power_kw,
       min(st.last_ts) FILTER (WHERE st.last_power_kw IS NOT NULL) AS as_of,
       count(st.last_power_kw) AS reporting
  FROM meters m JOIN meter_state st USING (meter_id)
 WHERE m.site_id = $1 AND m.role = wattstream_total_role($1)
"""
# A site's event as ingest would publish it now (ingest/site_events.py): its total meters' power
# and newest reading, its latest bucket's energy and current emissions; every lookup by index.
_LATEST = """
WITH t AS (
    SELECT meter_id FROM meters WHERE site_id = $1 AND role = wattstream_total_role($1)
), b AS (
    SELECT max(last.bucket_start) AS bucket_start
      FROM t, LATERAL (SELECT e.bucket_start FROM energy_interval e WHERE e.meter_id = t.meter_id
                        ORDER BY e.bucket_start DESC LIMIT 1) last
)
SELECT (SELECT sum(st.last_power_kw) FROM meter_state st JOIN t USING (meter_id)) AS power_kw,
       (SELECT max(st.last_ts) FROM meter_state st JOIN t USING (meter_id)) AS as_of,
       b.bucket_start,
       (SELECT sum(e.kwh) FROM energy_interval e JOIN t USING (meter_id)
         WHERE e.bucket_start = b.bucket_start) AS kwh,
       se.co2e_kg, se.intensity_g_per_kwh, se.factor_set, se.quality AS emissions_quality
  FROM b
  LEFT JOIN site_emissions se
    ON se.site_id = $1 AND se.bucket_start = b.bucket_start AND se.superseded_at IS NULL
"""
_LOCAL_MIDNIGHT = "SELECT date_trunc('day', now(), $1::text) AS midnight, now() AS now"
_BALANCE = """
SELECT time_bucket($4::text::interval, e.bucket_start, $5::text) AS start,
       m.role, m.sub_item, sum(e.kwh) AS kwh
  FROM energy_interval e JOIN meters m USING (meter_id)
 WHERE m.site_id = $1 AND m.role IN ('main', 'sub_item') AND e.bucket_start >= $2 AND e.bucket_start < $3
 GROUP BY 1, 2, 3
 ORDER BY 1
"""
_BUCKET_END = (
    "SELECT ((s AT TIME ZONE $2) + $3::text::interval) AT TIME ZONE $2 FROM unnest($1::timestamptz[]) AS s"
)


@router.get(
    "/{site}/now",
    response_model=SiteNow,
    summary="Site power now and energy today",
    responses=error_responses(404, 422),
)
async def site_now(conn: Scoped, who: SitesRead, site: Annotated[str, Path(pattern=IDENTIFIER)]) -> SiteNow:
    site_row = await site_or_404(conn, site, who)
    tz = site_row["timezone"]
    now_row = await conn.fetchrow(_NOW, site)
    day = await conn.fetchrow(_LOCAL_MIDNIGHT, tz)
    today = await _site_series(conn, who, site, day["midnight"], day["now"], "day", None)
    return SiteNow(
        site=site,
        power_kw=now_row["power_kw"],
        as_of=now_row["as_of"],
        meters_reporting=now_row["reporting"],
        today_kwh=today["total_kwh"],
        today_start=day["midnight"],
        today_coverage=today["coverage"],
    )


@router.get(
    "/{site}/latest",
    response_model=SiteLatest,
    summary="The latest value of a site (power, last interval's energy and emissions), from memory",
    responses=error_responses(404, 422),
)
async def site_latest(
    request: Request, who: SitesRead, site: Annotated[str, Path(pattern=IDENTIFIER)]
) -> SiteLatest | Response:
    """Answered from memory: the scope check from the site directory, the value from the live
    site events this API process holds (the stream's latest-value cache). The database is asked
    only for a site the directory does not show to the key, or when no event has arrived yet.
    When all of it is in memory, `api.hotpath` answers before routing reaches here."""
    await request.app.state.sites.visible(site, who)
    body = latest_body(request.app.state.hub, site)
    if body is None:
        async with scoped_connection(request.app.state.pool, who) as conn:
            row = await conn.fetchrow(_LATEST, site)
        # what the site's event would say now: the same contract, encoded the same way
        body = encode_latest(SiteLatestBody(site=site, **dict(row), source="database"))
    return Response(body, media_type="application/json")


@router.get(
    "/{site}/balance",
    response_model=SiteBalance,
    summary="Sub-meter balance: main meters against the sum of sub-items, per interval",
    responses=error_responses(404, 422),
)
async def site_balance(
    conn: Scoped,
    who: SitesRead,
    settings: SettingsDep,
    site: Annotated[str, Path(pattern=IDENTIFIER)],
    start: Start,
    end: End,
    resolution: Res = "hour",
) -> SiteBalance:
    check_series(start, end, resolution, settings.energy_bucket_s)
    site_row = await site_or_404(conn, site, who)
    tz, tolerance = site_row["timezone"], site_row["balance_tolerance"]
    rows = await conn.fetch(_BALANCE, site, start, end, INTERVAL[resolution], tz)
    mains: dict[datetime, float] = {}
    sub_items: dict[datetime, dict[str, float]] = {}
    for r in rows:
        mains.setdefault(r["start"], 0.0)
        subs = sub_items.setdefault(r["start"], {})
        if r["role"] == "main":
            mains[r["start"]] += r["kwh"]
        else:
            name = r["sub_item"] or "unassigned"
            subs[name] = subs.get(name, 0.0) + r["kwh"]
    starts = list(mains)
    ends = [r[0] for r in await conn.fetch(_BUCKET_END, starts, tz, INTERVAL[resolution])] if starts else []
    buckets = []
    for s0, e0 in zip(starts, ends, strict=True):
        main, subs = mains[s0], sub_items[s0]
        unmetered = main - sum(subs.values())
        share = unmetered / main if main else None
        buckets.append(
            BalanceBucket(
                start=s0,
                end=e0,
                main_kwh=main,
                sub_items_kwh=subs,
                unmetered_kwh=unmetered,
                unmetered_share=share,
                flagged=share is not None and abs(share) > tolerance,
            )
        )
    return SiteBalance(site=site, resolution=resolution, timezone=tz, tolerance=tolerance, buckets=buckets)
