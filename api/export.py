"""CSV answers for `Accept: text/csv` (energy and emissions series), from the same models as JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from fastapi import Request, Response

from schemas.api import SiteEmissions
from schemas.timeutil import rfc3339

__all__ = ["CSV_RESPONSE", "emissions_csv", "energy_csv", "wants_csv"]

CSV: Final = "text/csv"
CSV_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {CSV: {"schema": {"type": "string"}, "example": "site,start,end,kwh\n"}}}
}


def wants_csv(request: Request) -> bool:
    """CSV when the client asks for it ahead of JSON (`Accept: text/csv`)."""
    accept = request.headers.get("accept", "")
    return CSV in accept and (
        "application/json" not in accept or accept.index(CSV) < accept.index("application/json")
    )


def _csv(columns: Sequence[str], rows: Iterable[Sequence[object]], filename: str) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return Response(
        buf.getvalue(),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def energy_csv(series: Sequence[Mapping[str, Any]]) -> Response:
    """Energy series, each an `EnergySeries` in plain data whose buckets give their `rows()`:
    (start, end, kWh, coverage, quality), the bounds already RFC 3339 text as in the JSON."""
    columns = ("site", "meter", "sub_item", "start", "end", "kwh", "coverage", "quality", "timezone")
    rows = (
        (s["site"], s["meter"], s["sub_item"], *bucket, s["timezone"])
        for s in series
        for bucket in s["buckets"].rows()
    )
    return _csv(columns, rows, "energy.csv")


def emissions_csv(e: SiteEmissions) -> Response:
    columns = (
        "site", "start", "end", "kwh", "location_kg", "market_kg", "intensity_g_per_kwh", "quality",
        "factor_sets", "intensity_sources", "restated",
    )  # fmt: skip
    rows = (
        (
            e.site,
            rfc3339(b.start),
            rfc3339(b.end),
            b.kwh,
            b.location_kg,
            b.market_kg,
            b.intensity_g_per_kwh,
            b.quality,
            ";".join(b.factor_sets),
            ";".join(b.intensity_sources),
            b.restated,
        )
        for b in e.buckets
    )
    return _csv(columns, rows, f"{e.site}-emissions.csv")
