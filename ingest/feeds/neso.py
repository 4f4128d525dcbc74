"""Published GB carbon intensity CSVs (NESO), as a published-intensity feed.

Two shapes are read:
- `datetime,Carbon Intensity [<unit>]` (naive UTC times; the unit from the header:
  `kg_CO2/kWh` is multiplied by 1000, `g_CO2/kWh` or `gCO2/kWh` taken as is), as the
  Cambridge archive derives it from NESO's data, hourly there and half-hourly in NESO's own;
  the interval is the median step between rows unless `interval_s` is given;
- the Carbon Intensity API's CSV, `from,to,forecast,actual` (ISO times with `Z`): `actual`
  for kind "actual", `forecast` for kind "forecast", the interval from `from` to `to`.

Rows are returned oldest first; a repeated time keeps the last row; empty or non-numeric
values are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path

from ingest.feeds.common import FeedResult, intensity_record, number, text_of

__all__ = ["neso_intensity_csv"]

_UNIT = re.compile(r"\[\s*(?P<mass>kg|g)_?CO2/kWh\s*\]|(?P<plain>gCO2/kWh)", re.IGNORECASE)


def _utc(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def neso_intensity_csv(
    source: Path | str, *, region: str = "GB", kind: str = "actual", interval_s: int | None = None
) -> FeedResult:
    result = FeedResult()
    reader = csv.reader(io.StringIO(text_of(source)))
    header = [h.strip() for h in next(reader, [])]
    values: dict[datetime, tuple[float, int | None]] = {}
    if {"from", "to", "forecast", "actual"} <= set(header):
        col = header.index(kind if kind in ("actual", "forecast") else "actual")
        start, end = header.index("from"), header.index("to")
        for line, row in enumerate(reader, start=2):
            try:
                t0, t1 = _utc(row[start]), _utc(row[end])
            except (ValueError, IndexError):
                result.report.skip("bad_timestamp", line, ",".join(row))
                continue
            v = number(row[col]) if col < len(row) else None
            if v is None:
                result.report.skip("no_value", line, ",".join(row))
                continue
            if t0 in values:
                result.report.skip("duplicate_row", line, ",".join(row))
            values[t0] = (v, int((t1 - t0).total_seconds()))
    elif len(header) >= 2 and header[0].lower() == "datetime":
        m = _UNIT.search(header[1])
        if m is None:
            raise ValueError(f"no unit in the intensity column header {header[1]!r}")
        scale = 1000.0 if (m["mass"] or "").lower() == "kg" else 1.0
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            try:
                t0 = _utc(row[0])
            except ValueError:
                result.report.skip("bad_timestamp", line, ",".join(row))
                continue
            v = number(row[1]) if len(row) > 1 else None
            if v is None:
                result.report.skip("no_value", line, ",".join(row))
                continue
            if t0 in values:
                result.report.skip("duplicate_row", line, ",".join(row))
            values[t0] = (v * scale, None)
    else:
        raise ValueError(f"not a carbon intensity CSV: header {header}")
    times = sorted(values)
    steps = [int((b - a).total_seconds()) for a, b in itertools.pairwise(times)]
    default = interval_s or (int(statistics.median(steps)) if steps else 1800)
    for t in times:
        v, own = values[t]
        if v < 0:
            result.report.skip("negative_value", 0, f"{t.isoformat()} {v}")
            continue
        result.records.append(intensity_record(region, t, own or default, round(v, 6), kind))
    return result
