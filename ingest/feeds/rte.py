"""RTE éCO2mix (France) open-data JSON, from ODRÉ's API (`{"total_count", "results": [...]}`)
or its older export (`{"records": [{"fields": {...}}, ...]}`).

Each record is a quarter-hour (`date_heure`, ISO with the +01:00 / +02:00 offset). Values are
MW; numbers given as strings are read, `null` is skipped. Mapping:

| field | wattstream |
|---|---|
| nucleaire | nuclear |
| gaz | gas |
| charbon | coal |
| fioul | oil |
| eolien | wind |
| solaire | solar |
| hydraulique | hydro |
| bioenergies | biomass |
| pompage | hydro_storage (negative: pumping) |
| destockage_batterie / stockage_batterie | battery (discharge positive / charging negative) |
| ech_physiques | net exchanges, neighbour `EU-neighbours`: positive imports, negative exports |
| taux_co2 | RTE's published intensity, g/kWh: an intensity record (kind actual) |

A mix and, where `taux_co2` is present, an intensity record are returned per timestamp
(mix first), oldest first; a repeated timestamp keeps the last record.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from ingest.feeds.common import FeedResult, generation_from, intensity_record, mix_record, number, text_of

__all__ = ["rte_eco2mix_json"]

_FUELS: Final = {
    "nucleaire": "nuclear",
    "gaz": "gas",
    "charbon": "coal",
    "fioul": "oil",
    "eolien": "wind",
    "solaire": "solar",
    "hydraulique": "hydro",
    "bioenergies": "biomass",
}


def rte_eco2mix_json(source: Path | str, *, region: str = "FR", interval_s: int = 900) -> FeedResult:
    result = FeedResult()
    doc = json.loads(text_of(source))
    rows: list[Any]
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        rows = doc["results"]
    elif isinstance(doc, dict) and isinstance(doc.get("records"), list):
        rows = [r.get("fields", r) for r in doc["records"]]
    else:
        raise ValueError("not an éCO2mix response: no `results` or `records` list")  # noqa: TRY004 - bad input
    by_ts: dict[datetime, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        try:
            ts = datetime.fromisoformat(str(row["date_heure"]))
        except (KeyError, ValueError):
            result.report.skip("bad_timestamp", i, str(row)[:120])
            continue
        if ts.tzinfo is None:
            result.report.skip("naive_timestamp", i, str(row["date_heure"]))
            continue
        if ts in by_ts:
            result.report.skip("duplicate_record", i, ts.isoformat())
        by_ts[ts] = row
    for ts, row in sorted(by_ts.items()):
        generation = generation_from(row, _FUELS, result, ts.isoformat())
        pumping = number(row.get("pompage"))
        if pumping is not None:
            generation["hydro_storage"] = -abs(pumping)
        discharge, charge = number(row.get("destockage_batterie")), number(row.get("stockage_batterie"))
        if discharge is not None or charge is not None:
            generation["battery"] = abs(discharge or 0.0) - abs(charge or 0.0)
        exchange = number(row.get("ech_physiques"))
        imports = {"EU-neighbours": exchange} if exchange is not None and exchange > 0 else {}
        exports = {"EU-neighbours": -exchange} if exchange is not None and exchange < 0 else {}
        if any(v > 0 for v in generation.values()):
            result.records.append(mix_record(region, ts, interval_s, generation, imports, exports))
        else:
            result.report.skip("no_generation", 0, ts.isoformat())
        rate = number(row.get("taux_co2"))
        if rate is not None and rate >= 0:
            result.records.append(intensity_record(region, ts, interval_s, rate))
    return result
