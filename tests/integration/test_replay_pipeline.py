"""Real data through the real pipeline: `wattstream replay` into Kafka, the worker into TimescaleDB,
and the energy totals equal to the source files'."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg
import pytest
from helpers import ROOT, Worker, reading_stats, settings_env, wait_for

from schemas.settings import Settings

pytestmark = pytest.mark.integration

DATA = ROOT.parent / "shared" / "data"


async def _replay(s: Settings, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wattstream",
        "replay",
        *args,
        env=settings_env(s),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_replayed_buildings_and_server_match_their_files(pipeline: Settings, tmp_path: Path) -> None:
    worker = Worker(pipeline, tmp_path / "worker.log")
    worker.start()
    try:
        out = await _replay(
            pipeline,
            "cambridge",
            str(DATA / "buildings" / "cambridge_b2_electricity_2021.csv"),
            "--site",
            "uk-b2",
            "--site-timezone",
            "Europe/London",
            "--region",
            "GB",
        )
        assert "8715 readings" in out
        assert "skipped 46 × zero_value_treated_as_missing" in out
        out = await _replay(
            pipeline,
            "biohpc",
            str(DATA / "datacentre" / "biohpc_cbsugpu10_hourly_usage_stats.tsv"),
            "--site",
            "us-gpu10",
        )
        assert "8693 readings" in out
        assert "ambiguous_local_time" in out

        async def stored() -> bool | int:
            n = (await reading_stats(pipeline, {"uk-b2", "us-gpu10"}))[0]
            return True if n >= 8715 + 8693 else n

        await wait_for(stored, 120, "all replayed rows")
        conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
        try:

            async def energy(site: str) -> float:
                return float(
                    await conn.fetchval(
                        """SELECT sum(kwh) FROM energy_interval e JOIN meters m USING (meter_id)
                            WHERE m.site_id = $1""",
                        site,
                    )
                )

            async def settled() -> bool | float:
                e = await energy("uk-b2")
                return True if abs(e - 7454688.7) < 1e-3 else e

            await wait_for(settled, 60, "the building's annual energy")
            site = await conn.fetchrow("SELECT timezone, region, kind FROM sites WHERE site_id = 'uk-b2'")
            assert tuple(site) == ("Europe/London", "GB", "building")
            gpu = await conn.fetchrow("SELECT role FROM meters WHERE site_id = 'us-gpu10'")
            assert gpu["role"] == "it_load"
            # a server drawing tens to hundreds of watts for a year: a few hundred kWh, gaps excluded
            assert 50 < await energy("us-gpu10") < 3000
            gaps = await conn.fetchval(
                """SELECT count(*) FROM energy_interval e JOIN meters m USING (meter_id)
                    WHERE m.site_id = 'us-gpu10' AND e.coverage_s < 900""",
            )
            assert gaps > 0, "the file's 2- to 20-hour holes are reported as missing coverage"
        finally:
            await conn.close()
    finally:
        worker.kill()
