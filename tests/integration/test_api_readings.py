"""The readings API over data that came through the real pipeline: order, UTC, paging, errors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from helpers import admin_headers, api_server, reading_stats, streaming, wait_for

from schemas.settings import Settings

pytestmark = pytest.mark.integration


async def test_readings_sites_meters_and_errors(pipeline: Settings, tmp_path: Path) -> None:
    site = "api-site1"
    # sent out of order, in both timestamp forms and both message forms
    readings = [
        {
            "site": site,
            "meter": "main",
            "ts": "2026-11-20T08:30:00+08:00",
            "energy_kwh": 12.0,
            "power_kw": 4.0,
        },
        {"site": site, "meter": "main", "ts": 1795132800000, "energy_kwh": 10.0},  # epoch ms of 00:00Z
        {
            "site": site,
            "meter": "main",
            "ts": "2026-11-20T00:15:00Z",
            "energy_kwh": 11.0,
            "quality": "estimated",
        },
    ]
    more = [
        {"site": site, "meter": "main", "ts": f"2026-11-20T01:{m:02d}:00Z", "power_kw": float(m)}
        for m in range(60)
    ]
    messages = [(site.encode(), json.dumps(r).encode()) for r in readings]
    messages.append((site.encode(), json.dumps({"readings": more}).encode()))
    messages.append(
        (
            b"api-site2",
            json.dumps({"site": "api-site2", "meter": "m", "ts": 1795132800000, "power_kw": 1}).encode(),
        )
    )
    async with (
        streaming(pipeline, messages, tmp_path / "worker.log") as (_, producing),
        api_server(pipeline) as base,
    ):
        await producing

        async def stored() -> bool | int:
            n = (await reading_stats(pipeline, {site, "api-site2"}))[0]
            return True if n >= 64 else n  # 63 of api-site1, 1 of api-site2

        await wait_for(stored, 60, "64 rows")
        async with httpx.AsyncClient(base_url=base, headers=await admin_headers(pipeline)) as client:
            url = f"/v1/sites/{site}/meters/main/readings"
            window = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-20T01:00:00Z"}
            body = (await client.get(url, params=window)).json()
            assert [(i["ts"], i["energy_kwh"], i["quality"]) for i in body["items"]] == [
                ("2026-11-20T00:00:00Z", 10.0, "ok"),
                ("2026-11-20T00:15:00Z", 11.0, "estimated"),
                ("2026-11-20T00:30:00Z", 12.0, "ok"),
            ]
            assert body["next_cursor"] is None
            # end is exclusive, start inclusive, offsets honoured
            body = (
                await client.get(
                    url, params={"start": "2026-11-20T08:15:00+08:00", "end": "2026-11-20T00:30:00Z"}
                )
            ).json()
            assert [i["ts"] for i in body["items"]] == ["2026-11-20T00:15:00Z"]
            # paging returns every row exactly once, in order
            seen: list[str] = []
            params = {"start": "2026-11-20T00:00:00Z", "end": "2026-11-21T00:00:00Z", "limit": "7"}
            cursor = None
            while True:
                page = (
                    await client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
                ).json()
                seen += [i["ts"] for i in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == 63 and seen == sorted(seen) and len(set(seen)) == 63
            # sites and meters
            sites = (await client.get("/v1/sites", params={"limit": 1})).json()
            assert len(sites["items"]) == 1 and sites["next_cursor"]
            one = (await client.get(f"/v1/sites/{site}")).json()
            assert one["auto_registered"] is True and one["meters"] == 1
            meters = (await client.get(f"/v1/sites/{site}/meters")).json()
            assert [m["meter"] for m in meters] == ["main"]
            assert meters[0]["last_reading_at"] == "2026-11-20T01:59:00Z"
            # errors: one shape, the field named
            missing = await client.get("/v1/sites/nope")
            assert missing.status_code == 404
            assert missing.json() == {
                "error": {"code": "not_found", "message": "site 'nope' not found", "field": None}
            }
            assert (await client.get("/v1/sites/nope/meters/main/readings", params=window)).status_code == 404
            assert (
                await client.get(f"/v1/sites/{site}/meters/ghost/readings", params=window)
            ).status_code == 404
            for params, field in [
                ({**window, "start": "garbage"}, "start"),
                ({**window, "start": "2026-11-20T00:00:00"}, "start"),
                ({"start": window["end"], "end": window["start"]}, "end"),
                ({**window, "limit": "0"}, "limit"),
                ({**window, "limit": "1000000"}, "limit"),
                ({"end": window["end"]}, "start"),
            ]:
                r = await client.get(url, params=params)
                assert r.status_code == 422, (params, r.text)
                assert r.json()["error"]["field"] == field
            spaced = await client.get("/v1/sites/has%20space")
            assert spaced.status_code == 422
            assert (await client.get("/readyz")).json()["status"] == "ready"
            metrics = (await client.get("/metrics")).text
            assert "wattstream_api_request_seconds_count" in metrics
            openapi = (await client.get("/openapi.json")).json()
            assert "/v1/sites/{site}/meters/{meter}/readings" in openapi["paths"]
