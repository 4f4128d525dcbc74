"""Energi Data Service (Energinet, Denmark) `ElectricityProdex5MinRealtime` JSON responses.

`{"total", "limit", "dataset", "records": [...]}`, newest first, one record per 5-minute
interval (`Minutes5UTC`, naive UTC, interval start) and price area (`PriceArea`: DK1, DK2).
A response holds at most `limit` records: a page of the dataset, not all of it.

| field | wattstream |
|---|---|
| OffshoreWindPower | wind.offshore |
| OnshoreWindPower | wind.onshore |
| SolarPower | solar |
| ProductionGe100MW | unknown.thermal_ge100mw |
| ProductionLt100MW | unknown.thermal_lt100mw |

The dataset gives thermal production only by unit size, with no fuel split, so it maps to
`unknown` with a technology (a factor set can price it per technology). Exchanges are signed
MW, positive into the area (measured: `ExchangeGreatBelt` is -302.6 at DK1 and +302.6 at DK2
at the same time): positive values go to `imports_mw`, negative ones to `exports_mw`, `null`
(no such interconnector) is skipped. Neighbours: ExchangeGermany DE, ExchangeNetherlands NL,
ExchangeGreatBritain GB, ExchangeNorway NO-NO2, ExchangeSweden SE-SE3 (DK1) / SE-SE4 (DK2),
ExchangeGreatBelt the other Danish area, BornholmSE4 SE-SE4.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from ingest.feeds.common import FeedResult, generation_from, mix_record, number, text_of

__all__ = ["energinet_prodex_json"]

_GENERATION: Final = {
    "OffshoreWindPower": "wind.offshore",
    "OnshoreWindPower": "wind.onshore",
    "SolarPower": "solar",
    "ProductionGe100MW": "unknown.thermal_ge100mw",
    "ProductionLt100MW": "unknown.thermal_lt100mw",
}


def _neighbours(area: str) -> dict[str, str]:
    return {
        "ExchangeGermany": "DE",
        "ExchangeNetherlands": "NL",
        "ExchangeGreatBritain": "GB",
        "ExchangeNorway": "NO-NO2",
        "ExchangeSweden": "SE-SE3" if area == "DK1" else "SE-SE4",
        "ExchangeGreatBelt": "DK-DK2" if area == "DK1" else "DK-DK1",
        "BornholmSE4": "SE-SE4",
    }


def energinet_prodex_json(source: Path | str, *, price_area: str | None = None) -> FeedResult:
    result = FeedResult()
    doc = json.loads(text_of(source))
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise ValueError("not an Energi Data Service response: no `records` list")  # noqa: TRY004 - bad input
    by_key: dict[tuple[datetime, str], dict[str, object]] = {}
    for i, rec in enumerate(records):
        area = str(rec.get("PriceArea") or "")
        if price_area is not None and area != price_area:
            continue
        try:
            ts = datetime.fromisoformat(str(rec["Minutes5UTC"])).replace(tzinfo=UTC)
        except (KeyError, ValueError):
            result.report.skip("bad_timestamp", i, str(rec)[:120])
            continue
        if not area:
            result.report.skip("no_price_area", i, str(rec)[:120])
            continue
        if (ts, area) in by_key:
            result.report.skip("duplicate_record", i, f"{area} {ts.isoformat()}")
        by_key[(ts, area)] = rec
    for (ts, area), rec in sorted(by_key.items()):
        generation = generation_from(rec, _GENERATION, result, f"{area} {ts.isoformat()}")
        imports: dict[str, float] = {}
        exports: dict[str, float] = {}
        for field, neighbour in _neighbours(area).items():
            mw = number(rec.get(field))
            if mw is None:
                continue
            side = imports if mw > 0 else exports
            side[neighbour] = side.get(neighbour, 0.0) + abs(mw)
        if not any(v > 0 for v in generation.values()):
            result.report.skip("no_generation", 0, f"{area} {ts.isoformat()}")
            continue
        result.records.append(mix_record(f"DK-{area}", ts, 300, generation, imports, exports))
    return result
