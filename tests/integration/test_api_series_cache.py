"""Energy series answers kept in the API process between site events, against the real pipeline:
kept for the next identical request, dropped by the site's next live event (not by expiry), never
shown to a key that may not see the site, and skipped on `Cache-Control: no-cache`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from helpers import Worker, api_server, make_key, produce, wait_for

from ingest.registry import MeterRecord, SiteRecord, register
from schemas.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = {"start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00Z", "resolution": "15min"}


def _readings(site: str, ks: range) -> list[tuple[bytes, bytes]]:
    return [
        (site.encode(), msgspec.json.encode({
            "site": site, "meter": "main", "ts": (T0 + timedelta(minutes=5 * k)).isoformat(),
            "energy_kwh": 100 + 2 * k, "power_kw": 24.0,
        }))
        for k in ks
    ]  # fmt: skip


async def test_series_answers_are_kept_until_the_sites_next_event(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update={"api_series_cache_s": 600.0})  # expiry must not be what drops them
    await register(
        s.database_url.get_secret_value(),
        [
            SiteRecord("qc-a1", region="QC-R", tenant="qc-a"),
            SiteRecord("qc-b1", region="QC-R", tenant="qc-b"),
        ],
        [MeterRecord("qc-a1", "main"), MeterRecord("qc-b1", "main")],
    )
    a = {"Authorization": f"Bearer {await make_key(s, 'manager', tenant='qc-a')}"}
    b = {"Authorization": f"Bearer {await make_key(s, 'manager', tenant='qc-b')}"}
    url = "/v1/sites/qc-a1/meters/main/energy"
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, _readings("qc-a1", range(7)))  # 00:00 to 00:30
        async with api_server(s) as base, httpx.AsyncClient(base_url=base) as client:

            async def total() -> float:
                return float((await client.get(url, params=WINDOW, headers=a)).json()["total_kwh"])

            async def first_batch_in() -> bool:
                return await total() == 12.0

            await wait_for(first_batch_in, 30, "the first readings' energy")
            first = await client.get(url, params=WINDOW, headers=a)

            async def kept() -> bool:  # once the API's stream consumer has caught up (about 2 s)
                return (await client.get(url, params=WINDOW, headers=a)).headers["x-cache"] == "hit"

            await wait_for(kept, 15, "an answer kept")
            again = await client.get(url, params=WINDOW, headers=a)
            assert again.headers["x-cache"] == "hit" and again.content == first.content
            site_wide = [
                await client.get("/v1/sites/qc-a1/energy", params=WINDOW, headers=a) for _ in range(2)
            ]
            assert site_wide[1].headers["x-cache"] == "hit" and site_wide[1].json()["total_kwh"] == 12.0

            # another tenant's key: the 404 of a missing site, kept answer or not
            hidden = await client.get(url, params=WINDOW, headers=b)
            missing = await client.get("/v1/sites/qc-nope/meters/main/energy", params=WINDOW, headers=b)
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
            assert "x-cache" not in hidden.headers
            # asked past the cache: the database answers
            fresh = await client.get(url, params=WINDOW, headers={**a, "Cache-Control": "no-cache"})
            assert fresh.headers["x-cache"] == "miss" and fresh.json()["total_kwh"] == 12.0
            # CSV is never kept
            csv = await client.get(url, params=WINDOW, headers={**a, "Accept": "text/csv"})
            assert csv.status_code == 200 and "x-cache" not in csv.headers

            # new readings for the site: its next live event drops what was kept
            await produce(s, _readings("qc-a1", range(7, 13)))  # to 01:00

            async def second_batch_in() -> bool:
                return await total() == 24.0

            await wait_for(second_batch_in, 30, "the new energy, answered without Cache-Control")
            after = await client.get(url, params=WINDOW, headers=a)
            assert after.headers["x-cache"] == "hit" and after.json()["total_kwh"] == 24.0
            assert (await client.get("/v1/sites/qc-a1/energy", params=WINDOW, headers=a)).json()[
                "total_kwh"
            ] == 24.0
            metrics = (await client.get("/metrics")).text
            assert 'wattstream_api_series_cache_total{outcome="hit"}' in metrics
            assert 'wattstream_api_series_cache_total{outcome="stale"}' in metrics
    finally:
        worker.terminate()


async def test_a_site_moved_to_another_tenant_is_hidden_at_once(pipeline: Settings, tmp_path: Path) -> None:
    """The registry announces the change (migration 008): the old tenant's key stops getting the
    kept answer and gets the 404 of a missing site, well before any periodic reload."""
    s = pipeline.model_copy(update={"api_series_cache_s": 600.0, "api_site_refresh_s": 600.0})
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord("qm-a1", region="QM-R", tenant="qm-a")],
        [MeterRecord("qm-a1", "main")],
    )
    a = {"Authorization": f"Bearer {await make_key(s, 'manager', tenant='qm-a')}"}
    b = {"Authorization": f"Bearer {await make_key(s, 'manager', tenant='qm-b')}"}
    url = "/v1/sites/qm-a1/meters/main/energy"
    async with api_server(s) as base, httpx.AsyncClient(base_url=base) as client:

        async def kept() -> bool | int:
            r = await client.get(url, params=WINDOW, headers=a)
            return r.headers.get("x-cache") == "hit" or r.status_code

        await wait_for(kept, 15, "an answer kept for tenant qm-a")
        assert (await client.get(url, params=WINDOW, headers=b)).status_code == 404
        owner = await asyncpg.connect(s.migrate_database_url.get_secret_value())
        try:
            await owner.execute("UPDATE sites SET tenant = 'qm-b' WHERE site_id = 'qm-a1'")
        finally:
            await owner.close()

        async def moved() -> bool | str:
            old = await client.get(url, params=WINDOW, headers=a)
            new = await client.get(url, params=WINDOW, headers=b)
            return (old.status_code, new.status_code) == (404, 200) or f"{old.status_code} {new.status_code}"

        await wait_for(moved, 5, "the old tenant's 404 and the new tenant's answer", interval=0.1)
        gone = await client.get(url, params=WINDOW, headers=a)
        missing = await client.get("/v1/sites/qm-nope/meters/main/energy", params=WINDOW, headers=a)
        assert gone.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
        assert "x-cache" not in gone.headers
