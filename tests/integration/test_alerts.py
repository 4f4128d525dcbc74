"""Alerting end to end against the real Kafka and TimescaleDB: rules evaluated in the ingest
worker, transitions on the alerts topic, signed webhooks with retries, crash safety."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from helpers import Worker, produce, read_topic, wait_for
from receiver import Receiver

from ingest.registry import MeterRecord, SiteRecord, register
from schemas.settings import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 6, 1, tzinfo=UTC)
FAST = {
    "alert_tick_s": 0.5,
    "webhook_timeout_s": 1.0,
    "webhook_backoff_initial_s": 0.2,
    "webhook_backoff_max_s": 1.0,
}


async def _owner(s: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(s.migrate_database_url.get_secret_value())


async def add_rule(s: Settings, **fields: Any) -> int:
    """A rule as the API stores it (tests of the API itself are in test_api_alerts.py)."""
    fields.setdefault("comparator", ">")
    fields.setdefault("resolve_threshold", fields["threshold"])
    for name in ("params", "labels", "annotations"):
        fields[name] = json.dumps(fields.get(name, {}))
    cols = list(fields)
    conn = await _owner(s)
    try:
        return int(
            await conn.fetchval(
                f"INSERT INTO alert_rules ({', '.join(cols)}) VALUES "  # noqa: S608 - test helper, names are ours
                f"({', '.join(f'${i + 1}' for i in range(len(cols)))}) RETURNING rule_id",
                *fields.values(),
            )
        )
    finally:
        await conn.close()


async def add_subscription(s: Settings, url: str, secret: str, **fields: Any) -> int:
    conn = await _owner(s)
    try:
        return int(
            await conn.fetchval(
                "INSERT INTO webhook_subscriptions (name, url, secret, tenant, site_id)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING subscription_id",
                fields.get("name", "test"),
                url,
                secret,
                fields.get("tenant"),
                fields.get("site_id"),
            )
        )
    finally:
        await conn.close()


async def fetch(s: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await _owner(s)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def power_readings(
    site: str, start: datetime, kws: list[float], step_min: int = 5
) -> list[tuple[bytes, bytes]]:
    return [
        (
            site.encode(),
            json.dumps(
                {
                    "site": site,
                    "meter": "main",
                    "ts": (start + timedelta(minutes=step_min * i)).isoformat(),
                    "power_kw": kw,
                }
            ).encode(),
        )
        for i, kw in enumerate(kws)
    ]


async def alert_events(s: Settings, fingerprint_of_site: str | None = None) -> list[dict[str, Any]]:
    events = [msgspec.json.decode(r.value) for r in await read_topic(s, s.topic_alerts)]
    return [e for e in events if fingerprint_of_site is None or e["site"] == fingerprint_of_site]


async def _published(s: Settings, site: str, n: int) -> bool | str:
    rows = await fetch(s, "SELECT status, published_at FROM alerts WHERE site_id = $1", site)
    done = [r for r in rows if r["published_at"] is not None]
    return len(done) >= n or f"{len(done)} of {n} published: {[r['status'] for r in rows]}"


# power in kW every 5 minutes: > 100 for 15 minutes fires, <= 80 resolves
CROSSING = [50, 120, 130, 125, 140]  # pending at 00:05, firing at 00:20
IN_BAND = [90, 110, 95, 105]  # between the thresholds: stays firing
RESOLVING = [70]  # resolved at 00:45
AROUND = [101, 99, 101, 99, 100, 85]  # breaches never last 15 minutes: nothing more


async def test_threshold_fires_once_resolves_once_and_delivers(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update=FAST)
    site = "al-th1"
    await register(
        s.database_url.get_secret_value(), [SiteRecord(site, tenant="al-t")], [MeterRecord(site, "main")]
    )
    await add_rule(
        s,
        name="site power high",
        kind="threshold",
        metric="site_power_kw",
        threshold=100.0,
        resolve_threshold=80.0,
        for_s=900.0,
        site_id=site,
        tenant="al-t",
        severity="critical",
        labels={"team": "facilities"},
    )
    async with Receiver(secret="s3cret") as hook:
        await add_subscription(s, hook.url, "s3cret", tenant="al-t")
        worker = Worker(s, tmp_path / "worker.log")
        worker.start()
        try:
            # in separate messages and batches, so the state machine crosses batch boundaries
            offset = 0
            for part in (CROSSING, IN_BAND, RESOLVING, AROUND):
                await produce(s, power_readings(site, T0 + timedelta(minutes=5 * offset), part))
                await wait_for(
                    lambda o=offset, p=part: _evaluated(
                        s, site, T0 + timedelta(minutes=5 * (o + len(p) - 1))
                    ),
                    60,
                    "the worker to evaluate the readings",
                )
                offset += len(part)
            await wait_for(lambda: _published(s, site, 2), 30, "both transitions on the topic")
            await wait_for(lambda: _delivered(hook, 2), 30, "two webhook deliveries")
        finally:
            worker.terminate()

    events = await alert_events(s, site)
    assert [e["status"] for e in events] == ["firing", "resolved"]
    firing, resolved = events
    assert firing["starts_at"] == "2026-06-01T00:20:00Z" and firing["ends_at"] is None
    assert resolved["starts_at"] == firing["starts_at"] and resolved["ends_at"] == "2026-06-01T00:45:00Z"
    assert firing["fingerprint"] == resolved["fingerprint"]
    assert firing["labels"]["alertname"] == "site power high" and firing["labels"]["team"] == "facilities"
    assert firing["labels"]["severity"] == "critical" and firing["labels"]["tenant"] == "al-t"
    assert firing["value"] == 140.0 and resolved["value"] == 70.0

    delivered = hook.delivered()
    assert len(delivered) == 2 and len(hook.received) == 2  # once each, no retries needed
    assert all(r.signature_ok for r in hook.received)
    bodies = sorted((r.body for r in delivered.values()), key=lambda b: b["status"])
    for body, status in zip(bodies, ("firing", "resolved"), strict=True):
        assert body["version"] == "4" and body["status"] == status
        (alert,) = body["alerts"]
        assert alert["fingerprint"] == firing["fingerprint"] and alert["startsAt"] == "2026-06-01T00:20:00Z"
        assert alert["labels"]["site"] == site
    assert bodies[0]["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert bodies[1]["alerts"][0]["endsAt"] == "2026-06-01T00:45:00Z"
    (state,) = await fetch(s, "SELECT state FROM alert_state WHERE site_id = $1", site)
    assert state["state"] == "inactive"


async def _evaluated(s: Settings, site: str, ts: datetime) -> bool | str:
    rows = await fetch(s, "SELECT last_ts FROM alert_state WHERE site_id = $1", site)
    return (bool(rows) and rows[0]["last_ts"] >= ts) or f"state {[r['last_ts'] for r in rows]}"


async def _delivered(hook: Receiver, n: int) -> bool | str:
    return len(hook.delivered()) >= n or f"{len(hook.delivered())} delivered"


async def test_worker_killed_while_pending_and_while_firing(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update=FAST)
    site = "al-kill1"
    await register(s.database_url.get_secret_value(), [SiteRecord(site)], [MeterRecord(site, "main")])
    await add_rule(
        s,
        name="kill test",
        kind="threshold",
        metric="site_power_kw",
        threshold=100.0,
        resolve_threshold=80.0,
        for_s=900.0,
        site_id=site,
    )
    log = tmp_path / "worker.log"
    worker = Worker(s, log)
    worker.start()
    try:
        await produce(s, power_readings(site, T0, [50, 120, 130]))  # pending since 00:05
        await wait_for(lambda: _state(s, site, "pending"), 60, "the alert to be pending")
        worker.kill()
        worker = Worker(s, log)
        worker.start()
        await produce(s, power_readings(site, T0 + timedelta(minutes=15), [125, 140, 150]))  # firing at 00:20
        await wait_for(lambda: _state(s, site, "firing"), 60, "the alert to fire after the restart")
        await wait_for(lambda: _published(s, site, 1), 30, "the firing event on the topic")
        worker.kill()
        worker = Worker(s, log)
        worker.start()
        await produce(s, power_readings(site, T0 + timedelta(minutes=30), [95, 60]))  # resolved at 00:35
        await wait_for(lambda: _published(s, site, 2), 60, "the resolution after the second restart")
    finally:
        if worker.alive():
            worker.terminate()
    events = await alert_events(s, site)
    assert [e["status"] for e in events] == ["firing", "resolved"]
    assert events[0]["starts_at"] == "2026-06-01T00:20:00Z"  # pending survived the kill
    assert events[1]["ends_at"] == "2026-06-01T00:35:00Z"
    assert len({e["event_id"] for e in events}) == 2


async def _state(s: Settings, site: str, state: str) -> bool | str:
    rows = await fetch(s, "SELECT state FROM alert_state WHERE site_id = $1", site)
    return (bool(rows) and rows[0]["state"] == state) or f"states {[r['state'] for r in rows]}"


async def test_flaky_receiver_gets_everything_signed_and_dead_ones_are_listed(
    pipeline: Settings, tmp_path: Path
) -> None:
    s = pipeline.model_copy(update={**FAST, "webhook_max_attempts": 12})
    sites = [f"al-flaky{i}" for i in range(6)]
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(x, tenant="al-flaky") for x in sites],
        [MeterRecord(x, "main") for x in sites],
    )
    await add_rule(
        s,
        name="flaky",
        kind="threshold",
        metric="site_power_kw",
        threshold=100.0,
        resolve_threshold=80.0,
        tenant="al-flaky",
    )
    async with Receiver(secret="flaky-secret", fail_rate=0.5, hang_rate=0.1, hang_s=2.0) as hook:
        await add_subscription(s, hook.url, "flaky-secret", tenant="al-flaky", name="flaky")
        # a receiver that is never there: its deliveries must stop at the budget and be dead
        gone = await add_subscription(s, "http://127.0.0.1:9/hook", "x", tenant="al-flaky", name="gone")
        worker = Worker(s, tmp_path / "worker.log")
        worker.start()
        try:
            for x in sites:
                await produce(s, power_readings(x, T0, [50, 150, 60]))  # fires and resolves
            await wait_for(lambda: _delivered(hook, 2 * len(sites)), 120, "every event delivered")
            await wait_for(lambda: _dead(s, gone, 2 * len(sites)), 120, "the unreachable deliveries dead")
        finally:
            worker.terminate()
    delivered = hook.delivered()
    assert len(delivered) == 2 * len(sites)
    assert all(r.signature_ok for r in hook.received)
    assert any(r.answered == 500 for r in hook.received) and any(r.answered is None for r in hook.received)
    attempts = await fetch(
        s,
        "SELECT d.delivery_id, d.attempts, count(a.*) AS logged FROM webhook_deliveries d "
        "JOIN webhook_attempts a USING (delivery_id) WHERE d.subscription_id = $1 GROUP BY 1, 2",
        gone,
    )
    # the budget of the worker's settings, every attempt logged, none beyond it
    assert attempts and all(r["attempts"] == 12 and r["logged"] == 12 for r in attempts)


async def _dead(s: Settings, subscription: int, n: int) -> bool | str:
    rows = await fetch(s, "SELECT status FROM webhook_deliveries WHERE subscription_id = $1", subscription)
    counts = Counter(r["status"] for r in rows)
    return counts["dead"] >= n or str(counts)


async def test_staleness_fires_on_silence_and_resolves_when_heard(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update=FAST)
    site = "al-stale1"
    await register(s.database_url.get_secret_value(), [SiteRecord(site)], [MeterRecord(site, "main")])
    await add_rule(
        s, name="meter silent", kind="staleness", metric="meter_silence_s", threshold=3.0, site_id=site
    )

    def live(kw: float) -> list[tuple[bytes, bytes]]:
        return power_readings(site, datetime.now(UTC), [kw])

    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, live(10))
        await wait_for(lambda: _state(s, site + "", "inactive"), 30, "the meter to be heard")
        await wait_for(lambda: _published(s, site, 1), 30, "staleness to fire")  # its value: > 3 s silent
        await produce(s, live(11))
        await wait_for(lambda: _published(s, site, 2), 30, "staleness to resolve")
    finally:
        worker.terminate()
    events = await alert_events(s, site)
    assert [e["status"] for e in events] == ["firing", "resolved"]
    assert events[0]["labels"]["meter"] == "main" and events[0]["value"] > 3.0


async def test_quota_burn_uses_the_local_calendar_month(pipeline: Settings, tmp_path: Path) -> None:
    """Heavy use in the first 8 local hours of November (still October in UTC): projected over the
    local month it is 3× the quota; over the UTC month it would stay below it."""
    s = pipeline.model_copy(update=FAST)
    site = "al-quota1"
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(site, timezone="Asia/Shanghai")],
        [MeterRecord(site, "main")],
    )
    conn = await _owner(s)
    try:
        await conn.execute("UPDATE sites SET energy_quota_month_kwh = 1000 WHERE site_id = $1", site)
    finally:
        await conn.close()
    await add_rule(
        s,
        name="monthly energy quota",
        kind="quota_burn",
        metric="quota_ratio",
        threshold=1.0,
        resolve_threshold=0.95,
        site_id=site,
        params={"quota": "energy", "period": "month"},
    )
    local_start = datetime(2026, 10, 31, 16, tzinfo=UTC)  # 2026-11-01 00:00 in Shanghai
    register_kwh, messages = 0.0, []
    for q in range(48 * 4 + 1):  # 15-minute register readings for two local days
        ts = local_start + timedelta(minutes=15 * q)
        messages.append(
            (
                site.encode(),
                json.dumps(
                    {"site": site, "meter": "main", "ts": ts.isoformat(), "energy_kwh": register_kwh}
                ).encode(),
            )
        )
        register_kwh += 5.0 if q < 32 else 0.25  # 20 kWh/h for 8 hours, then 1 kWh/h
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, messages)
        await wait_for(lambda: _published(s, site, 1), 60, "the quota alert")
        await wait_for(
            lambda: _evaluated(s, site, local_start + timedelta(days=2)), 60, "the last bucket evaluated"
        )
    finally:
        worker.terminate()
    (event,) = await alert_events(s, site)
    assert event["status"] == "firing"
    assert event["annotations"]["period"] == "2026-11-01..2026-12-01 (Asia/Shanghai)"
    (state,) = await fetch(s, "SELECT last_value FROM alert_state WHERE site_id = $1", site)
    local_used = 160 + 40 * 1.0  # kWh in the two local days
    assert state["last_value"] == pytest.approx(local_used * 15 / 1000)  # 30 days / 2 elapsed
    utc_used = 40 * 1.0  # what a UTC month would have counted by then, over 40 hours
    assert utc_used * (30 * 24 / 40) / 1000 < 1.0


def _grid_mix(region: str, ts: datetime, coal: float, hydro: float) -> tuple[bytes, bytes]:
    record = {
        "region": region,
        "ts": ts.isoformat(),
        "interval_s": 900,
        "generation_mw": {"coal": coal, "hydro": hydro},
    }
    return region.encode(), json.dumps(record).encode()


async def test_grid_rules_on_the_grid_consumer(pipeline: Settings, tmp_path: Path) -> None:
    """A non-fossil share under target fires and resolves on the grid consumer's intensity; a
    silent feed fires on the timer and resolves when the feed speaks again."""
    s = pipeline.model_copy(update=FAST)
    region = "AL-GRID1"
    await add_rule(
        s,
        name="non-fossil under target",
        kind="threshold",
        metric="nonfossil_share",
        comparator="<",
        threshold=0.3,
        resolve_threshold=0.35,
        region=region,
    )
    await add_rule(
        s, name="feed silent", kind="staleness", metric="grid_silence_s", threshold=3.0, region=region
    )
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, [_grid_mix(region, T0, 800, 200)], topic=s.topic_grid)  # 20 % non-fossil
        await produce(
            s, [_grid_mix(region, T0 + timedelta(minutes=15), 750, 250)], topic=s.topic_grid
        )  # 25 %
        await produce(
            s, [_grid_mix(region, T0 + timedelta(minutes=30), 500, 500)], topic=s.topic_grid
        )  # 50 %

        async def grid_events(n: int) -> bool | str:
            rows = await fetch(
                s, "SELECT status FROM alerts WHERE region = $1 AND published_at IS NOT NULL", region
            )
            return len(rows) >= n or str([r["status"] for r in rows])

        await wait_for(lambda: grid_events(3), 60, "share fired and resolved, silence fired")
        await produce(s, [_grid_mix(region, T0 + timedelta(minutes=45), 500, 500)], topic=s.topic_grid)
        await wait_for(lambda: grid_events(4), 30, "the silence resolved")
    finally:
        worker.terminate()
    events = [e for e in await alert_events(s) if e["region"] == region]
    share = [e for e in events if e["labels"]["metric"] == "nonfossil_share"]
    silence = [e for e in events if e["labels"]["metric"] == "grid_silence_s"]
    assert [(e["status"], e["at"]) for e in share] == [
        ("firing", "2026-06-01T00:15:00Z"),  # the first interval's end
        ("resolved", "2026-06-01T00:45:00Z"),
    ]
    assert share[0]["value"] == pytest.approx(0.2)
    assert [e["status"] for e in silence] == ["firing", "resolved"]


def _registers(
    site: str, start: datetime, per_meter_kwh: dict[str, list[float]]
) -> list[tuple[bytes, bytes]]:
    """One message per 15 minutes with every meter's register; per_meter_kwh are the quarter-hour uses."""
    totals = dict.fromkeys(per_meter_kwh, 0.0)
    n = len(next(iter(per_meter_kwh.values())))
    out = []
    for q in range(n + 1):
        ts = (start + timedelta(minutes=15 * q)).isoformat()
        out.append(
            (
                site.encode(),
                json.dumps(
                    {
                        "readings": [
                            {"site": site, "meter": m, "ts": ts, "energy_kwh": totals[m]} for m in totals
                        ]
                    }
                ).encode(),
            )
        )
        if q < n:
            for m, uses in per_meter_kwh.items():
                totals[m] += uses[q]
    return out


async def test_sub_meter_imbalance_fires_and_resolves(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update=FAST)
    site = "al-imb1"
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(site)],
        [
            MeterRecord(site, "main"),
            MeterRecord(site, "light", role="sub_item", sub_item="照明插座"),
            MeterRecord(site, "hvac", role="sub_item", sub_item="空调"),
        ],
    )
    await add_rule(
        s, name="sub-meters short", kind="imbalance", metric="imbalance", threshold=0.1, site_id=site
    )
    # main 10 kWh a quarter; sub-items 8 for two quarters (20 % short), then 10 (balanced)
    messages = _registers(site, T0, {"main": [10] * 4, "light": [4, 4, 5, 5], "hvac": [4, 4, 5, 5]})
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, messages)
        await wait_for(lambda: _published(s, site, 2), 60, "imbalance fired and resolved")
    finally:
        worker.terminate()
    events = await alert_events(s, site)
    assert [(e["status"], e["at"]) for e in events] == [
        ("firing", "2026-06-01T00:15:00Z"),
        ("resolved", "2026-06-01T00:45:00Z"),
    ]
    assert events[0]["value"] == pytest.approx(0.2)
    assert events[0]["annotations"]["main_kwh"] == "10" and events[0]["annotations"]["sub_items_kwh"] == "8"


async def test_anomaly_against_the_same_hour_of_previous_days(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(update=FAST)
    site = "al-anom1"
    await register(
        s.database_url.get_secret_value(), [SiteRecord(site, timezone="UTC")], [MeterRecord(site, "main")]
    )
    await add_rule(
        s, name="unusual hour", kind="anomaly", metric="anomaly_score", threshold=4.0, site_id=site
    )
    start = datetime(2026, 6, 1, tzinfo=UTC)
    days = 8
    usual = [1.0 + 0.1 * ((q * 7) % 3) for q in range(days * 96)]  # 4.0-4.8 kWh an hour, every hour
    history = _registers(site, start, {"main": usual})
    # then one hour at ten times the usual
    unusual = _registers(site, start + timedelta(days=days), {"main": [10.0, 10.0, 10.0, 10.0]})
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        await produce(s, history)
        await wait_for(lambda: _evaluated(s, site, start + timedelta(days=days)), 60, "the history evaluated")
        assert await alert_events(s, site) == []  # usual hours are not anomalies
        # continue the register from where the history ended
        base = sum(usual)
        shifted = [
            (
                k,
                json.dumps(
                    {
                        "readings": [
                            {**r, "energy_kwh": r["energy_kwh"] + base} for r in json.loads(v)["readings"]
                        ]
                    }
                ).encode(),
            )
            for k, v in unusual[1:]
        ]
        await produce(s, shifted)
        await wait_for(lambda: _published(s, site, 1), 60, "the anomaly")
    finally:
        worker.terminate()
    (event,) = await alert_events(s, site)
    assert event["status"] == "firing" and event["at"] == "2026-06-09T01:00:00Z"
    assert event["annotations"]["hour_kwh"] == "40" and event["annotations"]["days"] == "8"
    assert event["value"] > 4.0
