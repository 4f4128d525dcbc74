"""Query parameters and lookups shared by routers: time ranges, resolutions, a site or 404."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import asyncpg
from fastapi import Path, Query
from pydantic import AwareDatetime

from api.auth import Principal
from api.errors import ApiError, NotFound

__all__ = [
    "INTERVAL",
    "MAX_BUCKETS",
    "AsOf",
    "End",
    "Res",
    "Resolution",
    "RowId",
    "Start",
    "check_range",
    "site_or_404",
    "visible_or_404",
]

Resolution = Literal["15min", "hour", "day", "month"]
INTERVAL = {"15min": "15 minutes", "hour": "1 hour", "day": "1 day", "month": "1 month"}
_APPROX_S = {"15min": 900, "hour": 3600, "day": 86_400, "month": 28 * 86_400}
MAX_BUCKETS = 10_000

Start = Annotated[AwareDatetime, Query(description="inclusive, RFC 3339 with offset")]
End = Annotated[AwareDatetime, Query(description="exclusive, RFC 3339 with offset")]
Res = Annotated[Resolution, Query(description="bucket size; day and month are local to the site")]
AsOf = Annotated[
    AwareDatetime | None,
    Query(description="the figures as they were known at this time (before later restatements); default now"),
]

RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a row's id")]

_SITE = "SELECT site_id, timezone, balance_tolerance, region, tenant FROM sites WHERE site_id = $1"


def check_range(start: datetime, end: datetime, resolution: str, approx_s: float | None = None) -> None:
    """Refuse an empty range or one that would need more than MAX_BUCKETS buckets."""
    if end <= start:
        raise ApiError("end must be after start", field="end")
    step = approx_s if approx_s is not None else _APPROX_S[resolution]
    if (end - start).total_seconds() / step > MAX_BUCKETS:
        raise ApiError(
            f"at most {MAX_BUCKETS} buckets per request: shorten the range or coarsen resolution", "end"
        )


def visible_or_404(row: asyncpg.Record | None, who: Principal, site: str) -> asyncpg.Record:
    """The site's row if the key may see it; otherwise exactly what a missing site answers.
    (The database's row-level security hides it too: this is the first of two walls.)"""
    if row is None or not who.can_see(row["site_id"], row["tenant"]):
        raise NotFound(f"site {site!r} not found")
    return row


async def site_or_404(conn: asyncpg.Connection, site: str, who: Principal) -> asyncpg.Record:
    return visible_or_404(await conn.fetchrow(_SITE, site), who, site)
