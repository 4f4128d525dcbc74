"""Sites, their meters, and a meter's raw readings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.auth import Scoped, SitesRead
from api.deps import SettingsDep
from api.errors import ApiError, NotFound, error_responses
from api.params import End, EpochCursor, PageLimit, Start, visible_or_404
from schemas.api import MeterPublic, Page, ReadingPublic, SitePublic
from schemas.messages import IDENTIFIER
from schemas.timeutil import from_epoch_us, to_epoch_us
from schemas.vocabulary import READING_QUALITIES

__all__ = ["router"]

router = APIRouter(prefix="/v1/sites", tags=["sites"])

_SITES = """
SELECT s.*, (SELECT count(*) FROM meters m WHERE m.site_id = s.site_id) AS meters
  FROM sites s
 WHERE ($1::text IS NULL OR s.site_id > $1)
   AND ($3 OR s.tenant = $4 OR s.site_id = ANY($5::text[]))
 ORDER BY s.site_id
 LIMIT $2
"""
_SITE = """
SELECT s.*, (SELECT count(*) FROM meters m WHERE m.site_id = s.site_id) AS meters
  FROM sites s WHERE s.site_id = $1
"""
_METERS = """
SELECT m.*, st.last_ts AS last_reading_at
  FROM meters m LEFT JOIN meter_state st USING (meter_id)
 WHERE m.site_id = $1
 ORDER BY m.meter
"""
_METER_ID = "SELECT meter_id FROM meters WHERE site_id = $1 AND meter = $2"
_READINGS = """
SELECT ts, energy_kwh, power_kw, quality
  FROM readings
 WHERE meter_id = $1 AND ts >= $2 AND ts < $3
 ORDER BY ts
 LIMIT $4
"""

SiteId = Annotated[str, Path(pattern=IDENTIFIER, examples=["hz-b001"])]
MeterName = Annotated[str, Path(pattern=IDENTIFIER, examples=["main"])]
_NOT_FOUND = error_responses(404, 422)


def _site(row: object) -> SitePublic:
    return SitePublic.model_validate(dict(row))  # type: ignore[call-overload]


@router.get("", response_model=Page[SitePublic], summary="List sites", responses=error_responses(422))
async def list_sites(
    conn: Scoped,
    who: SitesRead,
    settings: SettingsDep,
    limit: PageLimit = None,
    cursor: Annotated[
        str | None, Query(pattern=IDENTIFIER, description="next_cursor of the previous page")
    ] = None,
) -> Page[SitePublic]:
    size = _page_size(limit, settings.api_page_default, settings.api_page_max)
    rows = await conn.fetch(_SITES, cursor, size + 1, who.all_sites, who.tenant, sorted(who.sites))
    items = [_site(r) for r in rows[:size]]
    return Page[SitePublic](items=items, next_cursor=items[-1].site_id if len(rows) > size else None)


@router.get("/{site}", response_model=SitePublic, summary="One site", responses=_NOT_FOUND)
async def get_site(conn: Scoped, who: SitesRead, site: SiteId) -> SitePublic:
    return _site(visible_or_404(await conn.fetchrow(_SITE, site), who, site))


@router.get(
    "/{site}/meters", response_model=list[MeterPublic], summary="A site's meters", responses=_NOT_FOUND
)
async def list_meters(conn: Scoped, who: SitesRead, site: SiteId) -> list[MeterPublic]:
    visible_or_404(await conn.fetchrow(_SITE, site), who, site)
    rows = await conn.fetch(_METERS, site)
    return [MeterPublic.model_validate(dict(r)) for r in rows]


@router.get(
    "/{site}/meters/{meter}/readings",
    response_model=Page[ReadingPublic],
    summary="A meter's raw readings in [start, end), oldest first",
    responses=_NOT_FOUND,
)
async def list_readings(
    conn: Scoped,
    who: SitesRead,
    settings: SettingsDep,
    site: SiteId,
    meter: MeterName,
    start: Start,
    end: End,
    limit: PageLimit = None,
    cursor: EpochCursor = None,
) -> Page[ReadingPublic]:
    if end <= start:
        raise ApiError("end must be after start", field="end")
    size = _page_size(limit, settings.api_page_default, settings.api_page_max)
    lower: datetime = from_epoch_us(int(cursor) + 1) if cursor is not None else start
    visible_or_404(await conn.fetchrow(_SITE, site), who, site)
    meter_id = await conn.fetchval(_METER_ID, site, meter)
    if meter_id is None:
        raise NotFound(f"meter {meter!r} not found at site {site!r}")
    rows = await conn.fetch(_READINGS, meter_id, max(lower, start), end, size + 1)
    items = [
        ReadingPublic(
            ts=r["ts"],
            energy_kwh=r["energy_kwh"],
            power_kw=r["power_kw"],
            quality=READING_QUALITIES[r["quality"]],
        )
        for r in rows[:size]
    ]
    return Page[ReadingPublic](
        items=items, next_cursor=str(to_epoch_us(items[-1].ts)) if len(rows) > size else None
    )


def _page_size(limit: int | None, default: int, maximum: int) -> int:
    if limit is not None and limit > maximum:
        raise ApiError(f"limit may be at most {maximum}", field="limit")
    return limit or default
