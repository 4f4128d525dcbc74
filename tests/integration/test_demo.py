"""`wattstream up`, the demo's engine, as a user runs it: everything comes up, data flows from the
simulator through Kafka into the database and out of the API, metrics from every process show on
the API's /metrics, and Ctrl-C stops it all cleanly."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest
from helpers import ROOT, free_port, settings_env, wait_for

from schemas.settings import Settings

pytestmark = pytest.mark.integration


async def test_up_runs_everything_until_ctrl_c(pipeline: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = settings_env(
        pipeline,
        WATTSTREAM_API_PORT=str(port),
        WATTSTREAM_INGEST_METRICS_PORT=str(free_port()),
        WATTSTREAM_CACHE=str(tmp_path),  # as the demo: up picks the shared metrics directory itself
    )
    log = (tmp_path / "up.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wattstream",
        "up",
        "--sites",
        "4",
        "--rate",
        "400",
        "--speedup",
        "120",
        "--data-dir",
        str(ROOT.parent / "shared" / "data"),
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool | str:
                try:
                    r = await client.get("/readyz")
                except httpx.TransportError as exc:
                    return repr(exc)
                return r.status_code == 200 or r.text

            await wait_for(ready, 90, "the API to be ready")
            # the demo prints ready keys: an admin's, and a manager's who sees one district only
            printed = (tmp_path / "up.log").read_text()
            admin = re.search(r"admin key \(everything\): (ws_\S+)", printed)
            manager = re.search(r"manager key \(tenant hz-xihu only\): (ws_\S+)", printed)
            assert admin is not None and manager is not None, printed[-2000:]
            assert (await client.get("/v1/sites")).status_code == 401
            client.headers["Authorization"] = f"Bearer {admin[1]}"

            async def flowing() -> bool | object:
                sites = (await client.get("/v1/sites")).json()["items"]
                if len(sites) < 4:
                    return sites
                metrics = (await client.get("/metrics")).text
                consumed = [
                    line
                    for line in metrics.splitlines()
                    if line.startswith("wattstream_ingest_messages_consumed_total{")
                    and not line.endswith(" 0.0")
                ]
                return bool(consumed) or "no ingest counters on the API's /metrics yet"

            await wait_for(flowing, 90, "sites and ingest metrics")
            mine = (await client.get("/v1/sites", headers={"Authorization": f"Bearer {manager[1]}"})).json()[
                "items"
            ]
            assert mine and {x["tenant"] for x in mine} == {"hz-xihu"}
            theirs = await client.get("/v1/sites/hz-b002", headers={"Authorization": f"Bearer {manager[1]}"})
            assert theirs.status_code == 404  # another district's building: as if it did not exist
            meters = (await client.get("/v1/sites/hz-b001/meters")).json()
            assert {(m["meter"], m["role"]) for m in meters} >= {("main", "main"), ("sub-hvac", "sub_item")}
            rules = (await client.get("/v1/alert-rules")).json()
            # the demo's five rules, each once by name (other tests of the session share the
            # database, and an admin may create a rule under any name, a demo one's included)
            assert len({r["name"] for r in rules if r["name"].startswith("demo:")}) == 5, sorted(
                r["name"] for r in rules
            )

            async def replayed() -> bool | object:
                r = await client.get(
                    "/v1/sites/uk-b10/energy",
                    params={
                        "start": "2021-01-01T00:00:00Z",
                        "end": "2022-01-01T00:00:00Z",
                        "resolution": "month",
                    },
                )
                if r.status_code != 200:
                    return r.text
                total = r.json()["total_kwh"]
                return abs(total - 55371.3) < 1e-6 or total

            await wait_for(replayed, 90, "the Cambridge building's 2021 energy, replayed")
            months = (
                await client.get(
                    "/v1/sites/uk-b10/energy",
                    params={
                        "start": "2021-01-01T00:00:00Z",
                        "end": "2022-01-01T00:00:00Z",
                        "resolution": "month",
                    },
                )
            ).json()["buckets"]
            assert (
                len(months) == 12 and months[3]["start"] == "2021-03-31T23:00:00Z"
            )  # April, London summer time

            async def grid_carbon() -> bool | object:
                r = await client.get("/v1/grid/CN-ZJ/intensity/now")
                if r.status_code != 200:
                    return r.text
                bases = {(p["factor_set"], p["basis"]) for p in r.json()["intensities"]}
                return ("ipcc2014-lifecycle", "consumption") in bases or bases

            await wait_for(grid_carbon, 90, "the simulated grid's intensity")

            async def emissions() -> bool | object:
                r = await client.get(
                    "/v1/sites/hz-b001/emissions",
                    params={
                        "start": "2000-01-01T00:00:00Z",
                        "end": "2100-01-01T00:00:00Z",
                        "resolution": "month",
                    },
                )
                body = r.json()
                return (r.status_code == 200 and body["quality"].get("measured", 0) > 0) or body

            await wait_for(emissions, 90, "a simulated site's time-matched emissions")

            async def australia() -> bool | object:
                r = await client.get("/v1/grid/AU-SA/intensity/now")
                if r.status_code != 200:
                    return r.text
                return "em-AU-SA-lifecycle" in {p["factor_set"] for p in r.json()["intensities"]} or r.json()

            await wait_for(australia, 90, "the replayed South Australian grid, with its zone's factors")

            async def cambridge_carbon() -> bool | object:
                r = await client.get(
                    "/v1/sites/uk-b10/emissions",
                    params={
                        "start": "2021-01-01T00:00:00Z",
                        "end": "2022-01-01T00:00:00Z",
                        "resolution": "month",
                    },
                )
                body = r.json()
                if r.status_code != 200:
                    return body
                published = {s for b in body["buckets"] for s in b["intensity_sources"]}
                # GB publishes intensity only: the building's 2021 energy meets NESO's 2021 values
                return (body["quality"].get("measured", 0) > 8000 and published == {"published"}) or body[
                    "quality"
                ]

            await wait_for(
                cambridge_carbon, 120, "the Cambridge building's emissions from GB's published intensity"
            )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert "stopped" in (tmp_path / "up.log").read_text()
