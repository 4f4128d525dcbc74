"""The alerting API against a real worker and Kafka: rules within a key's scope, alerts and their
history, acknowledgements, silences, webhook subscriptions with their dead deliveries, the alert
stream, and tenant isolation (another tenant's alert answers like a missing one)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import Worker, api_server, make_key, produce, wait_for
from test_alerts import power_readings
from test_streams import Listener, _listening

from ingest.registry import MeterRecord, SiteRecord, register
from schemas.settings import Settings

pytestmark = pytest.mark.integration

A, B = "ala-a1", "ala-b1"
T0 = datetime(2026, 7, 1, tzinfo=UTC)


def _rule(site: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"{site} power",
        "kind": "threshold",
        "metric": "site_power_kw",
        "threshold": 100,
        "resolve_threshold": 80,
        "site": site,
        **extra,
    }


async def test_alerting_api_scoped_by_tenant(pipeline: Settings, tmp_path: Path) -> None:
    s = pipeline.model_copy(
        update={
            "api_key_cache_s": 0.0,
            "alert_tick_s": 0.5,
            "webhook_max_attempts": 2,
            "webhook_timeout_s": 0.5,
            "webhook_backoff_initial_s": 0.1,
            "sse_heartbeat_s": 0.5,
        }
    )
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(A, tenant="ala-a"), SiteRecord(B, tenant="ala-b")],
        [MeterRecord(A, "main"), MeterRecord(B, "main")],
    )
    keys = {
        "admin": await make_key(s, "admin"),
        "a": await make_key(s, "manager", tenant="ala-a"),
        "b": await make_key(s, "manager", tenant="ala-b"),
        "alerts": await make_key(s, "alerts"),
        "alerts_a": await make_key(s, "alerts", tenant="ala-a"),
        "operator": await make_key(s, "operator"),
    }
    worker = Worker(s, tmp_path / "worker.log")
    worker.start()
    try:
        async with api_server(s) as base, httpx.AsyncClient(base_url=base) as client:

            async def call(who: str, method: str, path: str, body: Any = None) -> httpx.Response:
                headers = {"Authorization": f"Bearer {keys[who]}"}
                return await client.request(method, path, headers=headers, json=body)

            # rules: a manager configures its own sites, and nobody else's
            created = await call("a", "POST", "/v1/alert-rules", _rule(A))
            assert created.status_code == 201, created.text
            rule_a = created.json()
            assert rule_a["tenant"] == "ala-a" and rule_a["resolve_threshold"] == 80
            assert (await call("b", "POST", "/v1/alert-rules", _rule(B))).status_code == 201
            theirs = await call("a", "POST", "/v1/alert-rules", _rule(B))
            missing = await call("a", "POST", "/v1/alert-rules", _rule("ala-nope"))
            assert theirs.status_code == missing.status_code == 404
            assert theirs.json()["error"]["message"].replace(B, "x") == missing.json()["error"][
                "message"
            ].replace("ala-nope", "x")
            bad = await call("a", "POST", "/v1/alert-rules", {**_rule(A), "resolve_threshold": 120})
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_parameter"
            no_threshold = await call("a", "POST", "/v1/alert-rules", {**_rule(A), "threshold": None})
            assert no_threshold.status_code == 422
            other_tenant = await call(
                "a", "POST", "/v1/alert-rules", {**_rule(A), "site": None, "tenant": "ala-b"}
            )
            assert other_tenant.status_code == 404
            assert (await call("b", "GET", f"/v1/alert-rules/{rule_a['rule_id']}")).status_code == 404
            assert [r["site"] for r in (await call("b", "GET", "/v1/alert-rules")).json()] == [B]
            assert (await call("alerts", "GET", "/v1/alert-rules")).status_code == 403
            assert (await call("operator", "POST", "/v1/alert-rules", _rule(A))).status_code == 403

            # a subscription that can never be reached: its deliveries die after the budget
            hook = await call("a", "POST", "/v1/webhooks", {"name": "gone", "url": "http://127.0.0.1:9/x"})
            assert hook.status_code == 201 and len(hook.json()["secret"]) >= 16
            hook_id = hook.json()["subscription_id"]
            assert hook.json()["tenant"] == "ala-a"
            assert (await call("b", "GET", f"/v1/webhooks/{hook_id}/deliveries")).status_code == 404

            stream_a = Listener(client, "/v1/stream/alerts", keys["alerts_a"])
            stream_all = Listener(client, "/v1/stream/alerts", keys["alerts"])
            async with _listening(stream_a, stream_all):
                await stream_a.until(lambda x: x.heartbeats > 0, 10, "the alert stream to open")
                for site in (A, B):
                    await produce(s, power_readings(site, T0, [50, 150]))

                async def firing() -> bool | str:  # (the session's database has other tests' alerts)
                    got = (await call("alerts", "GET", "/v1/alerts")).json()
                    return {A, B} <= {x["site"] for x in got} or f"{got}"

                await wait_for(firing, 60, "both alerts firing")
                await stream_all.until(lambda x: len(x.events) >= 2, 30, "both events on the stream")
                await asyncio.sleep(1.0)  # anything out of scope would have arrived by now
            assert {e[2]["site"] for e in stream_all.events} == {A, B}
            assert [(e[1], e[2]["site"], e[2]["status"]) for e in stream_a.events] == [
                ("alerts", A, "firing")
            ]

            mine = (await call("a", "GET", "/v1/alerts")).json()
            assert [x["site"] for x in mine] == [A] and mine[0]["state"] == "firing"
            assert [x["site"] for x in (await call("alerts_a", "GET", "/v1/alerts")).json()] == [A]
            assert {x["site"] for x in (await call("operator", "GET", "/v1/alerts")).json()} >= {A, B}
            fp_a = mine[0]["fingerprint"]
            fp_b = next(x for x in (await call("b", "GET", "/v1/alerts")).json())["fingerprint"]
            assert mine[0]["annotations"]["summary"].startswith(f"{A}: site_power_kw 150")

            # another tenant's alert is a missing alert, on every alert route
            for method, path, body in (
                ("GET", "/v1/alerts/{fp}", None),
                ("GET", "/v1/alerts/{fp}/events", None),
                ("POST", "/v1/alerts/{fp}/ack", {}),
            ):
                other = await call("a", method, path.format(fp=fp_b), body)
                absent = await call("a", method, path.format(fp="0123456789abcdef"), body)
                assert other.status_code == absent.status_code == 404, path
                assert other.text.replace(fp_b, "x") == absent.text.replace("0123456789abcdef", "x"), path

            events = (await call("a", "GET", f"/v1/alerts/{fp_a}/events")).json()
            assert [e["status"] for e in events] == ["firing"]

            # acknowledge: once per episode, by a manager or an alerting system
            acked = await call("alerts_a", "POST", f"/v1/alerts/{fp_a}/ack", {"comment": "paged"})
            assert acked.status_code == 200, acked.text
            ack = acked.json()["acknowledged"]
            assert ack["comment"] == "paged" and ack["acked_by"] == "test alerts"
            again = await call("a", "POST", f"/v1/alerts/{fp_a}/ack", {"comment": "me too"})
            assert again.json()["acknowledged"]["comment"] == "paged"

            # a silence: the alert shows as silenced; ending it lifts that
            silence = await call(
                "a",
                "POST",
                "/v1/silences",
                {
                    "matchers": [{"name": "site", "value": A}],
                    "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                    "comment": "maintenance",
                },
            )
            assert silence.status_code == 201 and silence.json()["tenant"] == "ala-a"
            assert (await call("a", "GET", f"/v1/alerts/{fp_a}")).json()["silenced"] is True
            assert (await call("b", "GET", "/v1/silences")).json() == []
            sid = silence.json()["silence_id"]
            assert (await call("b", "DELETE", f"/v1/silences/{sid}")).status_code == 404
            assert (await call("a", "DELETE", f"/v1/silences/{sid}")).status_code == 200
            assert (await call("a", "GET", f"/v1/alerts/{fp_a}")).json()["silenced"] is False

            # the firing event to the unreachable receiver: 2 attempts, then dead, listed with its log
            async def dead() -> bool | str:
                got = (await call("a", "GET", f"/v1/webhooks/{hook_id}/deliveries?status=dead")).json()
                return len(got) == 1 or f"{got}"

            await wait_for(dead, 60, "the delivery to be dead")
            (delivery,) = (await call("a", "GET", f"/v1/webhooks/{hook_id}/deliveries?status=dead")).json()
            assert delivery["attempts"] == 2 and len(delivery["attempt_log"]) == 2
            assert delivery["fingerprint"] == fp_a and delivery["last_error"]

            # resolving: the alert leaves the firing list, and an ack of it is a conflict
            await produce(s, power_readings(A, T0 + timedelta(minutes=10), [60]))

            async def resolved() -> bool | str:
                got = (await call("a", "GET", f"/v1/alerts/{fp_a}")).json()
                return got["state"] == "inactive" or got["state"]

            await wait_for(resolved, 60, "the alert to resolve")
            assert (await call("a", "GET", "/v1/alerts")).json() == []
            conflict = await call("a", "POST", f"/v1/alerts/{fp_a}/ack", {})
            assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"

            # quotas: a manager sets its site's; another tenant's site is missing
            q = await call("a", "PUT", f"/v1/sites/{A}/quotas", {"energy_quota_month_kwh": 5000})
            assert q.status_code == 200 and q.json()["energy_quota_month_kwh"] == 5000
            assert (await call("a", "PUT", f"/v1/sites/{B}/quotas", {})).status_code == 404
    finally:
        worker.terminate()
