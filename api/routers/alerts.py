"""Alert rules, alerts now and their history, acknowledgements, silences and webhook subscriptions.

Rules are evaluated in the ingest workers (`ingest.alerts`); this router only configures them and
reads what the workers wrote. Scope: a manager's rules, silences and subscriptions are its
tenant's (row-level security hides the others), and it sees the alerts of its tenant and sites;
another tenant's alert, rule, silence or subscription answers 404 like a missing one.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from fastapi import APIRouter, Path, Query, Response

from api.auth import AlertsAck, AlertsRead, AlertsWrite, Principal, Scoped, SitesWrite
from api.errors import ApiError, Conflict, Forbidden, NotFound, error_responses
from api.params import RowId, site_or_404
from api.routers.grid import region_or_404
from core.alerting import silenced
from schemas.alerts import (
    Ack,
    AckCreate,
    AlertEventPublic,
    AlertPublic,
    AlertRuleCreate,
    AlertRulePublic,
    Attempt,
    DeliveryPublic,
    QuotasUpdate,
    SilenceCreate,
    SilencePublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)
from schemas.api import SitePublic
from schemas.messages import IDENTIFIER

__all__ = ["router"]

router = APIRouter(tags=["alerts"])

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_FP = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["1848ab165523de8f"])]
_ERR = error_responses(401, 403, 404, 422, 429)

_RULE_COLS = """rule_id, name, kind, metric, comparator, threshold, resolve_threshold, for_s, site_id, tenant,
    region, params, severity, labels, annotations, enabled, created_at, updated_at"""
_RULES = f"SELECT {_RULE_COLS} FROM alert_rules ORDER BY rule_id"  # noqa: S608 - constant
_RULE = f"SELECT {_RULE_COLS} FROM alert_rules WHERE rule_id = $1"  # noqa: S608 - constant
_ADD_RULE = f"""
INSERT INTO alert_rules (name, kind, metric, comparator, threshold, resolve_threshold, for_s, site_id, tenant,
                         region, params, severity, labels, annotations, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13::jsonb, $14::jsonb, $15)
RETURNING {_RULE_COLS}
"""  # noqa: S608 - constant
_REPLACE_RULE = f"""
UPDATE alert_rules
   SET name = $2, kind = $3, metric = $4, comparator = $5, threshold = $6, resolve_threshold = $7, for_s = $8,
       site_id = $9, tenant = $10, region = $11, params = $12::jsonb, severity = $13, labels = $14::jsonb,
       annotations = $15::jsonb, enabled = $16, updated_at = now()
 WHERE rule_id = $1
RETURNING {_RULE_COLS}
"""  # noqa: S608 - constant
_DELETE_RULE = "DELETE FROM alert_rules WHERE rule_id = $1"

# alert_state carries what each alert is about, so reads need no rule (a manager sees the alerts
# on its sites even of an operator's region-wide rule)
_ALERTS = """
SELECT a.fingerprint, a.state, a.since, a.last_ts, a.last_value, a.rule_id, a.subject, a.site_id, a.region,
       a.tenant, a.labels,
       (SELECT e.annotations FROM alerts e WHERE e.fingerprint = a.fingerprint AND e.status = 'firing'
         ORDER BY e.at DESC LIMIT 1) AS annotations,
       k.acked_at, k.acked_by, k.comment
  FROM alert_state a
  LEFT JOIN alert_acks k ON k.fingerprint = a.fingerprint AND k.starts_at = a.since AND a.state = 'firing'
 WHERE a.state = ANY($1::text[])
   AND ($2 OR a.tenant = $3 OR a.site_id = ANY($4::text[]))
   AND ($5::text IS NULL OR a.site_id = $5) AND ($6::text IS NULL OR a.region = $6)
   AND ($7::text IS NULL OR a.fingerprint = $7)
 ORDER BY a.since DESC NULLS LAST, a.fingerprint
 LIMIT $8
"""
_EVENTS = """
SELECT event_id, status, at, starts_at, ends_at, value, published_at FROM alerts
 WHERE fingerprint = $1 ORDER BY at DESC, recorded_at DESC LIMIT $2
"""
_ACK = """
INSERT INTO alert_acks (fingerprint, starts_at, acked_by, tenant, comment) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (fingerprint, starts_at) DO NOTHING
"""
_ACTIVE_SILENCES = "SELECT matchers, tenant FROM silences WHERE starts_at <= now() AND ends_at > now()"
_SILENCE_COLS = "silence_id, matchers, starts_at, ends_at, tenant, created_by, comment"
_SILENCES = f"""
SELECT {_SILENCE_COLS} FROM silences WHERE $1 OR ends_at > now() ORDER BY starts_at DESC LIMIT 1000
"""  # noqa: S608 - constant
_ADD_SILENCE = f"""
INSERT INTO silences (matchers, starts_at, ends_at, tenant, created_by, comment)
VALUES ($1::jsonb, $2, $3, $4, $5, $6) RETURNING {_SILENCE_COLS}
"""  # noqa: S608 - constant
_EXPIRE_SILENCE = f"""
UPDATE silences SET ends_at = greatest(starts_at + interval '1 microsecond', least(ends_at, now()))
 WHERE silence_id = $1 RETURNING {_SILENCE_COLS}
"""  # noqa: S608 - constant
_HOOK_COLS = "subscription_id, name, url, tenant, site_id, min_severity, enabled, created_at"
_HOOKS = f"SELECT {_HOOK_COLS} FROM webhook_subscriptions ORDER BY subscription_id"  # noqa: S608 - constant
_HOOK = f"SELECT {_HOOK_COLS} FROM webhook_subscriptions WHERE subscription_id = $1"  # noqa: S608 - constant
_ADD_HOOK = f"""
INSERT INTO webhook_subscriptions (name, url, secret, tenant, site_id, min_severity)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_HOOK_COLS}
"""  # noqa: S608 - constant
_DELETE_HOOK = "DELETE FROM webhook_subscriptions WHERE subscription_id = $1"
_DELIVERIES = """
SELECT delivery_id, subscription_id, event_id, fingerprint, status, attempts,
       CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at, last_error, created_at,
       finished_at
  FROM webhook_deliveries
 WHERE subscription_id = $1 AND ($2::text IS NULL OR status = $2)
 ORDER BY delivery_id DESC LIMIT $3
"""
_ATTEMPTS = """
SELECT delivery_id, attempt, at, http_status, error, duration_ms FROM webhook_attempts
 WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt
"""
_SET_QUOTAS = """
UPDATE sites SET energy_quota_month_kwh = $2, energy_quota_year_kwh = $3, carbon_quota_month_t = $4,
       carbon_quota_year_t = $5
 WHERE site_id = $1
RETURNING *, (SELECT count(*) FROM meters m WHERE m.site_id = sites.site_id) AS meters
"""


async def _deleted_or_404(conn: asyncpg.Connection, sql: str, key: int, what: str) -> Response:
    """Row-level security makes another tenant's row a missing one here too."""
    if (await conn.execute(sql, key)).endswith(" 0"):
        raise NotFound(f"{what} not found")
    return Response(status_code=204)


# --- rules ---


def _rule(r: asyncpg.Record) -> AlertRulePublic:
    return AlertRulePublic(
        **{k: v for k, v in dict(r).items() if k not in ("site_id", "params", "labels", "annotations")},
        site=r["site_id"],
        params=_decode(r["params"]),
        labels=_decode(r["labels"]),
        annotations=_decode(r["annotations"]),
    )


async def _rule_owner(conn: asyncpg.Connection, body: AlertRuleCreate, who: Principal) -> str | None:
    """The tenant a new rule belongs to, after checking the key may scope a rule so."""
    if body.site is not None:
        site = await site_or_404(conn, body.site, who)
        if body.tenant is not None and body.tenant != site["tenant"]:
            raise ApiError("a site rule's tenant is its site's", field="tenant")
        return str(site["tenant"])
    if who.all_sites:
        if body.region is not None:
            await region_or_404(conn, body.region, who)
        return body.tenant
    if body.region is not None and body.tenant is None:
        if body.metric not in ("grid_intensity_g_per_kwh", "nonfossil_share", "grid_silence_s"):
            raise Forbidden("a manager's rule on sites names its tenant or a site")
        await region_or_404(conn, body.region, who)
    if who.tenant is None:
        raise Forbidden("this key has no tenant: its rules name one of its sites")
    if body.tenant is not None and body.tenant != who.tenant:
        raise NotFound(f"tenant {body.tenant!r} not found")
    return who.tenant


def _rule_args(body: AlertRuleCreate, tenant: str | None) -> tuple[Any, ...]:
    return (
        body.name,
        body.kind,
        body.metric,
        body.comparator,
        body.threshold,
        body.resolve_threshold,
        body.for_s,
        body.site,
        tenant,
        body.region,
        _encode(body.params.model_dump(exclude_none=True)).decode(),
        body.severity,
        _encode(body.labels).decode(),
        _encode(body.annotations).decode(),
        body.enabled,
    )


@router.get("/v1/alert-rules", response_model=list[AlertRulePublic], summary="Alert rules", responses=_ERR)
async def list_rules(conn: Scoped, who: AlertsWrite) -> list[AlertRulePublic]:
    return [_rule(r) for r in await conn.fetch(_RULES)]


@router.post(
    "/v1/alert-rules",
    response_model=AlertRulePublic,
    status_code=201,
    summary="Create an alert rule",
    responses=_ERR,
)
async def create_rule(conn: Scoped, who: AlertsWrite, body: AlertRuleCreate) -> AlertRulePublic:
    tenant = await _rule_owner(conn, body, who)
    return _rule(await conn.fetchrow(_ADD_RULE, *_rule_args(body, tenant)))


@router.get(
    "/v1/alert-rules/{rule_id}", response_model=AlertRulePublic, summary="One alert rule", responses=_ERR
)
async def get_rule(conn: Scoped, who: AlertsWrite, rule_id: RowId) -> AlertRulePublic:
    row = await conn.fetchrow(_RULE, rule_id)
    if row is None:
        raise NotFound(f"alert rule {rule_id} not found")
    return _rule(row)


@router.put(
    "/v1/alert-rules/{rule_id}",
    response_model=AlertRulePublic,
    summary="Replace an alert rule (its alerts keep their state)",
    responses=_ERR,
)
async def replace_rule(
    conn: Scoped, who: AlertsWrite, rule_id: RowId, body: AlertRuleCreate
) -> AlertRulePublic:
    if await conn.fetchrow(_RULE, rule_id) is None:
        raise NotFound(f"alert rule {rule_id} not found")
    tenant = await _rule_owner(conn, body, who)
    return _rule(await conn.fetchrow(_REPLACE_RULE, rule_id, *_rule_args(body, tenant)))


@router.delete(
    "/v1/alert-rules/{rule_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an alert rule and the state of its alerts",
    responses=_ERR,
)
async def delete_rule(conn: Scoped, who: AlertsWrite, rule_id: RowId) -> Response:
    return await _deleted_or_404(conn, _DELETE_RULE, rule_id, f"alert rule {rule_id}")


# --- alerts ---


async def _alerts(
    conn: asyncpg.Connection,
    who: Principal,
    states: list[str],
    *,
    site: str | None = None,
    region: str | None = None,
    fingerprint: str | None = None,
    limit: int = 1000,
) -> list[AlertPublic]:
    rows = await conn.fetch(
        _ALERTS, states, who.all_alerts, who.tenant, sorted(who.sites), site, region, fingerprint, limit
    )
    quiet = (
        [(_decode(r["matchers"]), r["tenant"]) for r in await conn.fetch(_ACTIVE_SILENCES)] if rows else []
    )
    out = []
    for r in rows:
        labels = _decode(r["labels"])
        out.append(
            AlertPublic(
                fingerprint=r["fingerprint"],
                state=r["state"],
                since=r["since"],
                last_ts=r["last_ts"],
                value=r["last_value"],
                rule_id=r["rule_id"],
                subject=r["subject"],
                site=r["site_id"],
                region=r["region"],
                tenant=r["tenant"],
                labels=labels,
                annotations=_decode(r["annotations"]) if r["annotations"] else {},
                acknowledged=None
                if r["acked_at"] is None
                else Ack(acked_at=r["acked_at"], acked_by=r["acked_by"], comment=r["comment"]),
                silenced=silenced(labels, quiet),
            )
        )
    return out


@router.get(
    "/v1/alerts",
    response_model=list[AlertPublic],
    summary="Alerts now: firing (and pending, if asked), within the key's scope",
    responses=_ERR,
)
async def list_alerts(
    conn: Scoped,
    who: AlertsRead,
    state: Annotated[
        Literal["firing", "pending", "active"], Query(description="active: firing or pending")
    ] = "firing",
    site: Annotated[str | None, Query(pattern=IDENTIFIER)] = None,
    region: Annotated[str | None, Query(pattern=IDENTIFIER)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AlertPublic]:
    states: list[str] = ["firing", "pending"] if state == "active" else [state]
    return await _alerts(conn, who, states, site=site, region=region, limit=limit)


async def _alert_or_404(conn: asyncpg.Connection, who: Principal, fingerprint: str) -> AlertPublic:
    found = await _alerts(conn, who, ["inactive", "pending", "firing"], fingerprint=fingerprint, limit=1)
    if not found:
        raise NotFound(f"alert {fingerprint} not found")
    return found[0]


@router.get(
    "/v1/alerts/{fingerprint}",
    response_model=AlertPublic,
    summary="One alert (any state), by fingerprint",
    responses=_ERR,
)
async def get_alert(conn: Scoped, who: AlertsRead, fingerprint: _FP) -> AlertPublic:
    return await _alert_or_404(conn, who, fingerprint)


@router.get(
    "/v1/alerts/{fingerprint}/events",
    response_model=list[AlertEventPublic],
    summary="An alert's transitions, newest first, as published on the alerts topic",
    responses=_ERR,
)
async def alert_events(
    conn: Scoped, who: AlertsRead, fingerprint: _FP, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[AlertEventPublic]:
    await _alert_or_404(conn, who, fingerprint)
    return [AlertEventPublic(**dict(r)) for r in await conn.fetch(_EVENTS, fingerprint, limit)]


@router.post(
    "/v1/alerts/{fingerprint}/ack",
    response_model=AlertPublic,
    summary="Acknowledge a firing alert (this episode; a new firing needs a new acknowledgement)",
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
async def acknowledge(conn: Scoped, who: AlertsAck, fingerprint: _FP, body: AckCreate) -> AlertPublic:
    alert = await _alert_or_404(conn, who, fingerprint)
    if alert.state != "firing" or alert.since is None:
        raise Conflict(f"alert {fingerprint} is {alert.state}, not firing")
    await conn.execute(_ACK, fingerprint, alert.since, who.name, alert.tenant, body.comment)
    return await _alert_or_404(conn, who, fingerprint)


# --- silences ---


def _silence(r: asyncpg.Record) -> SilencePublic:
    return SilencePublic(**{**dict(r), "matchers": _decode(r["matchers"])})


@router.get("/v1/silences", response_model=list[SilencePublic], summary="Silences", responses=_ERR)
async def list_silences(
    conn: Scoped,
    who: AlertsWrite,
    include_expired: Annotated[bool, Query(description="also silences that have ended")] = False,
) -> list[SilencePublic]:
    return [_silence(r) for r in await conn.fetch(_SILENCES, include_expired)]


@router.post(
    "/v1/silences",
    response_model=SilencePublic,
    status_code=201,
    summary="Silence matching alerts' webhooks for a time (they stay on the topic and in the API)",
    responses=_ERR,
)
async def create_silence(conn: Scoped, who: AlertsWrite, body: SilenceCreate) -> SilencePublic:
    starts = body.starts_at or datetime.now(UTC)
    if body.ends_at <= starts:
        raise ApiError("ends_at must be after starts_at", field="ends_at")
    if not who.all_sites and who.tenant is None:
        raise Forbidden("this key has no tenant to silence alerts of")
    matchers = _encode([m.model_dump() for m in body.matchers]).decode()
    tenant = None if who.all_sites else who.tenant
    return _silence(
        await conn.fetchrow(_ADD_SILENCE, matchers, starts, body.ends_at, tenant, who.name, body.comment)
    )


@router.delete(
    "/v1/silences/{silence_id}", response_model=SilencePublic, summary="End a silence now", responses=_ERR
)
async def expire_silence(conn: Scoped, who: AlertsWrite, silence_id: RowId) -> SilencePublic:
    row = await conn.fetchrow(_EXPIRE_SILENCE, silence_id)
    if row is None:
        raise NotFound(f"silence {silence_id} not found")
    return _silence(row)


# --- webhooks ---


def _hook(r: asyncpg.Record) -> dict[str, Any]:
    return {**{k: v for k, v in dict(r).items() if k != "site_id"}, "site": r["site_id"]}


@router.get(
    "/v1/webhooks", response_model=list[WebhookPublic], summary="Webhook subscriptions", responses=_ERR
)
async def list_webhooks(conn: Scoped, who: AlertsWrite) -> list[WebhookPublic]:
    return [WebhookPublic(**_hook(r)) for r in await conn.fetch(_HOOKS)]


@router.post(
    "/v1/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    summary="Subscribe a URL to alert events (Alertmanager webhook format, HMAC-signed)",
    responses=_ERR,
)
async def create_webhook(conn: Scoped, who: AlertsWrite, body: WebhookCreate) -> WebhookCreated:
    tenant, site = body.tenant, body.site
    if site is not None:
        row = await site_or_404(conn, site, who)
        tenant = None if who.all_sites and tenant is None else row["tenant"]
    elif not who.all_sites:
        if who.tenant is None:
            raise Forbidden("this key has no tenant: subscribe one of its sites")
        if tenant is not None and tenant != who.tenant:
            raise NotFound(f"tenant {tenant!r} not found")
        tenant = who.tenant
    secret = body.secret or secrets.token_urlsafe(32)
    row = await conn.fetchrow(_ADD_HOOK, body.name, str(body.url), secret, tenant, site, body.min_severity)
    return WebhookCreated(**_hook(row), secret=secret)


@router.delete(
    "/v1/webhooks/{subscription_id}",
    status_code=204,
    response_class=Response,
    summary="Unsubscribe (its delivery log goes with it)",
    responses=_ERR,
)
async def delete_webhook(conn: Scoped, who: AlertsWrite, subscription_id: RowId) -> Response:
    return await _deleted_or_404(conn, _DELETE_HOOK, subscription_id, f"webhook {subscription_id}")


@router.get(
    "/v1/webhooks/{subscription_id}/deliveries",
    response_model=list[DeliveryPublic],
    summary="A subscription's deliveries with every attempt; `status=dead` lists those out of retries",
    responses=_ERR,
)
async def list_deliveries(
    conn: Scoped,
    who: AlertsWrite,
    subscription_id: RowId,
    status: Annotated[Literal["pending", "delivered", "dead", "silenced"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[DeliveryPublic]:
    if await conn.fetchrow(_HOOK, subscription_id) is None:  # row-level security: not another tenant's
        raise NotFound(f"webhook {subscription_id} not found")
    rows = await conn.fetch(_DELIVERIES, subscription_id, status, limit)
    log: dict[int, list[Attempt]] = {}
    for a in await conn.fetch(_ATTEMPTS, [r["delivery_id"] for r in rows]):
        log.setdefault(a["delivery_id"], []).append(
            Attempt(**{k: v for k, v in dict(a).items() if k != "delivery_id"})
        )
    return [DeliveryPublic(**dict(r), attempt_log=log.get(r["delivery_id"], [])) for r in rows]


# --- quotas ---


@router.put(
    "/v1/sites/{site}/quotas",
    response_model=SitePublic,
    summary="Set a site's energy and carbon quotas (能耗限额 / 碳排放限额) for quota-burn alerts",
    responses=_ERR,
    tags=["sites"],
)
async def set_quotas(
    conn: Scoped, who: SitesWrite, site: Annotated[str, Path(pattern=IDENTIFIER)], body: QuotasUpdate
) -> SitePublic:
    await site_or_404(conn, site, who)
    row = await conn.fetchrow(
        _SET_QUOTAS,
        site,
        body.energy_quota_month_kwh,
        body.energy_quota_year_kwh,
        body.carbon_quota_month_t,
        body.carbon_quota_year_t,
    )
    return SitePublic.model_validate(dict(row))
