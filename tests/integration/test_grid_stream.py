"""Grid records through the real pipeline: Kafka in, intensity and restated emissions in
TimescaleDB, the derived intensity stream out."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from helpers import ROOT, Worker, fetch, produce, read_topic, settings_env, wait_for

from ingest.feeds.opennem import publisher_factor_set
from ingest.registry import MeterRecord, SiteRecord, register
from schemas.deadletter import read_dead_letter
from schemas.settings import Settings

pytestmark = pytest.mark.integration

DATA = ROOT.parent / "shared" / "data"
AU_SA = DATA / "grid" / "openelectricity_AU-SA_5min_2025-07-23.json"


async def _count(s: Settings, sql: str, *args: Any) -> int:
    return int((await fetch(s, sql, *args))[0][0])


def _mix(region: str, ts: datetime, generation: dict[str, float], **extra: Any) -> tuple[bytes, bytes]:
    record = {"region": region, "ts": ts.isoformat(), "interval_s": 900, "generation_mw": generation, **extra}
    return region.encode(), msgspec.json.encode(record)


def _publisher_reference() -> dict[datetime, float]:
    """The publisher's own emissions ÷ generation per interval, straight from the file (g/kWh)."""
    doc = json.loads(AU_SA.read_text())
    emissions: dict[int, float] = {}
    generation: dict[int, float] = {}
    start = None
    for series in doc["data"]:
        tech, sid = series.get("fuel_tech"), series["id"]
        if (
            not tech
            or tech in ("imports", "exports", "battery_charging")
            or series["history"]["interval"] != "5m"
        ):
            continue
        start = datetime.fromisoformat(series["history"]["start"])
        for k, v in enumerate(series["history"]["data"]):
            if v is None:
                continue
            if sid.endswith(".emissions"):
                emissions[k] = emissions.get(k, 0.0) + v
            elif sid.endswith(".power") and v > 0:
                generation[k] = generation.get(k, 0.0) + v
    assert start is not None
    return {
        start + timedelta(minutes=5 * k): emissions.get(k, 0.0) * 12 * 1000 / g for k, g in generation.items()
    }


async def test_au_sa_intensity_agrees_with_the_publisher(pipeline: Settings, tmp_path: Path) -> None:
    factor_file = tmp_path / "opennem_au_sa.yaml"
    factor_file.write_text(yaml.safe_dump(publisher_factor_set(AU_SA, name="opennem-AU-SA-publisher")))
    s = pipeline.model_copy(
        update={
            "factor_files": [factor_file, *sorted((DATA / "factors").glob("electricitymaps_*.yaml"))],
            # a region of this test's own (the database is shared by the session): AU-SA's data
            "factor_choices": {
                "AU-SA-T:direct": "opennem-AU-SA-publisher",
                "AU-SA-T:lifecycle": "em-AU-SA-lifecycle",
            },
        }
    )
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wattstream",
            "replay",
            "opennem",
            str(AU_SA),
            "--region",
            "AU-SA-T",
            env=settings_env(s),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out = (await proc.communicate())[0].decode()
        assert proc.returncode == 0, out
        assert "288 grid records for 1 region(s)" in out

        async def all_computed() -> object:
            n = await _count(
                s,
                "SELECT count(*) FROM grid_intensity WHERE region = 'AU-SA-T' AND superseded_at IS NULL "
                "AND factor_set = 'opennem-AU-SA-publisher' AND basis = 'production'",
            )
            return n == 288 or n

        await wait_for(all_computed, 60, "288 AU-SA intervals computed")
    finally:
        worker.terminate()
    reference = _publisher_reference()
    rows = await fetch(
        s,
        "SELECT ts, factor_set, intensity_g_per_kwh FROM grid_intensity WHERE region = 'AU-SA-T' "
        "AND superseded_at IS NULL AND basis = 'production'",
    )
    errors: dict[str, list[float]] = {}
    for r in rows:
        want = reference[r["ts"]]
        errors.setdefault(r["factor_set"], []).append(abs(r["intensity_g_per_kwh"] - want) / want)
    for name, errs in sorted(errors.items()):
        mean = sum(errs) / len(errs)
        print(f"AU-SA {name}: {len(errs)} intervals, max error {max(errs):.4%}, mean {mean:.4%}")
    assert len(errors["opennem-AU-SA-publisher"]) == 288
    assert max(errors["opennem-AU-SA-publisher"]) < 0.01  # the publisher's own per-unit factors
    assert max(errors["publisher"]) < 1e-9  # its total emissions ÷ generation, as published
    assert set(errors) == {"em-AU-SA-lifecycle", "opennem-AU-SA-publisher", "publisher"}
    # every new intensity row went out on the derived stream, keyed by region
    published = await read_topic(s, s.topic_intensity)
    assert len(published) >= len(rows)
    assert {m.key for m in published} == {b"AU-SA-T"}
    sample = json.loads(published[0].value)
    assert {"region", "ts", "factor_set", "basis", "intensity_g_per_kwh", "nonfossil_share"} <= set(sample)


async def test_flow_tracing_restates_an_importer_when_its_neighbour_arrives(
    pipeline: Settings, tmp_path: Path
) -> None:
    ts = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    cons = (
        "SELECT intensity_g_per_kwh, flags, superseded_at FROM grid_intensity WHERE region = 'XA' "
        "AND basis = 'consumption' AND factor_set = 'ipcc2014-lifecycle' ORDER BY recorded_at"
    )
    try:
        # XA: 100 MW of coal (820 g/kWh lifecycle), importing 50 MW from XB, not known yet
        await produce(
            pipeline, [_mix("XA", ts, {"coal": 100}, imports_mw={"XB": 50})], topic=pipeline.topic_grid
        )

        async def first() -> object:
            rows = await fetch(pipeline, cons)
            return len(rows) == 1 or rows

        await wait_for(first, 30, "XA's consumption intensity")
        # XB unknown: valued at its factor set's `unknown` (700 g/kWh) and flagged
        row = (await fetch(pipeline, cons))[0]
        assert row["intensity_g_per_kwh"] == pytest.approx((100 * 820 + 50 * 700) / 150)
        assert row["flags"] == ["neighbour_fallback:XB"]
        # XB arrives: 200 MW of wind (11 g/kWh); XA is restated by hand: (82000 + 50 * 11) / 150
        await produce(
            pipeline, [_mix("XB", ts, {"wind": 200}, exports_mw={"XA": 50})], topic=pipeline.topic_grid
        )

        async def restated() -> object:
            rows = await fetch(pipeline, cons)
            return len(rows) == 2 or rows

        await wait_for(restated, 30, "XA restated")
    finally:
        worker.terminate()
    old, new = await fetch(pipeline, cons)
    assert old["superseded_at"] is not None and new["superseded_at"] is None
    assert new["intensity_g_per_kwh"] == pytest.approx((100 * 820 + 50 * 11) / 150)
    assert new["flags"] == []
    xb = await fetch(
        pipeline,
        "SELECT intensity_g_per_kwh FROM grid_intensity WHERE region = 'XB' AND basis = 'consumption' "
        "AND factor_set = 'ipcc2014-lifecycle' AND superseded_at IS NULL",
    )
    assert xb[0]["intensity_g_per_kwh"] == pytest.approx(11)


def _register_readings(site: str, start: datetime, hours: float, kw: float) -> list[tuple[bytes, bytes]]:
    """A register meter at constant power, a reading every 5 minutes."""
    out = []
    steps = int(hours * 12)
    for k in range(steps + 1):
        ts = start + timedelta(minutes=5 * k)
        reading = {"site": site, "meter": "main", "ts": ts.isoformat(), "energy_kwh": 1000 + kw * k / 12}
        out.append((site.encode(), msgspec.json.encode(reading)))
    return out


async def test_revision_restates_intensity_and_site_emissions(pipeline: Settings, tmp_path: Path) -> None:
    site = "hz-grid-rev"
    start = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    await register(
        pipeline.database_url.get_secret_value(),
        [SiteRecord(site, region="CN-ZJ", timezone="Asia/Shanghai")],
        [MeterRecord(site, "main")],
    )
    emissions = (
        "SELECT bucket_start, kwh, intensity_g_per_kwh, co2e_kg, residual_g_per_kwh, factor_set, "
        "intensity_source, quality, recorded_at, superseded_at FROM site_emissions WHERE site_id = $1 "
        "ORDER BY bucket_start, recorded_at"
    )
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    try:
        # one hour at 120 kW: 30 kWh per 15-minute bucket, before any grid data
        await produce(pipeline, _register_readings(site, start, 1, 120))

        # (five buckets: the last reading, at 01:00, opens a fifth with no energy yet)
        async def fallback() -> object:
            rows = [r for r in await fetch(pipeline, emissions, site) if r["superseded_at"] is None]
            return (len(rows) == 5 and all(r["quality"] == "fallback" for r in rows)) or rows

        await wait_for(fallback, 60, "fallback emissions")
        rows = [r for r in await fetch(pipeline, emissions, site) if r["superseded_at"] is None]
        assert [r["kwh"] for r in rows] == pytest.approx([30, 30, 30, 30, 0])
        # China's official 2022 East China grid factor, 0.5617 kgCO2/kWh, named with its year
        assert rows[0]["intensity_source"] == "cn-mee-grid:2022:east"
        assert rows[0]["co2e_kg"] == pytest.approx(30 * 0.5617)
        assert rows[0]["residual_g_per_kwh"] == pytest.approx(585.6)
        # the mix arrives (revision 0): coal 60 %, nuclear 40 % -> 0.6 * 820 + 0.4 * 12 = 496.8
        mixes = [
            _mix("CN-ZJ", start + timedelta(minutes=15 * k), {"coal": 600, "nuclear": 400}) for k in range(4)
        ]
        await produce(pipeline, mixes, topic=pipeline.topic_grid)

        async def measured() -> object:
            rows = [r for r in await fetch(pipeline, emissions, site) if r["superseded_at"] is None]
            return [r["quality"] for r in rows] == ["measured"] * 4 + ["estimated"] or rows

        await wait_for(measured, 60, "measured emissions")
        # the fifth bucket has no interval of its own: the adjacent one is the nearest
        last = [r for r in await fetch(pipeline, emissions, site) if r["superseded_at"] is None][-1]
        assert last["intensity_source"] == "nearest:consumption"
        # revision 1 of the second interval: all coal
        await produce(
            pipeline,
            [_mix("CN-ZJ", start + timedelta(minutes=15), {"coal": 1000}, revision=1)],
            topic=pipeline.topic_grid,
        )

        async def revised() -> object:
            rows = await fetch(pipeline, emissions, site)
            second = [r for r in rows if r["bucket_start"] == start + timedelta(minutes=15)]
            return len(second) == 3 or second

        await wait_for(revised, 60, "the revised bucket restated")
        # a stale revision 0 of the same interval, replayed, restates nothing
        await produce(
            pipeline,
            [_mix("CN-ZJ", start + timedelta(minutes=15), {"coal": 600, "nuclear": 400})],
            topic=pipeline.topic_grid,
        )
        await asyncio.sleep(3)
    finally:
        worker.terminate()
    rows = await fetch(pipeline, emissions, site)
    second = [r for r in rows if r["bucket_start"] == start + timedelta(minutes=15)]
    fallback_row, rev0, rev1 = second
    assert [r["quality"] for r in second] == ["fallback", "measured", "measured"]
    assert (
        fallback_row["superseded_at"] == rev0["recorded_at"] and rev0["superseded_at"] == rev1["recorded_at"]
    )
    assert rev1["superseded_at"] is None
    assert rev0["intensity_g_per_kwh"] == pytest.approx(0.6 * 820 + 0.4 * 12)
    assert rev1["intensity_g_per_kwh"] == pytest.approx(820)
    assert rev1["co2e_kg"] == pytest.approx(30 * 0.820)
    assert rev1["factor_set"] == "ipcc2014-lifecycle" and rev1["intensity_source"] == "consumption"
    others = [
        r for r in rows if r["bucket_start"] != start + timedelta(minutes=15) and r["superseded_at"] is None
    ]
    assert all(r["intensity_g_per_kwh"] == pytest.approx(496.8) for r in others)
    history = await fetch(
        pipeline,
        "SELECT mix_revision, intensity_g_per_kwh, superseded_at FROM grid_intensity WHERE region = 'CN-ZJ' "
        "AND ts = $1 AND basis = 'production' AND factor_set = 'ipcc2014-lifecycle' ORDER BY recorded_at",
        start + timedelta(minutes=15),
    )
    assert [(h["mix_revision"], round(h["intensity_g_per_kwh"], 6)) for h in history] == [
        (0, 496.8),
        (1, 820.0),
    ]
    assert history[0]["superseded_at"] is not None and history[1]["superseded_at"] is None
    stored = await _count(
        pipeline,
        "SELECT count(*) FROM grid_mix WHERE region = 'CN-ZJ' AND ts >= $1 AND ts < $2",
        start,
        start + timedelta(hours=1),
    )
    assert stored == 5  # every revision kept, the stale one too


async def test_bad_grid_records_are_dead_lettered_and_good_ones_applied(
    pipeline: Settings, tmp_path: Path
) -> None:
    ts = datetime(2026, 3, 3, tzinfo=UTC)
    bad = [
        (b"XC", b'{"region": "XC", "ts": "2026-03-03T00:00:00+00:00", "generation_mw": {"peat": 5}}'),
        (b"XC", b'{"region": "XC", "ts": "2026-03-03T00:00:00", "generation_mw": {"coal": 5}}'),
        (
            b"XC",
            b'{"region": "XC", "ts": "2026-03-03T00:00:00Z", "generation_mw": {"coal": 5}, "kind": "actual"}',
        ),
        (b"XC", b'{"region": "XC", "ts": "2026-03-03T00:00:00Z", "generation_mw": {"coal": -5}}'),
        (b"XC", b"not json"),
    ]
    good = _mix("XC", ts, {"gas.ccgt": 10, "solar": 10})
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(pipeline, [*bad, good], topic=pipeline.topic_grid)

        async def applied() -> object:
            n = await _count(pipeline, "SELECT count(*) FROM grid_intensity WHERE region = 'XC'")
            return n > 0 or n

        await wait_for(applied, 30, "the good record applied")
    finally:
        worker.terminate()
    dead = await read_topic(pipeline, pipeline.topic_deadletter)
    reasons = sorted(read_dead_letter(m.headers).reason for m in dead)
    assert reasons == sorted(
        ["unknown_fuel", "naive_timestamp", "ambiguous_record", "negative_value", "not_json"]
    )
    row = (
        await fetch(
            pipeline,
            "SELECT intensity_g_per_kwh, fossil_share, renewable_share, nonfossil_share FROM grid_intensity "
            "WHERE region = 'XC' AND factor_set = 'ipcc2014-lifecycle' AND basis = 'production'",
        )
    )[0]
    assert row["intensity_g_per_kwh"] == pytest.approx((490 + 45) / 2)  # gas.ccgt falls back to gas
    assert (row["fossil_share"], row["renewable_share"], row["nonfossil_share"]) == (0.5, 0.5, 0.5)
    assert not math.isnan(row["intensity_g_per_kwh"])
