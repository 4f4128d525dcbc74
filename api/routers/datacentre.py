"""Data centre efficiency: PUE per bucket and over the range, graded by GB 40879-2021."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api.auth import Scoped, SitesRead
from api.deps import SettingsDep
from api.errors import error_responses
from api.params import INTERVAL, End, Res, Start, check_series, site_or_404
from schemas.api import PueBucket, PueSeries
from schemas.messages import IDENTIFIER
from schemas.standards import PUE_GRADES, PUE_STANDARD, pue_grade

__all__ = ["router"]

router = APIRouter(prefix="/v1/sites", tags=["energy"])

# total = the site's total meters (facility meters of a data centre metered at the facility level)
_PUE = """
SELECT time_bucket($4::text::interval, e.bucket_start, $5::text) AS start,
       sum(e.kwh) FILTER (WHERE m.role = wattstream_total_role($1)) AS total_kwh,
       sum(e.kwh) FILTER (WHERE m.role = 'it_load') AS it_kwh
  FROM energy_interval e JOIN meters m USING (meter_id)
 WHERE m.site_id = $1 AND e.bucket_start >= $2 AND e.bucket_start < $3
 GROUP BY 1
 ORDER BY 1
"""


def _ratio(total: Any, it: Any) -> float | None:
    return float(total) / float(it) if total is not None and it else None


@router.get(
    "/{site}/pue",
    response_model=PueSeries,
    summary="PUE (total energy ÷ IT energy) per bucket and over the range, with its GB 40879-2021 grade",
    responses=error_responses(404, 422),
)
async def pue(
    conn: Scoped,
    who: SitesRead,
    settings: SettingsDep,
    site: Annotated[str, Path(pattern=IDENTIFIER, examples=["hz-dc004"])],
    start: Start,
    end: End,
    resolution: Res = "hour",
) -> PueSeries:
    check_series(start, end, resolution, settings.energy_bucket_s)
    row = await site_or_404(conn, site, who)
    rows = await conn.fetch(_PUE, site, start, end, INTERVAL[resolution], row["timezone"])
    buckets = [
        PueBucket(
            start=r["start"],
            total_kwh=r["total_kwh"],
            it_kwh=r["it_kwh"],
            pue=_ratio(r["total_kwh"], r["it_kwh"]),
            grade=pue_grade(_ratio(r["total_kwh"], r["it_kwh"])),
        )
        for r in rows
    ]
    total = sum(b.total_kwh or 0.0 for b in buckets if b.it_kwh)
    it = sum(b.it_kwh or 0.0 for b in buckets if b.it_kwh)
    overall = _ratio(total, it)
    return PueSeries(
        site=site,
        resolution=resolution,
        pue=overall,
        grade=pue_grade(overall),
        standard=PUE_STANDARD,
        grade_limits={str(g): limit for g, limit in PUE_GRADES},
        buckets=buckets,
    )
