"""Grid feed adapters against the real samples and small texts with each format's quirks."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from ingest.feeds.common import FeedResult
from ingest.feeds.energinet import energinet_prodex_json
from ingest.feeds.neso import neso_intensity_csv
from ingest.feeds.nyiso import nyiso_rtfuelmix_csv
from ingest.feeds.opennem import opennem_power_json, publisher_factor_set
from ingest.feeds.rte import rte_eco2mix_json
from schemas.grid import GridDecoder, GridIntensity, GridMix

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT.parent / "shared" / "data" / "grid"
DECODER = GridDecoder(
    max_future_s=86_400, max_forecast_s=7 * 86_400, earliest=datetime(2000, 1, 1, tzinfo=UTC)
)


def _decoded(result: FeedResult) -> list[GridMix | GridIntensity]:
    out = []
    for record in result.records:
        value, bad = DECODER.decode(msgspec.json.encode(record), datetime(2027, 1, 1, tzinfo=UTC))
        assert bad is None, (record, bad)
        assert value is not None
        out.append(value)
    times = [(v.ts_us, v.region) for v in out]
    assert times == sorted(times) or len({v.region for v in out}) > 1
    return out


def _utc(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def test_nyiso_sample_pivots_to_288_interval_start_mixes() -> None:
    result = nyiso_rtfuelmix_csv(GRID / "nyiso_rtfuelmix_2025-02-01.csv")
    mixes = _decoded(result)
    assert len(mixes) == 288 and not result.report.counts
    first = mixes[0]
    assert isinstance(first, GridMix)
    # stamped 00:05 EST (interval ending): the interval starts at 00:00 EST = 05:00 UTC
    assert first.ts_us == _utc("2025-02-01T05:00:00+00:00") and first.interval_s == 300
    assert first.generation_mw == {
        "gas.dual_fuel": 4613.0,
        "gas": 3487.0,
        "nuclear": 3274.0,
        "oil": 1.0,
        "biomass": 232.0,
        "wind": 671.0,
        "hydro": 1846.0,
    }
    assert mixes[-1].ts_us == _utc("2025-02-02T04:55:00+00:00")


def test_nyiso_format_quirks() -> None:
    text = (
        "Time Stamp,Time Zone,Fuel Category,Gen MW\n"
        "11/02/2025 01:05:00,EDT,Nuclear,3000\n"
        "11/02/2025 01:05:00,EST,Nuclear,3100\n"  # the repeated hour: the zone column tells them apart
        "11/02/2025 01:05:00,EST,Nuclear,3200\n"  # a duplicate row: the last wins
        "11/02/2025 01:05:00,EST,Wind,-4\n"
        "11/02/2025 01:05:00,EST,Tidal,7\n"
        "11/02/2025 01:05:00,EST,Hydro,n/a\n"
        "bad,EST,Hydro,1\n"
    )
    result = nyiso_rtfuelmix_csv(text)
    mixes = _decoded(result)
    assert [m.ts_us for m in mixes] == [_utc("2025-11-02T05:00:00+00:00"), _utc("2025-11-02T06:00:00+00:00")]
    assert mixes[1].generation_mw == {"nuclear": 3200.0, "wind": 0.0, "unknown": 7.0}  # type: ignore[union-attr]
    assert result.report.counts == {
        "duplicate_row": 1,
        "negative_generation_clipped": 1,
        "unmapped_fuel": 1,
        "not_a_number": 1,
        "bad_timestamp": 1,
    }
    with pytest.raises(ValueError, match="columns"):
        nyiso_rtfuelmix_csv("a,b\n1,2\n")


def test_energinet_sample_gives_both_areas_with_signed_exchanges() -> None:
    result = energinet_prodex_json(GRID / "energinet_DK_ElectricityProdex5MinRealtime_2025-02-21.json")
    mixes = [m for m in _decoded(result) if isinstance(m, GridMix)]
    assert len(mixes) == 100 and {m.region for m in mixes} == {"DK-DK1", "DK-DK2"}
    assert not result.report.counts
    last = {m.region: m for m in mixes if m.ts_us == _utc("2025-02-21T19:10:00+00:00")}
    dk1, dk2 = last["DK-DK1"], last["DK-DK2"]
    assert dk1.generation_mw["wind.offshore"] == pytest.approx(1502.01001)
    assert dk1.generation_mw["unknown.thermal_ge100mw"] == pytest.approx(408.899994)
    # Great Belt: -302.59 at DK1, +302.59 at DK2: DK1 exports to DK2
    assert dk1.exports_mw["DK-DK2"] == pytest.approx(302.589996) and dk2.imports_mw[
        "DK-DK1"
    ] == pytest.approx(302.589996)
    assert dk1.imports_mw["NO-NO2"] == pytest.approx(1247.170044) and dk1.exports_mw["GB"] == pytest.approx(
        1455.079956
    )
    assert "NO-NO2" not in dk2.imports_mw and "NO-NO2" not in dk2.exports_mw  # null: no interconnector
    assert dk2.imports_mw["SE-SE4"] == pytest.approx(561.309998 + 9.59)  # Øresund and Bornholm
    only = energinet_prodex_json(
        GRID / "energinet_DK_ElectricityProdex5MinRealtime_2025-02-21.json", price_area="DK1"
    )
    assert len(only.records) == 50 and {r["region"] for r in only.records} == {"DK-DK1"}
    first = min(m.ts_us for m in mixes)
    assert first == _utc("2025-02-21T15:05:00+00:00")


def test_energinet_format_quirks() -> None:
    doc = {
        "records": [
            {
                "Minutes5UTC": "2025-01-01T00:05:00",
                "PriceArea": "DK1",
                "SolarPower": "12.5",
                "OnshoreWindPower": 100,
            },
            {
                "Minutes5UTC": "2025-01-01T00:00:00",
                "PriceArea": "DK1",
                "SolarPower": None,
                "OnshoreWindPower": 90,
            },
            {
                "Minutes5UTC": "2025-01-01T00:00:00",
                "PriceArea": "DK1",
                "SolarPower": None,
                "OnshoreWindPower": 95,
            },
            {"Minutes5UTC": "not a time", "PriceArea": "DK1", "SolarPower": 1},
        ]
    }
    result = energinet_prodex_json(json.dumps(doc))
    mixes = _decoded(result)
    assert [m.generation_mw for m in mixes] == [
        {"wind.onshore": 95.0},
        {"wind.onshore": 100.0, "solar": 12.5},
    ]  # type: ignore[union-attr]
    assert result.report.counts == {"duplicate_record": 1, "bad_timestamp": 1}


def test_neso_hourly_csv_in_kg_becomes_grams() -> None:
    result = neso_intensity_csv(GRID / "gb_grid_carbon_intensity_hourly_2021.csv")
    records = _decoded(result)
    assert len(records) == 8760 and all(isinstance(r, GridIntensity) for r in records)
    with (GRID / "gb_grid_carbon_intensity_hourly_2021.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    assert records[0].ts_us == _utc("2021-01-01T00:00:00+00:00") and records[0].interval_s == 3600
    assert records[0].intensity_g_per_kwh == pytest.approx(float(rows[0][1]) * 1000)  # type: ignore[union-attr]
    assert records[-1].ts_us == _utc("2021-12-31T23:00:00+00:00")


def test_neso_api_csv_and_quirks() -> None:
    api = (
        "from,to,forecast,actual\n"
        "2024-01-01T00:30Z,2024-01-01T01:00Z,190,185\n"
        "2024-01-01T00:00Z,2024-01-01T00:30Z,200,\n"
        "2024-01-01T01:00Z,2024-01-01T01:30Z,180,x\n"
    )
    actual = neso_intensity_csv(api)
    assert [(r["ts"], r["intensity_g_per_kwh"], r["interval_s"]) for r in actual.records] == [
        ("2024-01-01T00:30:00+00:00", 185.0, 1800)
    ]
    assert actual.report.counts == {"no_value": 2}
    forecast = neso_intensity_csv(api, kind="forecast")
    assert [r["intensity_g_per_kwh"] for r in forecast.records] == [200.0, 190.0, 180.0]
    assert {r["kind"] for r in forecast.records} == {"forecast"}
    grams = neso_intensity_csv(
        "datetime,Carbon Intensity [g_CO2/kWh]\n2024-01-01 00:00:00,150\n2024-01-01 00:30:00,160\n"
    )
    assert [r["intensity_g_per_kwh"] for r in grams.records] == [150.0, 160.0]
    assert {r["interval_s"] for r in grams.records} == {1800}  # the step between rows
    with pytest.raises(ValueError, match="unit"):
        neso_intensity_csv("datetime,Carbon Intensity\n2024-01-01 00:00:00,150\n")


def test_rte_fixture_mixes_and_published_intensity() -> None:
    result = rte_eco2mix_json(ROOT / "tests" / "data" / "rte_eco2mix_sample.json")
    records = _decoded(result)
    mixes = [r for r in records if isinstance(r, GridMix)]
    published = [r for r in records if isinstance(r, GridIntensity)]
    # 01:30 and 01:45 CET, then 03:00 and 03:15 CEST (the spring change), then noon; one duplicate
    assert [m.ts_us for m in mixes] == [
        _utc("2025-03-30T00:30:00+00:00"),
        _utc("2025-03-30T00:45:00+00:00"),
        _utc("2025-03-30T01:00:00+00:00"),
        _utc("2025-03-30T01:15:00+00:00"),
        _utc("2025-03-30T10:00:00+00:00"),
        _utc("2025-03-30T10:15:00+00:00"),
    ]
    first = mixes[0]
    assert (
        first.generation_mw["nuclear"] == 41290.0 and "coal" not in first.generation_mw
    )  # string read, null skipped
    assert first.generation_mw["hydro_storage"] == -2230.0 and first.exports_mw == {"EU-neighbours": 8615.0}
    assert mixes[4].imports_mw == {"EU-neighbours": 1250.0} and mixes[4].generation_mw["battery"] == 35.0
    assert mixes[5].generation_mw["battery"] == -60.0 and mixes[5].generation_mw["gas"] == 1195.0  # last wins
    assert len(published) == 5 and published[0].intensity_g_per_kwh == 20  # 03:00 has no taux_co2
    assert result.report.counts == {"duplicate_record": 1, "naive_timestamp": 1}
    old = rte_eco2mix_json(
        json.dumps({"records": [{"fields": {"date_heure": "2020-01-01T00:00:00+01:00", "gaz": 10}}]})
    )
    assert old.records[0]["generation_mw"] == {"gas": 10.0}


def test_opennem_sample_and_publisher_factors() -> None:
    result = opennem_power_json(GRID / "openelectricity_AU-SA_5min_2025-07-23.json")
    mixes = [m for m in _decoded(result) if isinstance(m, GridMix)]
    assert len(mixes) == 288
    assert mixes[0].ts_us == _utc("2025-07-23T01:45:00+10:00")
    first = mixes[0]
    assert first.generation_mw["battery.charging"] < 0 < first.generation_mw["battery.discharging"]
    assert first.imports_mw == {"AU-NEM": pytest.approx(57.6331)}
    assert first.emissions_t_per_h is not None and first.emissions_t_per_h > 0
    # battery_discharging has 11 nulls and solar_rooftop 3 (README); distillate dips below zero
    assert result.report.counts["null_power"] == 14
    assert result.report.counts["negative_generation_clipped"] > 0
    doc = publisher_factor_set(GRID / "openelectricity_AU-SA_5min_2025-07-23.json", name="p")
    # the publisher's generator factor is emissions / power: x 12 for tCO2e/MWh (e.g. OCGT ~0.66)
    ocgt = [step["value"] for step in doc["factors"]["gas.ocgt"]]
    assert min(ocgt) > 0.5 and max(ocgt) < 0.9
    assert doc["factors"]["wind"] == 0.0 and doc["unit"] == "tCO2e/MWh"
