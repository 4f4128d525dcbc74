"""Open Electricity (OpenNEM) power responses: `{"data": [series...]}` for one network region.

Each series has an `id` like `au.nem.sa1.fuel_tech.gas_ccgt.power`, `units`, `fuel_tech` and
`history {start, last, interval, data[]}`: values equally spaced from `start` (ISO time with the
market's offset, +10:00 for the NEM), `null` for missing. Power series are MW averaged over the
interval starting at each point; `.emissions` series are tCO2e per interval.

Fuel mapping (`fuel_tech` -> wattstream):

| fuel_tech | wattstream |
|---|---|
| coal_black, coal_brown | coal.black, coal.brown |
| gas_ccgt, gas_ocgt, gas_recip, gas_steam, gas_wcmg | gas.ccgt, gas.ocgt, gas.recip, gas.steam, gas.wcmg |
| distillate | oil.distillate |
| bioenergy_biomass, bioenergy_biogas | biomass, biomass.biogas |
| hydro | hydro |
| pumps | hydro_storage.pumps (charging, negative) |
| wind | wind |
| solar_utility, solar_rooftop | solar.utility, solar.rooftop |
| battery_charging, battery_discharging | battery.charging (negative), battery.discharging |
| imports, exports | imports_mw / exports_mw, from / to the `neighbour` region |
| anything else | unknown.<fuel_tech> (counted) |

Charging series are published as positive MW and become negative (charging is not generation).
A small negative value on another fuel (a generator's own load) is clipped to 0 and counted.
`emissions_t_per_h` is the sum of the generators' `.emissions` (imports' excluded: they are
another region's) × intervals per hour.

**Quirk**: for generators the `emissions_factor` series is emissions ÷ power, i.e. the true
tCO2e/MWh × interval/1 h; for imports and exports it is the true tCO2e/MWh.
`publisher_factor_set` undoes that: it returns the publisher's own per-unit factors, per
technology and interval, as a wattstream factor set document (gCO2e/kWh, time-varying).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from ingest.feeds.common import FeedResult, mix_record
from schemas.grid import STORAGE_FUELS, fuel_of

__all__ = ["opennem_power_json", "publisher_factor_set"]

_FUEL_TECH: Final[dict[str, str]] = {
    "coal_black": "coal.black",
    "coal_brown": "coal.brown",
    "gas_ccgt": "gas.ccgt",
    "gas_ocgt": "gas.ocgt",
    "gas_recip": "gas.recip",
    "gas_steam": "gas.steam",
    "gas_wcmg": "gas.wcmg",
    "distillate": "oil.distillate",
    "bioenergy_biomass": "biomass",
    "bioenergy_biogas": "biomass.biogas",
    "hydro": "hydro",
    "pumps": "hydro_storage.pumps",
    "wind": "wind",
    "solar_utility": "solar.utility",
    "solar_rooftop": "solar.rooftop",
    "battery_charging": "battery.charging",
    "battery_discharging": "battery.discharging",
}
_CHARGING: Final = frozenset({"battery_charging", "pumps"})
_INTERVALS: Final = {"5m": 300, "15m": 900, "30m": 1800, "1h": 3600}


def _load(source: Path | str) -> dict[str, Any]:
    text = source.read_text(encoding="utf-8-sig") if isinstance(source, Path) else source
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError("not an OpenNEM response: no `data` list")  # noqa: TRY004 - bad input, not a bug
    return doc


def _series(
    doc: dict[str, Any], interval_s: int, result: FeedResult
) -> dict[tuple[str, str], dict[datetime, float]]:
    """(fuel_tech, metric) -> {interval start: value}, for the series at this interval."""
    out: dict[tuple[str, str], dict[datetime, float]] = defaultdict(dict)
    for s in doc["data"]:
        sid = str(s.get("id", ""))
        tech = s.get("fuel_tech")
        hist = s.get("history") or {}
        if not tech or _INTERVALS.get(str(hist.get("interval"))) != interval_s:
            continue
        metric = sid.rsplit(".", 1)[-1]
        start = datetime.fromisoformat(str(hist["start"]))
        if start.tzinfo is None:
            raise ValueError(f"series {sid}: start {hist['start']} has no UTC offset")
        for k, v in enumerate(hist.get("data") or []):
            ts = start + timedelta(seconds=k * interval_s)
            if v is None:
                result.report.skip(f"null_{metric}", k, f"{sid} at {ts.isoformat()}")
                continue
            try:
                out[(tech, metric)][ts] = float(v)
            except (TypeError, ValueError):
                result.report.skip(f"not_a_number_{metric}", k, f"{sid} at {ts.isoformat()}: {v!r}")
    return out


def opennem_power_json(
    source: Path | str, *, region: str = "AU-SA", neighbour: str = "AU-NEM", interval_s: int = 300
) -> FeedResult:
    """One mix record per interval of the response's `interval_s` series, oldest first.
    `neighbour` names the region the aggregated `imports` / `exports` series flow from and to."""
    result = FeedResult()
    series = _series(_load(source), interval_s, result)
    times = sorted({t for (_, metric), values in series.items() if metric == "power" for t in values})
    for k, ts in enumerate(times):
        generation: dict[str, float] = {}
        imports: dict[str, float] = {}
        exports: dict[str, float] = {}
        emissions = 0.0
        has_emissions = False
        for (tech, metric), values in series.items():
            if ts not in values:
                continue
            v = values[ts]
            if metric == "emissions" and tech not in ("imports", "exports"):
                emissions += v
                has_emissions = True
            if metric != "power":
                continue
            if tech == "imports":
                imports[neighbour] = abs(v)
                continue
            if tech == "exports":
                exports[neighbour] = abs(v)
                continue
            key = _FUEL_TECH.get(tech, f"unknown.{tech}")
            if key.startswith("unknown."):
                result.report.skip("unmapped_fuel_tech", k, tech)
            value = -abs(v) if tech in _CHARGING else v
            if value < 0 and fuel_of(key) not in STORAGE_FUELS:
                result.report.skip("negative_generation_clipped", k, f"{tech} {v} MW at {ts.isoformat()}")
                value = 0.0
            generation[key] = value
        if not any(v > 0 for v in generation.values()):
            result.report.skip("no_generation", k, ts.isoformat())
            continue
        result.records.append(
            mix_record(
                region,
                ts,
                interval_s,
                generation,
                imports,
                exports,
                emissions * 3600 / interval_s if has_emissions else None,
            )
        )
    return result


def publisher_factor_set(
    source: Path | str, *, name: str, region: str = "AU-SA", interval_s: int = 300
) -> dict[str, Any]:
    """The publisher's own per-unit factors (emissions ÷ energy per technology and interval) as a
    wattstream factor-set document; technologies without an emissions series get 0."""
    result = FeedResult()
    series = _series(_load(source), interval_s, result)
    factors: dict[str, Any] = {}
    for (tech, metric), power in series.items():
        if metric != "power" or tech in ("imports", "exports") or tech in _CHARGING:
            continue
        key = _FUEL_TECH.get(tech, f"unknown.{tech}")
        emitted = series.get((tech, "emissions"), {})
        steps = []
        for ts in sorted(power):
            mwh = power[ts] * interval_s / 3600
            if mwh > 0 and ts in emitted:
                steps.append({"datetime": ts.isoformat(), "value": emitted[ts] / mwh})  # t/MWh
        factors[key] = steps or 0.0
    return {
        "name": name,
        "scope": "direct",  # AEMO's generator factors are scope 1 (combustion)
        "unit": "tCO2e/MWh",
        "region": region,
        "source": "Open Electricity (OpenNEM) per-technology emissions ÷ energy, per interval",
        "licence": "Open Electricity / AEMO data terms",
        "factors": factors,
    }
