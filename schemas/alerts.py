"""Alerting API models: rules, alerts, acknowledgements, silences, webhook subscriptions, quotas.

A rule's kind decides what value it compares (see `ingest.alerts`); `AlertRuleCreate.normalised`
fills the kind's metric and default thresholds, so every stored rule is one comparison.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from pydantic.config import JsonDict, JsonValue

from schemas.bounds import Instant
from schemas.messages import IDENTIFIER
from schemas.openapi import example

__all__ = [
    "GRID_METRICS",
    "SITE_METRICS",
    "AckCreate",
    "AlertEventPublic",
    "AlertPublic",
    "AlertRuleCreate",
    "AlertRulePublic",
    "DeliveryPublic",
    "QuotasUpdate",
    "RuleParams",
    "SilenceCreate",
    "SilencePublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookPublic",
]

SITE_METRICS = ("site_power_kw", "interval_energy_kwh", "emissions_rate_kg_per_h", "pue")
GRID_METRICS = ("grid_intensity_g_per_kwh", "nonfossil_share")
Kind = Literal["threshold", "staleness", "quota_burn", "imbalance", "anomaly"]
Comparator = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
# kind -> (metric, default threshold, default resolve threshold)
_KIND_DEFAULTS: dict[str, tuple[str, float | None, float | None]] = {
    "quota_burn": ("quota_ratio", 1.0, 0.95),
    "imbalance": ("imbalance", 0.1, None),
    "anomaly": ("anomaly_score", 4.0, 3.0),
}


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True)


class RuleParams(BaseModel):
    """Kind-specific settings; each applies to the kinds named."""

    model_config = ConfigDict(extra="forbid")

    quota: Literal["energy", "carbon"] | None = Field(None, description="quota_burn: which quota")
    period: Literal["month", "year"] | None = Field(None, description="quota_burn: local calendar period")
    limit: float | None = Field(
        None, gt=0, description="quota_burn: a budget (kWh or tCO2e) instead of the site's quota"
    )
    min_elapsed_s: float | None = Field(
        None, ge=0, description="quota_burn: no projection before this much of the period (default 1 day)"
    )
    days: int | None = Field(None, ge=3, le=366, description="anomaly: days of history (default 28)")
    min_samples: int | None = Field(
        None, ge=3, le=366, description="anomaly: complete days needed (default 7)"
    )
    basis: Literal["consumption", "production", "published"] | None = Field(
        None,
        description="grid rules: the intensity basis (default consumption, else production, else published)",
    )
    scope: Literal["lifecycle", "direct"] | None = Field(None, description="grid rules: factor scope")
    factor_set: str | None = Field(None, max_length=100, description="grid rules: only this factor set")


class AlertRuleCreate(BaseModel):
    model_config = example(
        {
            "name": "main meter power over 500 kW",
            "kind": "threshold",
            "metric": "site_power_kw",
            "comparator": ">",
            "threshold": 500,
            "resolve_threshold": 450,
            "for_s": 900,
            "site": "hz-b001",
            "severity": "warning",
        },
        {
            "name": "monthly energy quota",
            "kind": "quota_burn",
            "tenant": "hz-xihu",
            "params": {"quota": "energy", "period": "month"},
        },
        extra="forbid",
    )

    name: str = Field(min_length=1, max_length=200)
    kind: Kind
    metric: str | None = Field(
        None,
        description="threshold: one of "
        + ", ".join(SITE_METRICS + GRID_METRICS)
        + "; staleness: meter_silence_s (default) or grid_silence_s; other kinds: implied",
    )
    comparator: Comparator = ">"
    threshold: float | None = Field(
        None,
        description="threshold: required; staleness: seconds of silence; quota_burn: projection ÷ quota "
        "(default 1.0); imbalance: share of the main meters (default 0.1); anomaly: score (default 4)",
    )
    resolve_threshold: float | None = Field(
        None, description="back past this resolves (hysteresis); default the threshold"
    )
    for_s: float = Field(0.0, ge=0, le=30 * 86_400, description="the breach must last this long (event time)")
    site: str | None = Field(None, pattern=IDENTIFIER, description="one site")
    tenant: str | None = Field(None, pattern=IDENTIFIER, description="every site of a tenant")
    region: str | None = Field(
        None, pattern=IDENTIFIER, description="a grid region (grid rules), or its sites"
    )
    params: RuleParams = Field(default_factory=RuleParams)
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict, max_length=20)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=20)
    enabled: bool = True

    @model_validator(mode="after")
    def _complete(self) -> AlertRuleCreate:
        kind = self.kind
        if kind == "threshold":
            if self.metric not in SITE_METRICS + GRID_METRICS:
                raise ValueError(f"metric must be one of {', '.join(SITE_METRICS + GRID_METRICS)}")
            if self.threshold is None:
                raise ValueError("threshold is required")
        elif kind == "staleness":
            metric = self.metric or (
                "grid_silence_s" if self.region and not (self.site or self.tenant) else "meter_silence_s"
            )
            if metric not in ("meter_silence_s", "grid_silence_s"):
                raise ValueError("a staleness rule's metric is meter_silence_s or grid_silence_s")
            if self.threshold is None or self.threshold <= 0:
                raise ValueError("threshold (seconds of silence) is required and must be positive")
            self.metric = metric
        else:
            metric, default, resolve = _KIND_DEFAULTS[kind]
            if self.metric not in (None, metric):
                raise ValueError(f"a {kind} rule's metric is {metric}")
            self.metric = metric
            if self.threshold is None:
                self.threshold = default
                if self.resolve_threshold is None and resolve is not None:
                    self.resolve_threshold = resolve
        if self.resolve_threshold is None:
            self.resolve_threshold = self.threshold
        threshold, resolve = float(self.threshold or 0.0), float(self.resolve_threshold or 0.0)
        upward = self.comparator in (">", ">=")
        if (upward and resolve > threshold) or (not upward and resolve < threshold):
            raise ValueError(
                "the resolve threshold must be on the clear side of the threshold "
                "(not above it for > and >=, not below it for < and <=)"
            )
        grid = self.metric in GRID_METRICS or self.metric == "grid_silence_s"
        if grid and (self.site or self.tenant or not self.region):
            raise ValueError("a grid rule is scoped by region only")
        if not grid and not (self.site or self.tenant or self.region):
            raise ValueError("a site rule needs a site, a tenant or a region")
        if kind == "quota_burn" and self.params.quota is None:
            self.params = self.params.model_copy(update={"quota": "energy"})
        return self


# Examples: the first AlertRuleCreate example as stored (rule 1), the alert it raised at the
# afternoon cooling peak of hz-b001, and where that alert went; validated by
# tests/unit/test_openapi_examples.py. The fingerprint is `core.alerting.fingerprint(1, "hz-b001")`.
_FINGERPRINT: Final = "25a2441e0b135ec3"
_FIRING_EVENT: Final = f"{_FINGERPRINT}-1795500000000000-firing"  # core.alerting.event_id
_MATCHERS: Final[list[JsonValue]] = [
    {"name": "site", "value": "hz-b001", "is_regex": False, "is_equal": True}
]
_WEBHOOK_EXAMPLE: Final[JsonDict] = {
    "subscription_id": 2,
    "name": "西湖区 on-call",
    "url": "https://alerts.example.org/wattstream",
    "tenant": "hz-xihu",
    "site": None,
    "min_severity": "warning",
    "enabled": True,
    "created_at": "2026-11-02T03:00:00Z",
}


class AlertRulePublic(_Public):
    model_config = example(
        {
            "rule_id": 1,
            "name": "main meter power over 500 kW",
            "kind": "threshold",
            "metric": "site_power_kw",
            "comparator": ">",
            "threshold": 500.0,
            "resolve_threshold": 450.0,
            "for_s": 900.0,
            "site": "hz-b001",
            "tenant": "hz-xihu",
            "region": None,
            "params": {},
            "severity": "warning",
            "labels": {},
            "annotations": {},
            "enabled": True,
            "created_at": "2026-11-02T03:00:00Z",
            "updated_at": "2026-11-02T03:00:00Z",
        }
    )

    rule_id: int
    name: str
    kind: Kind
    metric: str
    comparator: Comparator
    threshold: float
    resolve_threshold: float
    for_s: float
    site: str | None
    tenant: str | None
    region: str | None
    params: dict[str, Any]
    severity: Severity
    labels: dict[str, str]
    annotations: dict[str, str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


class Ack(_Public):
    acked_at: datetime
    acked_by: str
    comment: str | None


class AlertPublic(_Public):
    """An alert now: a rule on one subject, pending or firing."""

    model_config = example(
        {
            "fingerprint": _FINGERPRINT,
            "state": "firing",
            "since": "2026-11-24T06:00:00Z",
            "last_ts": "2026-11-24T06:20:00Z",
            "value": 523.6,
            "rule_id": 1,
            "subject": "hz-b001",
            "site": "hz-b001",
            "region": "CN-ZJ",
            "tenant": "hz-xihu",
            "labels": {
                "alertname": "main meter power over 500 kW",
                "rule_id": "1",
                "kind": "threshold",
                "metric": "site_power_kw",
                "severity": "warning",
                "site": "hz-b001",
                "region": "CN-ZJ",
                "tenant": "hz-xihu",
            },
            "annotations": {
                "summary": "hz-b001: site_power_kw 523.6 > 500",
                "value": "523.6",
                "threshold": "500",
                "resolve_threshold": "450",
            },
            "acknowledged": {
                "acked_at": "2026-11-24T06:12:00Z",
                "acked_by": "西湖区政务中心 energy manager",
                "comment": "on it: chiller 2 restarted",
            },
            "silenced": False,
        }
    )

    fingerprint: str = Field(examples=["1848ab165523de8f"])
    state: Literal["inactive", "pending", "firing"]
    since: datetime | None = Field(description="pending since, or firing since (event time)")
    last_ts: datetime = Field(description="the newest observation evaluated (event time)")
    value: float | None
    rule_id: int
    subject: str
    site: str | None
    region: str | None
    tenant: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    acknowledged: Ack | None
    silenced: bool


class AlertEventPublic(_Public):
    model_config = example(
        {
            "event_id": _FIRING_EVENT,
            "status": "firing",
            "at": "2026-11-24T06:00:00Z",
            "starts_at": "2026-11-24T06:00:00Z",
            "ends_at": None,
            "value": 523.6,
            "published_at": "2026-11-24T06:00:02Z",
        }
    )

    event_id: str
    status: Literal["firing", "resolved"]
    at: datetime
    starts_at: datetime
    ends_at: datetime | None
    value: float | None
    published_at: datetime | None


class AckCreate(BaseModel):
    model_config = example({"comment": "on it: chiller 2 restarted"}, extra="forbid")

    comment: str | None = Field(None, max_length=1000, examples=["on it: chiller 2 restarted"])


class Matcher(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["site"])
    value: str = Field(max_length=500, examples=["hz-b001"])
    is_regex: bool = False
    is_equal: bool = True

    @model_validator(mode="after")
    def _compiles(self) -> Matcher:
        if self.is_regex:
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"value is not a regular expression: {exc}") from exc
        return self


class SilenceCreate(BaseModel):
    model_config = example(
        {
            "matchers": _MATCHERS,
            "starts_at": "2026-11-25T01:00:00Z",
            "ends_at": "2026-11-25T05:00:00Z",
            "comment": "planned chiller maintenance",
        },
        extra="forbid",
    )

    matchers: list[Matcher] = Field(min_length=1, max_length=20)
    starts_at: Instant | None = Field(None, description="default now")
    ends_at: Instant
    comment: str = Field("", max_length=1000, examples=["planned chiller maintenance"])


class SilencePublic(_Public):
    model_config = example(
        {
            "silence_id": 3,
            "matchers": _MATCHERS,
            "starts_at": "2026-11-25T01:00:00Z",
            "ends_at": "2026-11-25T05:00:00Z",
            "tenant": "hz-xihu",
            "created_by": "西湖区政务中心 energy manager",
            "comment": "planned chiller maintenance",
        }
    )

    silence_id: int
    matchers: list[dict[str, Any]]
    starts_at: datetime
    ends_at: datetime
    tenant: str | None
    created_by: str
    comment: str


class WebhookCreate(BaseModel):
    model_config = example(
        {
            "name": "西湖区 on-call",
            "url": "https://alerts.example.org/wattstream",
            "tenant": "hz-xihu",
            "min_severity": "warning",
        },
        extra="forbid",
    )

    name: str = Field(min_length=1, max_length=100, examples=["西湖区 on-call"])
    url: HttpUrl = Field(examples=["https://alerts.example.org/wattstream"])
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="the HMAC key; generated when not given"
    )
    tenant: str | None = Field(
        None, pattern=IDENTIFIER, description="alerts of this tenant (a manager's default)"
    )
    site: str | None = Field(None, pattern=IDENTIFIER, description="alerts of this site")
    min_severity: Severity = "info"


class WebhookPublic(_Public):
    model_config = example(_WEBHOOK_EXAMPLE)

    subscription_id: int
    name: str
    url: str
    tenant: str | None
    site: str | None
    min_severity: Severity
    enabled: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    # its own example: the inherited one lacks the secret
    model_config = example({**_WEBHOOK_EXAMPLE, "secret": "mT4vQ8xRk2LwN6pZc9HsYf3JdB7aGu5EoV1iXe0KtWq"})

    secret: str = Field(description="shown once: sign-check deliveries with it")


class Attempt(_Public):
    attempt: int
    at: datetime
    http_status: int | None
    error: str | None
    duration_ms: float


class DeliveryPublic(_Public):
    model_config = example(
        {
            "delivery_id": 88,
            "subscription_id": 2,
            "event_id": _FIRING_EVENT,
            "fingerprint": _FINGERPRINT,
            "status": "delivered",
            "attempts": 2,
            "next_attempt_at": None,
            "last_error": None,
            "created_at": "2026-11-24T06:00:02Z",
            "finished_at": "2026-11-24T06:00:08Z",
            "attempt_log": [
                {
                    "attempt": 1,
                    "at": "2026-11-24T06:00:03Z",
                    "http_status": 503,
                    "error": "HTTP 503",
                    "duration_ms": 212.4,
                },
                {
                    "attempt": 2,
                    "at": "2026-11-24T06:00:08Z",
                    "http_status": 200,
                    "error": None,
                    "duration_ms": 87.9,
                },
            ],
        }
    )

    delivery_id: int
    subscription_id: int
    event_id: str
    fingerprint: str
    status: Literal["pending", "delivered", "dead", "silenced"]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[Attempt]


class QuotasUpdate(BaseModel):
    """A site's quotas (能耗限额 / 碳排放限额); null removes one."""

    model_config = example(
        {
            "energy_quota_month_kwh": 120000,
            "energy_quota_year_kwh": 1300000,
            "carbon_quota_month_t": 70,
            "carbon_quota_year_t": 780,
        },
        extra="forbid",
    )

    energy_quota_month_kwh: float | None = Field(None, gt=0, examples=[120_000])
    energy_quota_year_kwh: float | None = Field(None, gt=0, examples=[1_300_000])
    carbon_quota_month_t: float | None = Field(None, gt=0, examples=[70])
    carbon_quota_year_t: float | None = Field(None, gt=0, examples=[780])
