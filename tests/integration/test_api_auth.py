"""Keys, roles and tenant isolation: every route that takes a site or region, as each kind of key
sees it; forged, revoked and expired keys; rate limits; and the database's own wall."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from helpers import api_server, make_key

from api.app import create_app
from api.auth import Principal, ScopedConnection, keep_session, scoped_connection
from ingest.registry import MeterRecord, SiteRecord, register
from schemas.settings import Settings

pytestmark = pytest.mark.integration

A, B = "iso-a1", "iso-b1"
RA, RB = "ISO-RA", "ISO-RB"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(days=1)).isoformat()}


def _site_routes(site: str, cert: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(method, path with query, json body) of every route that takes a site."""
    q = "start=2026-04-01T00:00:00Z&end=2026-04-02T00:00:00Z"
    return [
        ("GET", f"/v1/sites/{site}", None),
        ("GET", f"/v1/sites/{site}/meters", None),
        ("GET", f"/v1/sites/{site}/meters/main/readings?{q}", None),
        ("GET", f"/v1/sites/{site}/meters/main/energy?{q}", None),
        ("GET", f"/v1/sites/{site}/energy?{q}", None),
        ("GET", f"/v1/energy?site={site}&{q}", None),
        ("GET", f"/v1/sites/{site}/now", None),
        ("GET", f"/v1/sites/{site}/balance?{q}", None),
        ("GET", f"/v1/sites/{site}/emissions?{q}", None),
        ("GET", f"/v1/sites/{site}/certificates", None),
        (
            "POST",
            f"/v1/sites/{site}/certificates",
            {"kind": "certificate", "period_start": WINDOW["start"], "period_end": WINDOW["end"], "mwh": 1},
        ),
        ("DELETE", f"/v1/sites/{site}/certificates/{cert}", None),
        ("PUT", f"/v1/sites/{site}/quotas", {"energy_quota_month_kwh": 1000}),
        ("GET", f"/v1/sites/{site}/pue?{q}", None),
    ]


def _region_routes(region: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    q = "start=2026-04-01T00:00:00Z&end=2026-04-02T00:00:00Z"
    return [
        ("GET", f"/v1/grid/{region}/intensity/now", None),
        ("GET", f"/v1/grid/{region}/intensity?{q}", None),
        ("GET", f"/v1/grid/{region}/mix?{q}", None),
        ("GET", f"/v1/grid/{region}/shares?{q}", None),
        # no forecast: the window comes from the day before (T0's hour)
        ("GET", f"/v1/grid/{region}/lowest-carbon-window?start=2026-04-02T00:00:00Z&horizon_hours=1", None),
    ]


async def _setup(s: Settings) -> int:
    """Two tenants' sites, each in its own region with grid data; a certificate at B. Returns its id."""
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(A, region=RA, tenant="tenant-a"), SiteRecord(B, region=RB, tenant="tenant-b")],
        [MeterRecord(A, "main"), MeterRecord(B, "main")],
    )
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        for region in (RA, RB):
            await conn.execute(
                "INSERT INTO grid_mix (region, ts, interval_s, revision, generation_mw)"
                " VALUES ($1, $2, 3600, 0, $3)",
                region,
                T0,
                '{"coal": 10}',
            )
            await conn.execute(
                "INSERT INTO grid_intensity (region, ts, interval_s, factor_set, scope, basis, kind,"
                " intensity_g_per_kwh, generation_mw, fossil_share, renewable_share, nonfossil_share)"
                " VALUES ($1, $2, 3600, 'ipcc2014-lifecycle', 'lifecycle', 'consumption', 'actual',"
                " 820, 10, 1, 0, 0)",
                region,
                T0,
            )
        return int(
            await conn.fetchval(
                "INSERT INTO green_certificates (site_id, kind, period_start, period_end, mwh)"
                " VALUES ($1, 'certificate', $2, $3, 5) RETURNING certificate_id",
                B,
                T0,
                T0 + timedelta(days=1),
            )
        )
    finally:
        await conn.close()


def _normalised(r: httpx.Response, *ids: str) -> tuple[int, str]:
    text = r.text
    for i in ids:
        text = text.replace(i, "<id>")
    return r.status_code, text


async def test_tenant_isolation_matrix_and_key_checks(pipeline: Settings) -> None:
    cert = await _setup(pipeline)
    s = pipeline.model_copy(update={"api_key_cache_s": 0.0})  # revocation seen at once
    keys = {
        "admin": await make_key(s),
        "operator": await make_key(s, "operator"),
        "manager_a": await make_key(s, "manager", tenant="tenant-a"),
        "manager_sites": await make_key(s, "manager", sites=[B]),
        "alerts": await make_key(s, "alerts"),
    }
    async with api_server(s) as base, httpx.AsyncClient(base_url=base) as client:

        async def call(key: str | None, method: str, path: str, body: Any = None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return await client.request(method, path, headers=headers, json=body)

        manager = keys["manager_a"]
        timings: dict[str, list[float]] = {"other tenant": [], "missing": []}
        # every route that takes a site: tenant B's site answers a manager of A exactly as a missing one
        for (method, path, body), (_, missing_path, _) in zip(
            _site_routes(B, cert), _site_routes("iso-nope", 999_999), strict=True
        ):
            for _ in range(3):
                t = time.perf_counter()
                theirs = await call(manager, method, path, body)
                timings["other tenant"].append(time.perf_counter() - t)
                t = time.perf_counter()
                missing = await call(manager, method, missing_path, body)
                timings["missing"].append(time.perf_counter() - t)
                assert theirs.status_code == 404, (path, theirs.text)
                assert _normalised(theirs, B, str(cert)) == _normalised(missing, "iso-nope", "999999"), path
            # ... and its own site is served (a DELETE of B's certificate id at A: not found, same body)
            own = await call(manager, method, path.replace(B, A), body)
            assert own.status_code in (200, 201, 404), (path, own.text)
            if method == "GET":
                assert own.status_code == 200, (path, own.text)
        for (method, path, body), (_, missing_path, _) in zip(
            _region_routes(RB), _region_routes("ISO-NOPE"), strict=True
        ):
            theirs, missing = (
                await call(manager, method, path, body),
                await call(manager, method, missing_path, body),
            )
            assert theirs.status_code == 404, (path, theirs.text)
            assert _normalised(theirs, RB) == _normalised(missing, "ISO-NOPE"), path
            assert (await call(manager, method, path.replace(RB, RA), body)).status_code == 200, path
        medians = {k: statistics.median(v) * 1000 for k, v in timings.items()}
        other, absent = medians["other tenant"], medians["missing"]
        print(f"404 timing (median ms): other tenant's {other:.2f}, missing {absent:.2f}")
        assert max(medians.values()) < 3 * min(medians.values()) + 5  # one timing class

        # a manager of listed sites sees those and only those; an operator sees everything
        listed = (await call(keys["manager_sites"], "GET", "/v1/sites")).json()["items"]
        assert [x["site_id"] for x in listed] == [B]
        assert (await call(keys["manager_sites"], "GET", f"/v1/sites/{A}")).status_code == 404
        everything = {
            x["site_id"] for x in (await call(keys["operator"], "GET", "/v1/sites")).json()["items"]
        }
        assert {A, B} <= everything
        regions = {r["region"] for r in (await call(manager, "GET", "/v1/grid/regions")).json()}
        assert RA in regions and RB not in regions

        # roles: 403 for what the role may not do
        forbidden = [
            ("alerts", "GET", f"/v1/sites/{A}", None),
            ("alerts", "GET", f"/v1/grid/{RA}/intensity/now", None),
            (
                "alerts",
                "GET",
                f"/v1/sites/{A}/meters/main/readings?start={WINDOW['start']}&end={WINDOW['end']}",
                None,
            ),
            ("operator", "POST", f"/v1/sites/{A}/certificates", _site_routes(A, 0)[10][2]),
            ("manager_a", "GET", "/v1/keys", None),
            ("operator", "POST", "/v1/keys", {"name": "x", "role": "admin"}),
        ]
        for who, method, path, body in forbidden:
            r = await call(keys[who], method, path, body)
            assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (who, path, r.text)

        # 401: no key, malformed, forged, revoked, expired
        expired = await make_key(s, "operator", expires_in_days=1)
        revoked = await make_key(s, "operator")
        conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
        try:
            await conn.execute(
                "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE key_id = $1",
                expired.split("_")[1],
            )
            await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", revoked.split("_")[1]
            )
        finally:
            await conn.close()
        forged = keys["admin"][:-4] + "AAAA"
        for label, key in [
            ("none", None),
            ("malformed", "not-a-key"),
            ("forged", forged),
            ("unknown", "ws_000000000000_" + "x" * 43),
            ("revoked", revoked),
            ("expired", expired),
        ]:
            r = await call(key, "GET", "/v1/sites")
            assert r.status_code == 401, (label, r.text)
            assert (
                r.json()["error"]["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
            ), label

        # the admin API: create (token once), use, list without secrets, revoke (refused at once)
        created = await call(
            keys["admin"], "POST", "/v1/keys", {"name": "api-made", "role": "manager", "sites": [A]}
        )
        assert created.status_code == 201, created.text
        token, key_id = created.json()["token"], created.json()["key"]["key_id"]
        assert [x["site_id"] for x in (await call(token, "GET", "/v1/sites")).json()["items"]] == [A]
        listing = (await call(keys["admin"], "GET", "/v1/keys")).text
        assert key_id in listing and token.split("_")[2] not in listing
        bad = await call(keys["admin"], "POST", "/v1/keys", {"name": "x", "role": "manager"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "tenant"
        assert (await call(keys["admin"], "DELETE", f"/v1/keys/{key_id}")).json()["revoked_at"] is not None
        assert (await call(token, "GET", "/v1/sites")).status_code == 401

        # health and metrics stay open for probes and scrapers
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200

    # per-key rate limit: 429 with Retry-After once the burst is spent
    limited = await make_key(s, "operator", rate_per_s=0.5, burst=2)
    async with (
        api_server(s) as base,
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {limited}"}) as client,
    ):
        codes = [(await client.get("/v1/grid/regions")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = await client.get("/v1/grid/regions")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"


async def test_the_database_is_a_second_wall(pipeline: Settings) -> None:
    await _setup_sites_only(pipeline)
    conn = await asyncpg.connect(pipeline.api_database_url.get_secret_value())
    try:
        # a connection that set no scope sees no site at all
        assert await conn.fetchval("SELECT count(*) FROM sites WHERE site_id = ANY($1)", [A, B]) == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('wattstream.scope_tenant', 'tenant-a', true)")
            assert [
                r[0] for r in await conn.fetch("SELECT site_id FROM sites WHERE site_id = ANY($1)", [A, B])
            ] == [A]
            assert [
                r[0] for r in await conn.fetch("SELECT site_id FROM meters WHERE site_id = ANY($1)", [A, B])
            ] == [A]
            with pytest.raises(asyncpg.InsufficientPrivilegeError):  # another tenant's certificate
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO green_certificates (site_id, kind, period_start, period_end, mwh)"
                        " VALUES ($1, 'certificate', now(), now() + interval '1 day', 1)",
                        B,
                    )
        for sql in (
            "INSERT INTO readings (meter_id, ts, energy_kwh) VALUES (1, now(), 1)",
            "UPDATE sites SET tenant = 'mine'",
            "SELECT * FROM ingest_offsets",
            "DELETE FROM grid_intensity",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_a_pooled_connection_carries_each_request_s_own_scope(pipeline: Settings) -> None:
    """The API pool keeps a connection's scope between requests (no RESET on release) and sets it
    again only when the next key's scope differs: one connection serving tenant A, tenant B,
    a listed site and an operator in turn sees exactly each one's sites."""
    await _setup_sites_only(pipeline)
    scope_sets = 0

    class Counting(ScopedConnection):
        async def execute(self, query: str, *args: object, **kwargs: Any) -> str:
            nonlocal scope_sets
            scope_sets += "wattstream.scope_all" in query
            return await super().execute(query, *args, **kwargs)

    pool = await asyncpg.create_pool(
        pipeline.api_database_url.get_secret_value(),
        min_size=1,
        max_size=1,
        connection_class=Counting,
        reset=keep_session,
    )

    def who(role: str, tenant: str | None = None, sites: frozenset[str] = frozenset()) -> Principal:
        return Principal(key_id="k", name="t", role=role, tenant=tenant, sites=sites)  # type: ignore[arg-type]

    tenant_a, tenant_b = who("manager", "tenant-a"), who("manager", "tenant-b")
    site_b, operator = who("manager", sites=frozenset({B})), who("operator")
    visible = "SELECT site_id FROM sites WHERE site_id = ANY($1) ORDER BY 1"
    try:
        for principal, expected in [
            (tenant_a, [A]),
            (tenant_a, [A]),  # the same scope again: nothing to set
            (tenant_b, [B]),
            (site_b, [B]),
            (tenant_a, [A]),
            (operator, [A, B]),
            (tenant_b, [B]),
        ]:
            async with scoped_connection(pool, principal) as conn:
                assert [r[0] for r in await conn.fetch(visible, [A, B])] == expected, principal
        # a transaction that fails and rolls back leaves the session's scope as it was
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with scoped_connection(pool, tenant_a) as conn, conn.transaction():
                await conn.execute("SELECT 1 / 0")
        async with scoped_connection(pool, tenant_a) as conn:
            assert [r[0] for r in await conn.fetch(visible, [A, B])] == [A]
        assert scope_sets == 7  # of 9 requests: each second one of a same-scope pair set nothing
    finally:
        await pool.close()


async def _setup_sites_only(s: Settings) -> None:
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(A, region=RA, tenant="tenant-a"), SiteRecord(B, region=RB, tenant="tenant-b")],
        [MeterRecord(A, "main"), MeterRecord(B, "main")],
    )


def test_every_route_declares_what_it_needs() -> None:
    from fastapi.routing import APIRoute
    from prometheus_client import CollectorRegistry

    app = create_app(Settings(), CollectorRegistry())
    open_routes = {"/healthz", "/readyz", "/metrics", "/"}  # "/": the dashboard's page, no data
    for route in app.routes:
        if not isinstance(route, APIRoute) or route.path in open_routes:
            continue
        names = {d.call.__name__ for d in route.dependant.dependencies if d.call is not None}
        assert any(n.startswith("require_") for n in names), f"{route.path} declares no permission"
