"""Prometheus (Debian's package, started by deploy/prometheus.sh) scrapes a running wattstream:
both targets are up and wattstream's own metrics are in its database."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import ROOT, Worker, api_server, free_port, produce, wait_for
from test_alerts import power_readings

from schemas.settings import Settings

pytestmark = pytest.mark.integration


async def _deploy(action: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash", str(ROOT / "deploy" / "prometheus.sh"), action, env=env
    )
    assert await proc.wait() == 0, f"deploy/prometheus.sh {action} failed"


async def test_prometheus_scrapes_wattstream(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update={"ingest_metrics_port": free_port()})
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    prom_port = free_port()
    try:
        await produce(s, power_readings("prom-site1", datetime(2026, 8, 1, tzinfo=UTC), [10, 11, 12]))
        async with api_server(s) as base:
            env = {
                **os.environ,
                "WATTSTREAM_CACHE": str(tmp_path / "cache"),
                "WATTSTREAM_PROMETHEUS_PORT": str(prom_port),
                "WATTSTREAM_API_PORT": str(urlsplit(base).port),
                "WATTSTREAM_INGEST_METRICS_PORT": str(s.ingest_metrics_port),
            }
            await _deploy("start", env)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{prom_port}") as prom:

                    async def targets_up() -> bool | object:
                        active = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
                        health = {t["labels"]["job"]: t["health"] for t in active}
                        return health == {"wattstream-api": "up", "wattstream-ingest": "up"} or health

                    await wait_for(targets_up, 60, "both wattstream targets up")

                    async def scraped() -> bool | object:
                        r = await prom.get(
                            "/api/v1/query",
                            params={
                                "query": 'wattstream_ingest_messages_consumed_total{job="wattstream-ingest"}'
                            },
                        )
                        result = r.json()["data"]["result"]
                        return sum(float(x["value"][1]) for x in result) >= 3 or result

                    await wait_for(scraped, 60, "the worker's consumed-messages counter in Prometheus")
                    api = await prom.get(
                        "/api/v1/query",
                        params={"query": 'wattstream_api_request_seconds_count{job="wattstream-api"}'},
                    )
                    assert api.json()["data"]["result"], api.text
                    # the alert rules beside the config are loaded, and none fires on a healthy run
                    groups = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
                    rules = {r["name"]: r for g in groups for r in g["rules"]}
                    assert {"WattstreamPoisonRecord", "WattstreamProcessingFailing"} <= set(rules)
                    assert all(r["health"] != "err" for r in rules.values()), rules
            finally:
                await _deploy("stop", env)
    finally:
        worker.terminate()
