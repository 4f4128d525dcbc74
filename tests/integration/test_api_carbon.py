"""The grid and emissions API over data that came through the real pipeline: intensity now and
as known before a revision, mixes, shares against targets, the lowest-carbon window, and site
emissions location- and market-based, each naming its factor set and quality."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from helpers import Worker, admin_headers, api_server, produce, wait_for

from ingest.registry import MeterRecord, SiteRecord, register
from schemas.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
SITE = "api-carbon-1"
REGION = "CN-JS"
MIX = 0.7 * 820 + 0.3 * 11  # coal 700 MW, wind 300 MW, IPCC 2014 lifecycle medians
REVISED = 0.5 * 820 + 0.5 * 11


def _grid(record: dict[str, object]) -> tuple[bytes, bytes]:
    return REGION.encode(), msgspec.json.encode(record)


async def _current_emissions(s: Settings) -> list[str]:
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT quality, intensity_g_per_kwh FROM site_emissions WHERE site_id = $1 "
            "AND superseded_at IS NULL AND kwh > 0 ORDER BY bucket_start",
            SITE,
        )
        return [f"{r['quality']}:{round(r['intensity_g_per_kwh'] or 0, 3)}" for r in rows]
    finally:
        await conn.close()


async def test_grid_and_emissions_api(pipeline: Settings, tmp_path: Path) -> None:
    await register(
        pipeline.database_url.get_secret_value(),
        [SiteRecord(SITE, region=REGION, timezone="Asia/Shanghai")],
        [MeterRecord(SITE, "main")],
    )
    readings = [
        (
            SITE.encode(),
            msgspec.json.encode(
                {
                    "site": SITE,
                    "meter": "main",
                    "ts": (T0 + timedelta(minutes=5 * k)).isoformat(),
                    "energy_kwh": 500 + 100 * k / 12,
                }
            ),
        )
        for k in range(25)
    ]  # 100 kW for two hours: 25 kWh per 15-minute bucket
    mixes = [
        _grid(
            {
                "region": REGION,
                "ts": (T0 + timedelta(minutes=15 * k)).isoformat(),
                "interval_s": 900,
                "generation_mw": {"coal": 700, "wind": 300},
            }
        )
        for k in range(8)
    ]
    forecast = [500, 450, 300, 200, 250, 480, 520, 600]
    forecasts = [
        _grid(
            {
                "region": REGION,
                "ts": (T0 + timedelta(hours=2 + h)).isoformat(),
                "interval_s": 3600,
                "intensity_g_per_kwh": v,
                "kind": "forecast",
            }
        )
        for h, v in enumerate(forecast)
    ]
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    try:
        # intensity first, so the readings' emissions are measured when first written: the only
        # restatement below is the revision's (the reverse order restates every bucket)
        await produce(pipeline, mixes + forecasts, topic=pipeline.topic_grid)

        async def intensity_known() -> object:
            conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
            try:
                n = await conn.fetchval(
                    "SELECT count(DISTINCT ts) FROM grid_intensity"
                    " WHERE region = $1 AND basis = 'consumption'",
                    REGION,
                )
            finally:
                await conn.close()
            return n == 8 or n

        await wait_for(intensity_known, 60, "the region's intensity")
        await produce(pipeline, readings)

        async def measured() -> object:
            got = await _current_emissions(pipeline)
            return got == [f"measured:{round(MIX, 3)}"] * 8 or got

        await wait_for(measured, 60, "measured emissions")
        await asyncio.sleep(1.1)  # so that "before the revision" is a distinct time
        before_revision = datetime.now(UTC)
        await asyncio.sleep(0.1)
        await produce(
            pipeline,
            [
                _grid(
                    {
                        "region": REGION,
                        "ts": T0.isoformat(),
                        "interval_s": 900,
                        "generation_mw": {"coal": 500, "wind": 500},
                        "revision": 1,
                    }
                )
            ],
            topic=pipeline.topic_grid,
        )

        async def revised() -> object:
            got = await _current_emissions(pipeline)
            return got[0] == f"measured:{round(REVISED, 3)}" or got

        await wait_for(revised, 60, "the revision restated")
    finally:
        worker.terminate()

    headers = await admin_headers(pipeline)
    async with api_server(pipeline) as base, httpx.AsyncClient(base_url=base, headers=headers) as client:
        now = (await client.get(f"/v1/grid/{REGION}/intensity/now")).json()
        assert now["as_of"] == (T0 + timedelta(minutes=105)).isoformat().replace("+00:00", "Z")
        named = {(p["factor_set"], p["basis"]) for p in now["intensities"]}
        assert {("ipcc2014-lifecycle", "production"), ("ipcc2014-lifecycle", "consumption")} <= named
        assert {("ipcc2014-direct", "production"), ("ipcc2014-direct", "consumption")} <= named
        assert now["mix"]["by_fuel_mw"] == {"coal": 700, "wind": 300}
        assert [(t["year"], t["target_share"]) for t in now["targets"]] == [(2025, 0.24), (2030, 0.30)]
        assert now["targets"][0]["nonfossil_share"] == pytest.approx(0.3)
        assert now["targets"][0]["met"] is True and now["targets"][1]["met"] is True

        window = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat()}
        hist = (await client.get(f"/v1/grid/{REGION}/intensity", params=window)).json()
        assert hist["factor_set"] == "ipcc2014-lifecycle" and hist["basis"] == "consumption"
        assert [round(p["intensity_g_per_kwh"], 3) for p in hist["points"]] == [round(REVISED, 3)] + [
            round(MIX, 3)
        ] * 7
        assert hist["points"][0]["restated"] is True and hist["points"][0]["mix_revision"] == 1
        old = (
            await client.get(
                f"/v1/grid/{REGION}/intensity", params={**window, "as_of": before_revision.isoformat()}
            )
        ).json()
        assert old["points"][0]["intensity_g_per_kwh"] == pytest.approx(MIX)  # as known before
        hourly = (
            await client.get(f"/v1/grid/{REGION}/intensity", params={**window, "resolution": "hour"})
        ).json()
        assert hourly["points"][0]["intensity_g_per_kwh"] == pytest.approx(
            (REVISED * 1000 + MIX * 3000) / 4000
        )

        mixes_out = (await client.get(f"/v1/grid/{REGION}/mix", params=window)).json()
        assert len(mixes_out) == 8 and mixes_out[0]["revision"] == 1

        shares = (
            await client.get(
                f"/v1/grid/{REGION}/shares",
                params={**window, "resolution": "hour", "timezone": "Asia/Shanghai"},
            )
        ).json()
        assert shares["overall"]["nonfossil_share"] == pytest.approx((0.5 + 0.3 * 7) / 8)
        assert shares["overall"]["generation_mwh"] == pytest.approx(2000)

        best = (
            await client.get(
                f"/v1/grid/{REGION}/lowest-carbon-window",
                params={
                    "start": (T0 + timedelta(hours=2)).isoformat(),
                    "horizon_hours": 8,
                    "duration_minutes": 120,
                },
            )
        ).json()
        assert best["source"] == "forecast" and best["basis"] == "published"
        assert best["start"].startswith("2026-03-10T05:00:00") and best["end"].startswith(
            "2026-03-10T07:00:00"
        )
        assert best["mean_intensity_g_per_kwh"] == pytest.approx(225)
        assert best["horizon_mean_g_per_kwh"] == pytest.approx(sum(forecast) / 8)
        history = (
            await client.get(
                f"/v1/grid/{REGION}/lowest-carbon-window",
                params={
                    "start": (T0 + timedelta(days=1)).isoformat(),
                    "horizon_hours": 2,
                    "duration_minutes": 30,
                },
            )
        ).json()
        assert history["source"] == "history" and history["shifted_days"] == 1
        assert history["start"].startswith("2026-03-11T00:00:00")
        assert history["mean_intensity_g_per_kwh"] == pytest.approx((REVISED + MIX) / 2)

        cert = await client.post(
            f"/v1/sites/{SITE}/certificates",
            json={
                "kind": "green_power",
                "period_start": T0.isoformat(),
                "period_end": (T0 + timedelta(hours=2)).isoformat(),
                "mwh": 0.05,
                "reference": "GP-1",
            },
        )
        assert cert.status_code == 201, cert.text
        em = (await client.get(f"/v1/sites/{SITE}/emissions", params=window)).json()
        assert em["total_kwh"] == pytest.approx(200)
        assert em["location_tco2e"] == pytest.approx((25 * REVISED + 175 * MIX) / 1e6)
        # 50 kWh covered by green power; the other 150 at China's residual factor (0.5856 kg/kWh)
        assert em["certificates_mwh"] == pytest.approx(0.05)
        assert em["market_tco2e"] == pytest.approx(150 * 0.5856 / 1000)
        assert em["factor_sets"] == ["ipcc2014-lifecycle"] and em["quality"] == {"measured": 8}
        assert len(em["buckets"]) == 2  # local hours 08:00 and 09:00
        for b in em["buckets"]:
            assert b["factor_sets"] == ["ipcc2014-lifecycle"] and b["quality"] == "measured"
            assert b["intensity_sources"] == ["consumption"]
        assert em["buckets"][0]["restated"] is True and em["buckets"][1]["restated"] is False
        old_em = (
            await client.get(
                f"/v1/sites/{SITE}/emissions", params={**window, "as_of": before_revision.isoformat()}
            )
        ).json()
        assert old_em["location_tco2e"] == pytest.approx(200 * MIX / 1e6)
        as_csv = await client.get(
            f"/v1/sites/{SITE}/emissions", params=window, headers={"Accept": "text/csv"}
        )
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        lines = as_csv.text.splitlines()
        assert lines[0].startswith("site,start,end,kwh,location_kg,market_kg") and len(lines) == 3
        assert lines[1].split(",")[7:9] == ["measured", "ipcc2014-lifecycle"]
        energy_csv = await client.get(
            f"/v1/sites/{SITE}/energy", params=window, headers={"Accept": "text/csv"}
        )
        assert (
            energy_csv.text.splitlines()[0] == "site,meter,sub_item,start,end,kwh,coverage,quality,timezone"
        )
        assert sum(float(r.split(",")[5]) for r in energy_csv.text.splitlines()[1:]) == pytest.approx(200)
        certs = (await client.get(f"/v1/sites/{SITE}/certificates")).json()
        assert [c["reference"] for c in certs] == ["GP-1"]
        gone = await client.delete(f"/v1/sites/{SITE}/certificates/{certs[0]['certificate_id']}")
        assert gone.status_code == 204
        again = await client.delete(f"/v1/sites/{SITE}/certificates/{certs[0]['certificate_id']}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"

        missing = await client.get("/v1/grid/NOWHERE/intensity/now")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        bad = await client.get(
            f"/v1/grid/{REGION}/intensity", params={"start": window["end"], "end": window["start"]}
        )
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "end"
        naive = await client.get(
            f"/v1/sites/{SITE}/emissions", params={"start": "2026-03-10T00:00:00", "end": window["end"]}
        )
        assert naive.status_code == 422 and naive.json()["error"]["field"] == "start"
        bad_cert = await client.post(
            f"/v1/sites/{SITE}/certificates",
            json={
                "kind": "green_power",
                "period_start": window["end"],
                "period_end": window["start"],
                "mwh": 1,
            },
        )
        assert bad_cert.status_code == 422
