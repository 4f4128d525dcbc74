"""Interval energy in-stream against real Kafka and TimescaleDB: whatever order readings arrive
in (late, duplicated, corrected, across worker restarts), the stored buckets equal a batch
computation over the raw readings, and the API's local-day rollups follow the site's zone."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest
from helpers import admin_headers, api_server, reading_stats, streaming, wait_for

from core.energy import interval_energy
from schemas.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 27, 16, 0, tzinfo=UTC)  # spans the UK's DST change on 2026-03-29


def _register_stream(site: str, meters: int, n: int, seed: int) -> tuple[list[tuple[bytes, bytes]], float]:
    """Irregular cumulative registers with transient dips and refused spikes, then shuffled within
    a window (late data), with duplicates. Dips and spikes change no total: the next good reading
    measures from the last good one."""
    rng = random.Random(seed)
    per_meter: list[list[tuple[bytes, bytes]]] = []
    total = 0.0
    for m in range(meters):
        t, e = T0, 5000.0 * (m + 1)
        readings = []
        for i in range(n):
            dt = rng.choice([60, 300, 420, 900, 1300])
            t += timedelta(seconds=dt)
            glitch = rng.random() if 0 < i < n - 1 else 1.0  # the first and last readings are good
            if glitch < 0.03:
                value = round(e - rng.uniform(0.1, 5), 4)  # a transient dip
            elif glitch < 0.05:
                value = round(e + 50_000, 4)  # far beyond max_power_kw over any of these spans
            else:
                e = round(e + rng.uniform(0, 0.02) * dt, 4)  # at most 72 kW
                value = e
            r = {"site": site, "meter": f"m{m}", "ts": t.isoformat(), "energy_kwh": value}
            readings.append((site.encode(), json.dumps(r).encode()))
        total += e - json.loads(readings[0][1])["energy_kwh"]
        per_meter.append(readings)
    # each meter's first reading arrives first; the rest interleave and arrive out of order
    head = [readings[0] for readings in per_meter]
    tail = [msg for group in zip(*(readings[1:] for readings in per_meter), strict=True) for msg in group]
    for i in range(0, len(tail) - 24, 24):
        window = tail[i : i + 24]
        rng.shuffle(window)
        tail[i : i + 24] = window
    dupes = [tail[rng.randrange(len(tail))] for _ in range(20)]
    return head + tail + dupes, total


async def _oracle_matches(s: Settings, site: str) -> None:
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        raw = await conn.fetch(
            """SELECT r.meter_id, (extract(epoch FROM r.ts) * 1000000)::bigint AS ts,
                      r.energy_kwh, m.max_power_kw
                 FROM readings r JOIN meters m USING (meter_id)
                WHERE m.site_id = $1 ORDER BY r.meter_id, r.ts""",
            site,
        )
        stored = await conn.fetch(
            """SELECT e.meter_id, (extract(epoch FROM e.bucket_start) * 1000000)::bigint AS b,
                      e.kwh, e.coverage_s, e.n, e.quality
                 FROM energy_interval e JOIN meters m USING (meter_id) WHERE m.site_id = $1
                ORDER BY e.meter_id, e.bucket_start""",
            site,
        )
    finally:
        await conn.close()
    n = len(raw)
    nan = np.full(n, np.nan)
    oracle = interval_energy(
        np.array([r["meter_id"] for r in raw], dtype=np.int64),
        np.array([r["ts"] for r in raw], dtype=np.int64),
        np.array([r["energy_kwh"] for r in raw], dtype=np.float64),
        nan,
        multiplier=np.ones(n),
        rollover_kwh=nan,
        max_power_kw=np.array([r["max_power_kw"] or np.nan for r in raw], dtype=np.float64),
        bucket_s=s.energy_bucket_s,
        gap_s=s.energy_gap_s,
    ).buckets
    assert [(r["meter_id"], r["b"]) for r in stored] == list(
        zip(oracle.meter.tolist(), oracle.bucket_start_us.tolist(), strict=True)
    )
    assert [r["kwh"] for r in stored] == pytest.approx(oracle.kwh.tolist(), rel=1e-9, abs=1e-9)
    assert [r["coverage_s"] for r in stored] == pytest.approx(oracle.coverage_s.tolist())
    assert [r["n"] for r in stored] == oracle.n.tolist()
    assert [r["quality"] for r in stored] == oracle.quality.tolist()


async def test_late_and_duplicate_readings_equal_the_batch_oracle(pipeline: Settings, tmp_path: Path) -> None:
    site = "en-late"
    messages, total = _register_stream(site, meters=3, n=400, seed=5)
    conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
    try:
        await conn.execute("INSERT INTO sites (site_id) VALUES ($1)", site)
        await conn.execute(
            """INSERT INTO meters (site_id, meter, max_power_kw)
               SELECT $1, 'm' || i, 150 FROM generate_series(0, 2) i""",
            site,
        )
    finally:
        await conn.close()
    log = tmp_path / "worker.log"
    async with streaming(pipeline, messages, log, seconds=4) as (worker, producing):
        await producing
        await wait_for(lambda: _at_least(pipeline, {site}, 1200), 60, "1200 rows")
        await _oracle_matches(pipeline, site)
        conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
        try:
            stored_total = await conn.fetchval(
                "SELECT sum(kwh) FROM energy_interval e JOIN meters m USING (meter_id) WHERE m.site_id = $1",
                site,
            )
        finally:
            await conn.close()
        # totals over any range equal the sum of the register deltas
        assert stored_total == pytest.approx(total, rel=1e-9)
        conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
        try:
            suspect = await conn.fetchval(
                """SELECT count(*) FROM readings r JOIN meters m USING (meter_id)
                    WHERE m.site_id = $1 AND quality = 2""",
                site,
            )
        finally:
            await conn.close()
        assert suspect > 0, "refused spikes are flagged suspect in the raw table"
        assert worker.alive()


@asynccontextmanager
async def _stored_and_served(
    s: Settings, messages: list[tuple[bytes, bytes]], site: str, rows: int, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """Stream the messages through a worker, wait until `rows` rows are stored, then serve the API."""
    async with streaming(s, messages, tmp_path / "worker.log") as (_, producing), api_server(s) as base:
        await producing
        await wait_for(lambda: _at_least(s, {site}, rows), 60, f"{rows} rows")
        async with httpx.AsyncClient(base_url=base, headers=await admin_headers(s)) as client:
            yield client


async def _at_least(s: Settings, sites: set[str], n: int) -> bool | int:
    rows = (await reading_stats(s, sites))[0]
    return True if rows >= n else rows


async def _steady_site(
    s: Settings, site: str, zone: str, start: datetime, quarters: int
) -> list[tuple[bytes, bytes]]:
    """Register `site` in `zone`; its main meter's register readings, a steady 1 kWh every 15
    minutes from `start` for `quarters` quarter hours."""
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        await conn.execute("INSERT INTO sites (site_id, timezone) VALUES ($1, $2)", site, zone)
    finally:
        await conn.close()
    messages = []
    for k in range(quarters + 1):
        t = start + timedelta(minutes=15 * k)
        r = {"site": site, "meter": "main", "ts": int(t.timestamp() * 1000), "energy_kwh": 100.0 + k}
        messages.append((site.encode(), json.dumps(r).encode()))
    return messages


async def test_local_days_follow_the_site_zone(pipeline: Settings, tmp_path: Path) -> None:
    """A London site: the local day of 2026-03-29 has 23 hours and its energy is exactly that day's."""
    site = "en-london"
    # 2026-03-28 00:00Z to 2026-03-31 00:00Z
    messages = await _steady_site(pipeline, site, "Europe/London", datetime(2026, 3, 28, tzinfo=UTC), 3 * 96)
    async with _stored_and_served(pipeline, messages, site, len(messages), tmp_path) as client:
        r = await client.get(
            f"/v1/sites/{site}/meters/main/energy",
            params={
                "start": "2026-03-28T00:00:00Z",
                "end": "2026-03-31T00:00:00+01:00",
                "resolution": "day",
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        days = [(b["start"], b["end"], b["kwh"], b["quality"]) for b in body["buckets"]]
        assert days == [
            ("2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z", 96.0, "measured"),
            ("2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z", 92.0, "measured"),  # 23 local hours
            ("2026-03-29T23:00:00Z", "2026-03-30T23:00:00Z", 96.0, "measured"),
        ]
        assert body["timezone"] == "Europe/London"
        site_r = await client.get(
            f"/v1/sites/{site}/energy",
            params={
                "start": "2026-03-28T00:00:00Z",
                "end": "2026-03-31T00:00:00Z",
                "resolution": "month",
            },
        )
        assert site_r.status_code == 200
        assert site_r.json()["total_kwh"] == pytest.approx(3 * 96)
        bad = await client.get(
            f"/v1/sites/{site}/energy",
            params={
                "start": "2020-01-01T00:00:00Z",
                "end": "2026-01-01T00:00:00Z",
                "resolution": "15min",
            },
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "end"


async def test_reading_beyond_the_lateness_limit_is_quarantined(pipeline: Settings, tmp_path: Path) -> None:
    site = "en-tardy"
    day = 86_400_000
    t0 = 1_764_000_000_000
    on_time = [
        {"site": site, "meter": "main", "ts": t0 + k * day, "energy_kwh": 100.0 * k} for k in range(11)
    ]
    late_ok = {"site": site, "meter": "main", "ts": t0 + 9 * day + day // 2, "energy_kwh": 950.0}
    too_late = {"site": site, "meter": "main", "ts": t0 + day + day // 2, "energy_kwh": 150.0}
    messages = [(site.encode(), json.dumps(r).encode()) for r in [*on_time, late_ok, too_late]]
    async with streaming(pipeline, messages, tmp_path / "worker.log") as (_, producing):
        await producing
        await wait_for(lambda: _at_least(pipeline, {site}, 12), 60, "12 rows")
        conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
        try:

            async def quarantined() -> bool | int:
                n = await conn.fetchval("SELECT count(*) FROM quarantine WHERE site_id = $1", site)
                return True if n >= 1 else n

            await wait_for(quarantined, 30, "the quarantined reading")
            q = await conn.fetchrow("SELECT * FROM quarantine WHERE site_id = $1", site)
            assert q["reason"] == "too_late"
            assert q["energy_kwh"] == 150.0
            assert q["topic"] == pipeline.topic_readings
            assert (await reading_stats(pipeline, {site}))[0] == 12  # on time + the late one within the limit
            total = await conn.fetchval(
                "SELECT sum(kwh) FROM energy_interval e JOIN meters m USING (meter_id) WHERE m.site_id = $1",
                site,
            )
            assert total == pytest.approx(1000.0)
        finally:
            await conn.close()


async def test_site_now_and_sub_meter_balance(pipeline: Settings, tmp_path: Path) -> None:
    """Main meter 100 kW; sub-items 40 + 30 + 20 kW: 10 % unmetered, flagged above the 5 % tolerance."""
    site = "en-balance"
    conn = await asyncpg.connect(pipeline.migrate_database_url.get_secret_value())
    try:
        await conn.execute("INSERT INTO sites (site_id, timezone) VALUES ($1, 'Asia/Shanghai')", site)
        await conn.execute(
            """INSERT INTO meters (site_id, meter, role, sub_item) VALUES
               ($1, 'main', 'main', NULL), ($1, 'light', 'sub_item', '照明插座'),
               ($1, 'hvac', 'sub_item', '空调'), ($1, 'power', 'sub_item', '动力')""",
            site,
        )
    finally:
        await conn.close()
    loads = {"main": 100.0, "light": 40.0, "hvac": 30.0, "power": 20.0}
    start = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # local midnight in Shanghai
    messages = []
    for k in range(9):  # 2 hours of 15-minute register readings
        t = start + timedelta(minutes=15 * k)
        batch = [
            {"site": site, "meter": m, "ts": t.isoformat(), "energy_kwh": kw * k / 4, "power_kw": kw}
            for m, kw in loads.items()
        ]
        messages.append((site.encode(), json.dumps({"readings": batch}).encode()))
    async with _stored_and_served(pipeline, messages, site, 36, tmp_path) as client:
        r = await client.get(
            f"/v1/sites/{site}/balance",
            params={
                "start": "2026-11-24T00:00:00+08:00",
                "end": "2026-11-24T02:00:00+08:00",
                "resolution": "hour",
            },
        )
        assert r.status_code == 200, r.text
        hours = r.json()["buckets"]
        assert len(hours) == 2
        for h in hours:
            assert h["main_kwh"] == pytest.approx(100.0)
            assert h["sub_items_kwh"] == pytest.approx({"照明插座": 40.0, "空调": 30.0, "动力": 20.0})
            assert h["unmetered_kwh"] == pytest.approx(10.0)
            assert h["unmetered_share"] == pytest.approx(0.10)
            assert h["flagged"] is True
        sub = await client.get(
            f"/v1/sites/{site}/energy",
            params={
                "start": "2026-11-24T00:00:00+08:00",
                "end": "2026-11-24T02:00:00+08:00",
                "resolution": "day",
                "sub_item": "空调",
            },
        )
        assert sub.json()["total_kwh"] == pytest.approx(60.0)
        main = await client.get(
            f"/v1/sites/{site}/energy",
            params={"start": "2026-11-24T00:00:00+08:00", "end": "2026-11-24T02:00:00+08:00"},
        )
        assert main.json()["total_kwh"] == pytest.approx(200.0), "sub-meters never add to the site total"
        now = (await client.get(f"/v1/sites/{site}/now")).json()
        assert now["power_kw"] == pytest.approx(100.0)
        assert now["meters_reporting"] == 1
        assert now["as_of"] == "2026-11-23T18:00:00Z"
        assert (await client.get("/v1/sites/nope/now")).status_code == 404
        window = {"start": "2026-11-24T00:00:00+08:00", "end": "2026-11-24T02:00:00+08:00"}
        many = await client.get("/v1/energy", params=[("site", site), ("site", site), *window.items()])
        assert many.status_code == 200, many.text
        assert [(e["site"], e["total_kwh"]) for e in many.json()] == [(site, pytest.approx(200.0))]
        missing = await client.get("/v1/energy", params=[("site", site), ("site", "nope"), *window.items()])
        assert missing.status_code == 404
        too_many = await client.get(
            "/v1/energy", params=[*(("site", f"s{i}") for i in range(101)), *window.items()]
        )
        assert too_many.status_code == 422
        assert too_many.json()["error"]["field"] == "site"
        newline = await client.get("/v1/energy", params=[("site", f"{site}\n"), *window.items()])
        assert newline.status_code == 422, "an id with a trailing newline is not an id"
        assert newline.json()["error"]["field"] == "site"


async def test_half_hour_buckets_answer_hours_and_refuse_quarters(pipeline: Settings, tmp_path: Path) -> None:
    """With WATTSTREAM_ENERGY_BUCKET_S=1800 (worker and API alike) the stored buckets are half
    hours: every energy route refuses `15min`, naming `resolution`, and a local hour is two of
    them. Kolkata (+05:30) puts local hours on the UTC half hours."""
    s = pipeline.model_copy(update={"energy_bucket_s": 1800})
    site = "en-halfhour"
    start = datetime(2026, 11, 20, tzinfo=UTC)
    messages = await _steady_site(s, site, "Asia/Kolkata", start, 8 * 4)  # to 08:00Z
    window = {"start": "2026-11-20T06:00:00+05:30", "end": "2026-11-20T12:00:00+05:30"}
    async with _stored_and_served(s, messages, site, len(messages), tmp_path) as client:
        conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
        try:
            stored = await conn.fetch(
                """SELECT extract(epoch FROM e.bucket_start)::bigint AS b, e.kwh
                     FROM energy_interval e JOIN meters m USING (meter_id)
                    WHERE m.site_id = $1 AND e.bucket_start < $2 ORDER BY 1""",
                site,
                start + timedelta(hours=8),
            )
        finally:
            await conn.close()
        assert len(stored) == 16
        assert all(r["b"] % 1800 == 0 and r["kwh"] == pytest.approx(2.0) for r in stored)

        quarters = {**window, "resolution": "15min"}
        for url, params in [
            (f"/v1/sites/{site}/meters/main/energy", quarters),
            (f"/v1/sites/{site}/energy", quarters),
            ("/v1/energy", {**quarters, "site": site}),
            (f"/v1/sites/{site}/balance", quarters),
            (f"/v1/sites/{site}/emissions", quarters),
            (f"/v1/sites/{site}/pue", quarters),
        ]:
            r = await client.get(url, params=params)
            assert r.status_code == 422, (url, r.text)
            error = r.json()["error"]
            assert (error["code"], error["field"]) == ("invalid_parameter", "resolution"), url
            assert "1800 s" in error["message"] and "hour, day, month" in error["message"]

        expected = [
            (f"2026-11-20T{h:02d}:30:00Z", f"2026-11-20T{h + 1:02d}:30:00Z", 4.0, 1.0, "measured")
            for h in range(6)
        ]
        hourly = {**window, "resolution": "hour"}
        for url in (f"/v1/sites/{site}/meters/main/energy", f"/v1/sites/{site}/energy"):
            r = await client.get(url, params=hourly, headers={"Cache-Control": "no-cache"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["resolution"] == "hour"
            got = [(b["start"], b["end"], b["kwh"], b["coverage"], b["quality"]) for b in body["buckets"]]
            assert got == expected, url
            assert (body["total_kwh"], body["coverage"]) == (24.0, 1.0)
        day = await client.get(f"/v1/sites/{site}/energy", params={**window, "resolution": "day"})
        assert day.status_code == 200, day.text
        assert day.json()["total_kwh"] == pytest.approx(24.0)
