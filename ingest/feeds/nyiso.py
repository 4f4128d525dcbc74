"""NYISO real-time fuel mix CSVs (`rtfuelmix`), long format: one row per (time, fuel category).

Columns `Time Stamp` (MM/DD/YYYY HH:MM:SS, New York local time), `Time Zone` (EST or EDT: the
offset is taken from it, never guessed, so the repeated hour of the autumn change is not
ambiguous), `Fuel Category`, `Gen MW`. The stamps are interval *ending* (the day's first row
is 00:05), so a record's `ts` is the stamp minus `interval_s`. Rows are pivoted to one mix
per timestamp, oldest first; a repeated (time, category) keeps the last row.

| Fuel Category | wattstream |
|---|---|
| Dual Fuel | gas.dual_fuel (units that burn gas or oil; mostly gas) |
| Natural Gas | gas |
| Nuclear | nuclear |
| Other Fossil Fuels | oil |
| Other Renewables | biomass |
| Wind | wind |
| Hydro | hydro |
| anything else | unknown (counted as `unmapped_fuel`) |
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Final

from ingest.feeds.common import FeedResult, mix_record, number, text_of
from schemas.grid import STORAGE_FUELS, fuel_of

__all__ = ["nyiso_rtfuelmix_csv"]

_FUELS: Final = {
    "Dual Fuel": "gas.dual_fuel",
    "Natural Gas": "gas",
    "Nuclear": "nuclear",
    "Other Fossil Fuels": "oil",
    "Other Renewables": "biomass",
    "Wind": "wind",
    "Hydro": "hydro",
}
_ZONES: Final = {"EST": timezone(timedelta(hours=-5)), "EDT": timezone(timedelta(hours=-4))}


def nyiso_rtfuelmix_csv(
    source: Path | str, *, region: str = "US-NY-NYIS", interval_s: int = 300
) -> FeedResult:
    result = FeedResult()
    rows = csv.DictReader(io.StringIO(text_of(source)))
    need = {"Time Stamp", "Time Zone", "Fuel Category", "Gen MW"}
    if rows.fieldnames is None or not need <= set(rows.fieldnames):
        raise ValueError(f"not a NYISO fuel-mix CSV: columns {rows.fieldnames}, need {sorted(need)}")
    mixes: dict[datetime, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        text = ",".join(str(v) for v in row.values())
        zone = _ZONES.get((row["Time Zone"] or "").strip())
        try:
            stamp = datetime.strptime((row["Time Stamp"] or "").strip(), "%m/%d/%Y %H:%M:%S")  # noqa: DTZ007 - zone next
        except ValueError:
            result.report.skip("bad_timestamp", line, text)
            continue
        if zone is None:
            result.report.skip("unknown_time_zone", line, text)
            continue
        mw = number(row["Gen MW"])
        if mw is None:
            result.report.skip("not_a_number", line, text)
            continue
        category = (row["Fuel Category"] or "").strip()
        key = _FUELS.get(category)
        if key is None:
            result.report.skip("unmapped_fuel", line, category)
            key = "unknown"
        if mw < 0 and fuel_of(key) not in STORAGE_FUELS:
            result.report.skip("negative_generation_clipped", line, text)
            mw = 0.0
        ts = stamp.replace(tzinfo=zone) - timedelta(seconds=interval_s)
        mix = mixes.setdefault(ts, {})
        if key in mix and category in _FUELS:
            result.report.skip("duplicate_row", line, text)
        mix[key] = mix.get(key, 0.0) + mw if category not in _FUELS else mw
    for ts in sorted(mixes):
        if not any(v > 0 for v in mixes[ts].values()):
            result.report.skip("no_generation", 0, ts.isoformat())
            continue
        result.records.append(mix_record(region, ts, interval_s, mixes[ts]))
    return result
