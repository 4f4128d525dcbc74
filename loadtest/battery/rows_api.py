"""The API row: a real `wattstream api` process, two tenants' data, every kind of key.

- **Isolation matrix**: each manager key asks for the other tenant's site, region, certificate,
  alert rule, silence and webhook through every route that takes one, and for a missing one;
  the two answers must be the same (status and body, the names replaced), and the other
  tenant's objects must still be there afterwards (a DELETE that answered 404 deleted nothing).
- **Keys**: no key, a malformed, forged, unknown, truncated, revoked and expired key, another
  scheme, no token: 401 with `WWW-Authenticate: Bearer`, on several routes.
- **Rate limit**: a key of 0.5 requests/s with a burst of 2 gets 429 with `Retry-After` on its
  third request, and is served again after waiting that long.
- **Malformed query strings** on every GET route of the live OpenAPI (streams excepted): bad
  values for each parameter's type (dates outside any calendar's or PostgreSQL's range, huge
  and non-numeric integers, NUL bytes, invalid percent-escapes and UTF-8, unknown enum values,
  repeated and unknown parameters), sent byte for byte over a raw socket: no answer may be a 5xx.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx

from ingest.registry import MeterRecord, SiteRecord, register
from loadtest.battery.context import Context, row_topics
from loadtest.battery.procs import WattstreamProcess
from loadtest.battery.report import RowResult
from loadtest.battery.verify import wait_until
from loadtest.scratch import free_port, make_key
from schemas.settings import Settings

__all__ = ["api"]

A1, A2, B1 = "api-a1", "api-a2", "api-b1"
RA, RB = "API-RA", "API-RB"
MISSING_SITE, MISSING_REGION, MISSING_ID = "api-nope", "API-NOPE", 999_999
_T0 = datetime(2026, 4, 1, tzinfo=UTC)
_RANGE = "start=2026-04-01T00:00:00Z&end=2026-04-02T00:00:00Z"

Route = tuple[str, str, dict[str, Any] | None]


def _routes(o: dict[str, Any]) -> list[Route]:
    """(method, path, body) of every route that takes one of a tenant's objects."""
    site, region = o["site"], o["region"]
    rule = {
        "name": "battery",
        "kind": "threshold",
        "metric": "site_power_kw",
        "threshold": 100,
        "resolve_threshold": 80,
        "site": site,
    }
    cert = {
        "kind": "certificate",
        "period_start": _T0.isoformat(),
        "period_end": (_T0 + timedelta(days=1)).isoformat(),
        "mwh": 1,
    }
    return [
        ("GET", f"/v1/sites/{site}", None),
        ("GET", f"/v1/sites/{site}/meters", None),
        ("GET", f"/v1/sites/{site}/meters/main/readings?{_RANGE}", None),
        ("GET", f"/v1/sites/{site}/meters/main/energy?{_RANGE}", None),
        ("GET", f"/v1/sites/{site}/energy?{_RANGE}", None),
        ("GET", f"/v1/energy?site={site}&{_RANGE}", None),
        ("GET", f"/v1/sites/{site}/now", None),
        ("GET", f"/v1/sites/{site}/latest", None),
        ("GET", f"/v1/sites/{site}/balance?{_RANGE}", None),
        ("GET", f"/v1/sites/{site}/emissions?{_RANGE}", None),
        ("GET", f"/v1/sites/{site}/pue?{_RANGE}", None),
        ("GET", f"/v1/sites/{site}/certificates", None),
        ("POST", f"/v1/sites/{site}/certificates", cert),
        ("DELETE", f"/v1/sites/{site}/certificates/{o['cert']}", None),
        ("PUT", f"/v1/sites/{site}/quotas", {"energy_quota_month_kwh": 1000}),
        ("GET", f"/v1/grid/{region}/intensity/now", None),
        ("GET", f"/v1/grid/{region}/intensity?{_RANGE}", None),
        ("GET", f"/v1/grid/{region}/mix?{_RANGE}", None),
        ("GET", f"/v1/grid/{region}/shares?{_RANGE}", None),
        ("GET", f"/v1/grid/{region}/lowest-carbon-window?start=2026-04-02T00:00:00Z&horizon_hours=1", None),
        ("GET", f"/v1/alert-rules/{o['rule']}", None),
        ("PUT", f"/v1/alert-rules/{o['rule']}", rule),
        ("DELETE", f"/v1/alert-rules/{o['rule']}", None),
        ("DELETE", f"/v1/silences/{o['silence']}", None),
        ("GET", f"/v1/webhooks/{o['hook']}/deliveries", None),
        ("DELETE", f"/v1/webhooks/{o['hook']}", None),
    ]


async def _setup(s: Settings) -> dict[str, int]:
    """Two tenants' sites, each tenant in its own grid region with data; a certificate at each
    tenant's first site. Returns the certificate ids."""
    await register(
        s.database_url.get_secret_value(),
        [
            SiteRecord(A1, region=RA, tenant="api-tenant-a"),
            SiteRecord(A2, region=RA, tenant="api-tenant-a"),
            SiteRecord(B1, region=RB, tenant="api-tenant-b"),
        ],
        [MeterRecord(A1, "main"), MeterRecord(A2, "main"), MeterRecord(B1, "main")],
    )
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        for region in (RA, RB):
            await conn.execute(
                "INSERT INTO grid_mix (region, ts, interval_s, revision, generation_mw)"
                " VALUES ($1, $2, 3600, 0, $3)",
                region,
                _T0,
                '{"coal": 10, "wind": 5}',
            )
            await conn.execute(
                "INSERT INTO grid_intensity (region, ts, interval_s, factor_set, scope, basis, kind,"
                " intensity_g_per_kwh, generation_mw, fossil_share, renewable_share, nonfossil_share)"
                " VALUES ($1, $2, 3600, 'ipcc2014-lifecycle', 'lifecycle', 'consumption', 'actual',"
                " 550, 15, 0.67, 0.33, 0.33)",
                region,
                _T0,
            )
        certs = {}
        for site in (A1, B1):
            certs[site] = int(
                await conn.fetchval(
                    "INSERT INTO green_certificates (site_id, kind, period_start, period_end, mwh)"
                    " VALUES ($1, 'certificate', $2, $3, 5) RETURNING certificate_id",
                    site,
                    _T0,
                    _T0 + timedelta(days=1),
                )
            )
        return certs
    finally:
        await conn.close()


async def _key_states(s: Settings) -> dict[str, str]:
    """An expired and a revoked key, made as any other and then aged or revoked in the database."""
    expired = await make_key(s, "operator", expires_in_days=1)
    revoked = await make_key(s, "operator")
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        await conn.execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE key_id = $1",
            expired.split("_")[1],
        )
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", revoked.split("_")[1])
    finally:
        await conn.close()
    return {"expired": expired, "revoked": revoked}


def _normalised(r: httpx.Response, names: list[str]) -> tuple[int, str]:
    text = r.text
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, "<id>")
    return r.status_code, text


async def api(ctx: Context) -> RowResult:
    r = RowResult("API")
    async with row_topics(ctx, "api") as topics:
        port = free_port()
        s = topics.model_copy(update={"api_port": port, "api_key_cache_s": 0.0})
        certs = await _setup(s)
        keys = {
            "admin": await make_key(s, rate_per_s=100_000, burst=100_000),
            "manager_a": await make_key(s, "manager", tenant="api-tenant-a"),
            "manager_b": await make_key(s, "manager", tenant="api-tenant-b"),
            "manager_site_a1": await make_key(s, "manager", sites=[A1]),
            "limited": await make_key(s, "operator", rate_per_s=0.5, burst=2),
            **await _key_states(s),
        }
        proc = ctx.procs.add(WattstreamProcess(s, ["api", "--log-level", "WARNING"], ctx.log_dir / "api.log"))
        await proc.start()
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:

                async def up() -> bool:
                    try:
                        return (await client.get("/healthz")).status_code == 200
                    except httpx.TransportError:
                        return False

                if await wait_until(up, 60, interval=0.2) is None:
                    raise RuntimeError(f"the API did not answer /healthz within 60 s: {proc.last_lines()}")
                matrix = await _isolation(client, keys, certs, r)
                refused = await _bad_keys(client, keys, r)
                limit = await _rate_limit(client, keys["limited"], r)
                malformed = await _malformed(ctx, client, port, keys["admin"], certs, r)
                if not proc.alive():
                    r.problems.append(f"the API process exited: {proc.last_lines()}")
                elif (await client.get("/healthz")).status_code != 200:
                    r.problems.append("the API no longer answers /healthz after the malformed queries")
        finally:
            rc, took = await proc.terminate(within=20)
            if rc not in (0, -signal.SIGTERM):  # uvicorn re-raises the signal it stopped for
                r.problems.append(f"the API did not stop cleanly on SIGTERM: exit {rc} after {took:.1f} s")
        r.load = (
            f"{matrix[1]} isolation probes, {refused[1]} bad-key requests, "
            f"{malformed[1]:,} malformed query strings"
        )
        r.faults = "other tenants' ids, forged/expired/revoked keys, a 0.5/s key, malformed queries"
        r.figure = (
            f"isolation {matrix[0]}/{matrix[1]} differ from missing; "
            f"bad keys {refused[0]}/{refused[1]} → 401; "
            f"rate limit: {limit}; malformed: {malformed[0]}/{malformed[1]:,} → 5xx ({malformed[2]})"
        )
    return r


async def _isolation(
    client: httpx.AsyncClient, keys: dict[str, str], certs: dict[str, int], r: RowResult
) -> tuple[int, int]:
    """(answers that differ from a missing object's, probes)."""

    async def call(key: str, method: str, path: str, body: Any = None) -> httpx.Response:
        return await client.request(method, path, headers={"Authorization": f"Bearer {keys[key]}"}, json=body)

    objects: dict[str, dict[str, Any]] = {}
    for tenant, key, site, region in (("a", "manager_a", A1, RA), ("b", "manager_b", B1, RB)):
        rule = await call(
            key,
            "POST",
            "/v1/alert-rules",
            {
                "name": f"battery {tenant}",
                "kind": "threshold",
                "metric": "site_power_kw",
                "threshold": 100,
                "resolve_threshold": 80,
                "site": site,
            },
        )
        silence = await call(
            key,
            "POST",
            "/v1/silences",
            {
                "matchers": [{"name": "site", "value": site}],
                "ends_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                "comment": "battery",
            },
        )
        hook = await call(
            key, "POST", "/v1/webhooks", {"name": f"battery {tenant}", "url": "http://127.0.0.1:9/hook"}
        )
        for what, resp in (("rule", rule), ("silence", silence), ("webhook", hook)):
            if resp.status_code != 201:
                raise RuntimeError(
                    f"could not create tenant {tenant}'s {what}: {resp.status_code} {resp.text[:200]}"
                )
        objects[tenant] = {
            "site": site,
            "region": region,
            "cert": certs[site],
            "rule": rule.json()["rule_id"],
            "silence": silence.json()["silence_id"],
            "hook": hook.json()["subscription_id"],
        }
    missing = {
        "site": MISSING_SITE,
        "region": MISSING_REGION,
        "cert": MISSING_ID,
        "rule": MISSING_ID,
        "silence": MISSING_ID,
        "hook": MISSING_ID,
    }
    differ = probes = 0
    for viewer, owner in (("manager_a", "b"), ("manager_b", "a"), ("manager_site_a1", "b")):
        theirs, own = objects[owner], objects["a" if owner == "b" else "b"]
        names = [str(v) for v in theirs.values()] + [str(v) for v in missing.values()]
        for (method, path, body), (_, missing_path, missing_body) in zip(
            _routes(theirs), _routes(missing), strict=True
        ):
            probes += 1
            a = await call(viewer, method, path, body)
            b = await call(viewer, method, missing_path, missing_body)
            # the same answer as for a missing object (404, or 403 where the role may not use the route)
            if a.status_code < 400 or _normalised(a, names) != _normalised(b, names):
                differ += 1
                r.problems.append(
                    f"isolation: {viewer} {method} {path} answered {a.status_code} {a.text[:160]!r}, "
                    f"a missing object {b.status_code} {b.text[:160]!r}"
                )
        if viewer != "manager_site_a1":  # its own objects are served (the matrix is not vacuous)
            for method, path, _ in _routes(own):
                if method != "GET" or path.endswith("/latest"):  # /latest: no live value held yet
                    continue
                if (got := await call(viewer, method, path)).status_code != 200:
                    r.problems.append(f"isolation: {viewer} could not read its own {path}: {got.status_code}")
    for tenant, key in (("a", "manager_a"), ("b", "manager_b")):  # nothing was deleted by the others
        o = objects[tenant]
        still = [
            (await call(key, "GET", f"/v1/alert-rules/{o['rule']}")).status_code == 200,
            (await call(key, "GET", f"/v1/webhooks/{o['hook']}/deliveries")).status_code == 200,
            any(x["silence_id"] == o["silence"] for x in (await call(key, "GET", "/v1/silences")).json()),
            any(
                x.get("certificate_id") == o["cert"]
                for x in (await call(key, "GET", f"/v1/sites/{o['site']}/certificates")).json()
            ),
        ]
        if not all(still):
            r.problems.append(f"isolation: tenant {tenant}'s objects were changed by another tenant: {still}")
    return differ, probes


async def _bad_keys(client: httpx.AsyncClient, keys: dict[str, str], r: RowResult) -> tuple[int, int]:
    admin = keys["admin"]
    forged = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
    cases: dict[str, str | None] = {
        "no key": None,
        "malformed": "Bearer not-a-key",
        "forged": f"Bearer {forged}",
        "unknown": "Bearer ws_000000000000_" + "x" * 43,
        "revoked": f"Bearer {keys['revoked']}",
        "expired": f"Bearer {keys['expired']}",
        "basic scheme": "Basic YWRtaW46YWRtaW4=",
        "no token": "Bearer",
        "truncated": f"Bearer {admin[: len(admin) // 2]}",
    }
    refused = total = 0
    for label, header in cases.items():
        for path in ("/v1/sites", f"/v1/sites/{A1}", "/v1/grid/regions"):
            total += 1
            got = await client.get(path, headers={"Authorization": header} if header else {})
            if got.status_code == 401 and got.headers.get("www-authenticate") == "Bearer":
                refused += 1
            else:
                r.problems.append(f"keys: {label} on {path} answered {got.status_code} {got.text[:120]!r}")
    return refused, total


async def _rate_limit(client: httpx.AsyncClient, key: str, r: RowResult) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    codes = [(await client.get("/v1/grid/regions", headers=headers)).status_code for _ in range(3)]
    last = await client.get("/v1/grid/regions", headers=headers)
    retry = last.headers.get("retry-after", "")
    if codes != [200, 200, 429] or last.status_code != 429 or not retry.isdigit() or int(retry) < 1:
        r.problems.append(
            f"rate limit: a burst of 2 answered {[*codes, last.status_code]}, Retry-After {retry!r}"
        )
        return f"{[*codes, last.status_code]}"
    await asyncio.sleep(int(retry))
    again = (await client.get("/v1/grid/regions", headers=headers)).status_code
    if again != 200:
        r.problems.append(f"rate limit: after waiting Retry-After ({retry} s) the key got {again}")
    return f"429 after the burst of 2, Retry-After {retry} s, then {again}"


# --- malformed query strings ---------------------------------------------------------------

_DATES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-01-01T24:00:01Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+23:59",
    "2026-01-01T00:00:00.1234567891234Z",
    "-2026-01-01T00:00:00Z",
    "2026-01-01",
    "20260101T000000Z",
    "1e308",
    "-1",
    "0",
    "99999999999999999999",
    "nan",
    "inf",
    "",
    " ",
    "now",
    "yesterday",
    "\x00",
    "2026-01-01T00:00:00Z\x00",
    "２０２６-01-01T00:00:00Z",
    "1700000000000",
    "2026-01-01T00:00:00+08:00:00",
    "1969-12-31T23:59:59.999999Z",
    "2026-01-01T00:00:00-00:00",
    "2026-W01-1",
    "2026-001",
]
_INTS = [
    "-1",
    "0",
    "1",
    "9999999999999999999",
    "-9223372036854775809",
    "9223372036854775808",
    "1e309",
    "1e3",
    "NaN",
    "Infinity",
    "1.5",
    "0x10",
    "１２",
    "",
    " 1",
    "+1",
    "0" * 30 + "1",
    "9" * 400,
    "\x00",
    "-0",
    "2147483648",
    "1_000",
    "٣",
]
_CURSORS = [
    "9999999999999999999",
    "-9999999999999999999",
    "-1",
    "0",
    "AAAA",
    "====",
    "9" * 5000,
    "1.5",
    "\x00",
    "null",
    "{}",
    "[]",
    "eyJ0cyI6OTk5OTk5OTk5OTk5OTk5OTl9",
    "253402300800000000",
    "-62135596800000001",
]
_ENUMS = ["", "HOUR", "week", "15MIN", "\x00", "day\x00", "d" * 1000, "日", "hour,day", "null", "1"]
_BOOLS = ["maybe", "2", "", "truee", "\x00", "yes please", "-1"]
_STRINGS = [
    "",
    "a b",
    "../../etc/passwd",
    "x" * 5000,
    "\x00",
    "日本語",
    "a\nb",
    "'; DROP TABLE sites; --",
    "%",
    "*",
    ".",
    "Mars/Olympus",
    "UTC\x00",
    "Etc/GMT+99",
    "posix/Asia/Shanghai",
    "right/UTC",
    "localtime",
    "x" * 300,
]
_RAW = [
    "%",
    "%ZZ",
    "%C3%28",
    "%FF%FE",
    "%00",
    "&&&",
    "==",
    "a=b=c",
    "%E2%80%AE",
    "+",
    "%2B",
    "a%",
    "[]=1",
    "start[]=x",
    "%F0%28%8C%BC",
    "%ED%A0%80",
    ";",
    "start",
    "=x",
]
# the cases, each sent once whatever the random draw
_KNOWN = [
    "/v1/sites/{site}/meters/main/readings?start=2026-04-01T00:00:00Z&end=2026-04-02T00:00:00Z&cursor=9999999999999999999",
    "/v1/sites/{site}/meters/main/readings?start=0001-01-01T00:00:00%2B14:00&end=2026-04-02T00:00:00Z",
    "/v1/sites/{site}/meters/main/readings?start=2026-04-01T00:00:00Z&end=9999-12-31T23:59:59-14:00",
    "/v1/sites/{site}/meters/main/energy?start=0001-01-01T00:00:00%2B14:00&end=2026-04-02T00:00:00Z",
    "/v1/sites/{site}/meters/main/energy?start=2026-04-01T00:00:00Z&end=9999-12-31T23:59:59-14:00",
    "/v1/grid/{region}/intensity?start=0001-01-01T00:00:00%2B14:00&end=2026-04-02T00:00:00Z",
    "/v1/grid/{region}/intensity?start=2026-04-01T00:00:00Z&end=2026-04-02T00:00:00Z&as_of=9999-12-31T23:59:59-14:00",
    "/v1/grid/{region}/lowest-carbon-window?start=9999-12-31T23:59:59-14:00",
    "/v1/grid/{region}/lowest-carbon-window?start=0001-01-01T00:00:00%2B14:00",
    "/v1/sites/{site}/emissions?start=2026-04-01T00:00:00Z&end=2026-04-02T00:00:00Z&as_of=0001-01-01T00:00:00%2B14:00",
]


def _kind(schema: dict[str, Any]) -> str:
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    for o in options:
        if o.get("type") == "null":
            continue
        if "enum" in o:
            return "enum"
        if o.get("format") == "date-time":
            return "date"
        if o.get("type") in ("integer", "number"):
            return "int"
        if o.get("type") == "boolean":
            return "bool"
        if o.get("type") == "array":
            return "array"
        return "string"
    return "string"


def _valid(name: str, kind: str, schema: dict[str, Any]) -> str | None:
    if name == "start":
        return "2026-04-01T00:00:00Z"
    if name == "end":
        return "2026-04-02T00:00:00Z"
    if kind == "enum":
        options = schema.get("anyOf") or [schema]
        return str(next(o["enum"][0] for o in options if "enum" in o))
    return None


def _bad(name: str, kind: str, rng: random.Random) -> str:
    if name == "cursor":
        pool = _CURSORS
    else:
        pool = {"date": _DATES, "int": _INTS, "enum": _ENUMS, "bool": _BOOLS}.get(kind, _STRINGS)
    return quote(rng.choice(pool), safe="")


def _queries(spec: dict[str, Any], ids: dict[str, str], n: int, rng: random.Random) -> list[str]:
    """`n` request targets over every GET route of the spec, each with something wrong."""
    routes = []
    for path, ops in spec.get("paths", {}).items():
        op = ops.get("get")
        if op is None or path.startswith("/v1/stream/") or not path.startswith("/v1/"):
            continue
        routes.append((path, [p for p in op.get("parameters", []) if p.get("in") in ("query", "path")]))
    out = [k.format(site=ids["site"], region=ids["region"]) for k in _KNOWN]
    while len(out) < n:
        path, params = rng.choice(routes)
        query: list[tuple[str, str]] = []
        concrete = path
        for p in params:
            name, kind = p["name"], _kind(p.get("schema", {}))
            if p["in"] == "path":
                concrete = concrete.replace("{" + name + "}", ids.get(name, "1"))
            elif (v := _valid(name, kind, p.get("schema", {}))) is not None:
                query.append((name, quote(v, safe="")))
        mode = rng.random()
        queryable = [p for p in params if p["in"] == "query"]
        if mode < 0.7 and queryable:
            for p in rng.sample(queryable, min(len(queryable), rng.randint(1, 3))):
                bad = _bad(p["name"], _kind(p.get("schema", {})), rng)
                query = [(k, v) for k, v in query if k != p["name"]] + [(p["name"], bad)]
        elif mode < 0.8:
            names = [p["name"] for p in params if p["in"] == "path"]
            if names:
                concrete = path.replace(
                    "{" + rng.choice(names) + "}", quote(rng.choice(_STRINGS + _INTS), safe="")
                )
                for name, value in ids.items():
                    concrete = concrete.replace("{" + name + "}", value)
        elif mode < 0.9:
            query.append(
                (rng.choice(_RAW), "") if rng.random() < 0.5 else (rng.choice(_RAW), rng.choice(_RAW))
            )
        else:
            extra = rng.choice(queryable)["name"] if queryable else "start"
            query += [
                (extra, _bad(extra, "date", rng)),
                ("unknown_parameter", "1"),
                (extra, ""),
            ] * rng.randint(1, 20)
        text = "&".join(f"{k}={v}" if v else k for k, v in query)
        out.append(concrete + ("?" + text if text else ""))
    return out[:n]


async def _raw_get(port: int, target: str, token: str) -> tuple[int | None, bytes]:
    """One request with the target exactly as given (no client re-encoding), on its own connection."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, TimeoutError):
        return None, b"connection refused"
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n".encode()
        )
        data = await asyncio.wait_for(reader.read(), 30)
    except (OSError, TimeoutError) as exc:
        return None, repr(exc).encode()
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1.") or not data[9:12].isdigit():
        return None, data[:200]
    return int(data[9:12]), data.partition(b"\r\n\r\n")[2][:300]


async def _malformed(
    ctx: Context, client: httpx.AsyncClient, port: int, token: str, certs: dict[str, int], r: RowResult
) -> tuple[int, int, str]:
    """(5xx or unanswered, queries sent, the answers by status class)."""
    spec = (await client.get("/openapi.json")).json()
    ids = {
        "site": A1,
        "meter": "main",
        "region": RA,
        "fingerprint": "0123456789abcdef",
        "rule_id": "1",
        "silence_id": "1",
        "subscription_id": "1",
        "certificate_id": str(certs[A1]),
    }
    targets = _queries(spec, ids, ctx.scale.api_queries, random.Random(ctx.seed + 5))
    classes: Counter[str] = Counter()
    bad = 0
    t0 = time.monotonic()
    for i, target in enumerate(targets):
        status, body = await _raw_get(port, target, token)
        classes["no answer" if status is None else f"{status // 100}xx"] += 1
        if status is None or status >= 500:
            bad += 1
            if bad <= 12:
                r.problems.append(
                    f"malformed query answered {status or 'nothing'}: GET {target[:200]} → {body[:160]!r}"
                )
        if i % 250 == 249:
            ctx.progress.say(f"{i + 1:,}/{len(targets):,} malformed queries, {bad} 5xx or unanswered")
    if bad > 12:
        r.problems.append(f"... {bad - 12} more malformed queries answered 5xx or nothing")
    ctx.progress.say(f"{len(targets):,} malformed queries in {time.monotonic() - t0:.1f} s")
    return bad, len(targets), ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
