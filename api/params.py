"""Query parameters and lookups shared by routers: time ranges, resolutions, cursors, page sizes,
free text, a site or 404.

Every value a client sends is bounded here, before any arithmetic or query sees it: an instant
out of `schemas.bounds`' range, an integer past its bound or text with control characters answers
422 naming the parameter, in the one error shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import asyncpg
from fastapi import Path, Query
from pydantic import AfterValidator

from api.auth import Principal
from api.errors import ApiError, NotFound
from schemas.bounds import EARLIEST_US, INSTANT_RANGE, LATEST_US, Instant
from schemas.vocabulary import RESOLUTION_S, RESOLUTIONS, Resolution

__all__ = [
    "INTERVAL",
    "MAX_BUCKETS",
    "MAX_PAGE",
    "PRINTABLE",
    "AsOf",
    "End",
    "EpochCursor",
    "PageLimit",
    "Res",
    "RowId",
    "Start",
    "StartOrNow",
    "check_range",
    "check_series",
    "site_or_404",
    "visible_or_404",
]

INTERVAL = {"15min": "15 minutes", "hour": "1 hour", "day": "1 day", "month": "1 month"}
# a bucket's length for counting how many a range holds: local days and months vary, and are
# counted at 24 hours and 28 days
_APPROX_S: Final[dict[str, int]] = dict(RESOLUTION_S.items(), day=86_400, month=28 * 86_400)
MAX_BUCKETS = 10_000

Start = Annotated[Instant, Query(description=f"inclusive, RFC 3339 with offset, {INSTANT_RANGE}")]
End = Annotated[Instant, Query(description=f"exclusive, RFC 3339 with offset, {INSTANT_RANGE}")]
Res = Annotated[Resolution, Query(description="bucket size; day and month are local to the site")]
AsOf = Annotated[
    Instant | None,
    Query(
        description="the figures as they were known at this time (before later restatements); "
        f"default now; {INSTANT_RANGE}"
    ),
]
StartOrNow = Annotated[
    Instant | None, Query(description=f"RFC 3339 with offset, {INSTANT_RANGE}; default now")
]

RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a row's id")]

# no page is larger whatever WATTSTREAM_API_PAGE_MAX says: the bound the schema can state
MAX_PAGE: Final = 1_000_000
PageLimit = Annotated[
    int | None, Query(ge=1, le=MAX_PAGE, description="page size; at most WATTSTREAM_API_PAGE_MAX")
]

# free text that reaches the database: PostgreSQL text cannot hold NUL, and no name has controls
PRINTABLE: Final = r"^[^\x00-\x1f\x7f]+$"


def _cursor_in_range(cursor: str | None) -> str | None:
    if cursor is not None and not EARLIEST_US <= int(cursor) < LATEST_US:
        raise ValueError(f"not a cursor this API hands out: its instant must be {INSTANT_RANGE}")
    return cursor


# a page's last item as UTC epoch microseconds (negative before 1970), so the next page starts
# after it; ASCII digits only, as `\d` would take any script's
EpochCursor = Annotated[
    str | None,
    Query(pattern=r"^-?[0-9]{1,19}$", description="next_cursor of the previous page"),
    AfterValidator(_cursor_in_range),
]

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


def _fits(resolution: Resolution, bucket_s: int) -> bool:
    # local days and months are whole hours, and a bucket divides an hour (Settings checks it)
    return RESOLUTION_S.get(resolution, 3600) % bucket_s == 0


def check_series(start: datetime, end: datetime, resolution: Resolution, bucket_s: int) -> None:
    """Refuse a resolution that is not a whole number of the stored energy buckets (`bucket_s`
    seconds), then the range as `check_range` does. Grouped at a finer resolution, each coarser
    bucket would land whole in one shorter bucket and be labelled as one."""
    if not _fits(resolution, bucket_s):
        fits = ", ".join(r for r in RESOLUTIONS if _fits(r, bucket_s))
        raise ApiError(
            f"resolution {resolution} is not a whole number of the {bucket_s} s energy buckets "
            f"this deployment stores (WATTSTREAM_ENERGY_BUCKET_S): ask for {fits}",
            field="resolution",
        )
    check_range(start, end, resolution)


def visible_or_404(row: asyncpg.Record | None, who: Principal, site: str) -> asyncpg.Record:
    """The site's row if the key may see it; otherwise exactly what a missing site answers.
    (The database's row-level security hides it too: this is the first of two walls.)"""
    if row is None or not who.can_see(row["site_id"], row["tenant"]):
        raise NotFound(f"site {site!r} not found")
    return row


async def site_or_404(conn: asyncpg.Connection, site: str, who: Principal) -> asyncpg.Record:
    return visible_or_404(await conn.fetchrow(_SITE, site), who, site)
