"""The alert state machine and the values alert rules compare: pure functions, no I/O.

Every rule kind reduces to one value per observation compared with a threshold: a metric, the
seconds since a meter was last heard, a quota projection's share of its limit, a sub-meter
imbalance, an anomaly score. `step` moves one alert (a rule on one subject) through

    inactive → pending → firing → (resolved) inactive

on observations in event-time order: pending once the value breaches the threshold, firing
once it has breached for `for_s`, resolved once it is back past the resolve threshold; in the
band between the two thresholds a firing alert stays firing (hysteresis), so a value that
oscillates around the threshold fires once and resolves once. An observation no newer than
the last one evaluated is ignored: a replayed batch or a late restatement of an old interval
never moves an alert again, and every transition is a function of the data alone, so its
event id is the same however often it is computed.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import numpy as np

from core.errors import InvalidInput

__all__ = [
    "BUCKET_METRICS",
    "COMPARATORS",
    "AlertState",
    "BucketFigures",
    "Condition",
    "Transition",
    "anomaly_hours",
    "anomaly_score",
    "event_id",
    "fingerprint",
    "local_period",
    "preferred_intensity",
    "quota_ratio",
    "silenced",
    "site_power_series",
    "step",
]

Comparator = Literal[">", ">=", "<", "<="]
COMPARATORS: Final = (">", ">=", "<", "<=")
State = Literal["inactive", "pending", "firing"]
_US = 1_000_000
# a flat baseline (MAD 0) would make any change infinitely anomalous: the scale is at least
# this share of the median
_MIN_RELATIVE_SCALE: Final = 0.05
_MAD_TO_SIGMA: Final = 1.4826


@dataclass(frozen=True, slots=True)
class Condition:
    """`value comparator threshold` breaches; back past `resolve_threshold` clears."""

    comparator: Comparator
    threshold: float
    resolve_threshold: float
    for_s: float = 0.0

    def __post_init__(self) -> None:
        if self.comparator not in COMPARATORS:
            raise InvalidInput(f"comparator must be one of {COMPARATORS}, not {self.comparator!r}")
        if not (math.isfinite(self.threshold) and math.isfinite(self.resolve_threshold)):
            raise InvalidInput("thresholds must be finite")
        upward = self.comparator in (">", ">=")
        if upward and self.resolve_threshold > self.threshold:
            raise InvalidInput("for > and >=, the resolve threshold must not be above the threshold")
        if not upward and self.resolve_threshold < self.threshold:
            raise InvalidInput("for < and <=, the resolve threshold must not be below the threshold")
        if not (math.isfinite(self.for_s) and self.for_s >= 0):
            raise InvalidInput("for_s must be finite and not negative")

    def breaches(self, value: float) -> bool:
        match self.comparator:
            case ">":
                return value > self.threshold
            case ">=":
                return value >= self.threshold
            case "<":
                return value < self.threshold
            case _:
                return value <= self.threshold

    def clears(self, value: float) -> bool:
        """Back on the other side of the resolve threshold (its boundary counts as clear)."""
        if self.comparator in (">", ">="):
            return value <= self.resolve_threshold and not self.breaches(value)
        return value >= self.resolve_threshold and not self.breaches(value)


@dataclass(frozen=True, slots=True)
class AlertState:
    state: State
    since_us: int | None  # pending since, or firing since
    last_ts_us: int  # the newest observation evaluated
    last_value: float | None


@dataclass(frozen=True, slots=True)
class Transition:
    status: Literal["firing", "resolved"]
    starts_at_us: int
    at_us: int
    value: float


def step(
    cond: Condition, state: AlertState | None, ts_us: int, value: float | None
) -> tuple[AlertState | None, Transition | None]:
    """One observation. Returns the new state (None: nothing to store, the alert has never
    been evaluated with a value) and the transition it causes, if any."""
    if value is None or not math.isfinite(value):
        return state, None
    if state is not None and ts_us <= state.last_ts_us:
        return state, None
    current = state or AlertState("inactive", None, ts_us, value)
    seen = replace(current, last_ts_us=ts_us, last_value=value)
    if current.state == "firing":
        if cond.clears(value):
            started = current.since_us if current.since_us is not None else ts_us
            return (
                AlertState("inactive", None, ts_us, value),
                Transition("resolved", started, ts_us, value),
            )
        return seen, None
    if not cond.breaches(value):
        return AlertState("inactive", None, ts_us, value), None
    since = current.since_us if current.state == "pending" and current.since_us is not None else ts_us
    if (ts_us - since) >= cond.for_s * _US:
        return AlertState("firing", ts_us, ts_us, value), Transition("firing", ts_us, ts_us, value)
    return AlertState("pending", since, ts_us, value), None


def fingerprint(rule_id: int, subject: str) -> str:
    """A stable id of one rule on one subject: 16 hex digits, as Alertmanager's are."""
    return hashlib.sha256(f"{rule_id}\x00{subject}".encode()).hexdigest()[:16]


def event_id(fp: str, status: str, starts_at_us: int) -> str:
    """The same transition always gets the same id: receivers de-duplicate on it."""
    return f"{fp}-{starts_at_us}-{status}"


def anomaly_score(value: float, history: Sequence[float]) -> tuple[float, float, float]:
    """How far `value` is from the usual: |value − median| / scale, where scale is the median
    absolute deviation of `history` as a standard deviation (×1.4826), but at least 5 % of the
    median. Returns (score, median, scale). Robust: a few odd days in the history do not move it."""
    h = np.asarray(history, dtype=np.float64)
    h = h[np.isfinite(h)]
    if not len(h):
        raise InvalidInput("an anomaly needs a history of at least one value")
    median = float(np.median(h))
    scale = max(_MAD_TO_SIGMA * float(np.median(np.abs(h - median))), _MIN_RELATIVE_SCALE * abs(median), 1e-9)
    return abs(value - median) / scale, median, scale


def local_period(at: datetime, tz: str, period: Literal["month", "year"]) -> tuple[datetime, datetime]:
    """The local calendar month or year containing `at` (aware) in zone `tz`, as aware datetimes."""
    if at.tzinfo is None:
        raise InvalidInput("`at` must be timezone-aware")
    local = at.astimezone(ZoneInfo(tz))
    if period == "month":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    else:
        start = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1)
    return start, end  # ZoneInfo gives each its own offset, so a DST change inside is honoured


def quota_ratio(to_date: float, start: datetime, end: datetime, at: datetime, limit: float) -> float:
    """The period's projected total (straight-line from what was used to date) as a share of
    `limit`: 1.0 means on course to use exactly the quota."""
    if limit <= 0:
        raise InvalidInput("a quota must be positive")
    # in UTC: subtracting two datetimes of one zone counts wall-clock time across a DST change
    start, end, at = start.astimezone(UTC), end.astimezone(UTC), at.astimezone(UTC)
    elapsed = (at - start) / timedelta(seconds=1)
    length = (end - start) / timedelta(seconds=1)
    if elapsed <= 0 or length <= 0:
        raise InvalidInput("`at` must fall inside the period")
    return to_date * (length / min(elapsed, length)) / limit


def _matches(matcher: dict[str, Any], labels: dict[str, str]) -> bool:
    value = labels.get(str(matcher.get("name", "")), "")
    if matcher.get("is_regex"):
        try:
            hit = re.fullmatch(str(matcher.get("value", "")), value) is not None
        except re.error:  # the API refuses such patterns; one stored before matches nothing
            hit = False
    else:
        hit = value == matcher.get("value")
    return hit if matcher.get("is_equal", True) else not hit


def silenced(labels: dict[str, str], silences: Sequence[tuple[list[dict[str, Any]], str | None]]) -> bool:
    """Whether an alert with these labels matches any silence (all of its matchers; a tenant's
    silence only its own alerts)."""
    for matchers, tenant in silences:
        if tenant is not None and labels.get("tenant") != tenant:
            continue
        if matchers and all(_matches(m, labels) for m in matchers):
            return True
    return False


# --- the values rules observe ------------------------------------------------------------


def site_power_series(
    before: Mapping[int, float], readings: Iterable[tuple[int, int, float]]
) -> list[tuple[int, float]]:
    """A site's power at each moment a batch's readings change it: the sum over its total meters
    of each one's latest power. `before` is the latest power of the meters not in the batch;
    `readings` are (epoch µs, meter, kW) in any order. Readings sharing a time give one value,
    after all of them."""
    current = dict(before)
    series: list[tuple[int, float]] = []
    for ts, meter, kw in sorted(readings):
        current[meter] = kw
        if series and series[-1][0] == ts:
            series.pop()
        series.append((ts, sum(current.values())))
    return series


@dataclass(frozen=True, slots=True)
class BucketFigures:
    """A site's completed energy bucket: kWh by meter role (None where it has no such meter)."""

    total_kwh: float | None
    main_kwh: float | None
    sub_kwh: float | None
    it_kwh: float | None
    co2e_kg: float | None
    bucket_s: int


def _energy(f: BucketFigures) -> tuple[float | None, dict[str, float | None]]:
    return f.total_kwh, {}


def _emissions_rate(f: BucketFigures) -> tuple[float | None, dict[str, float | None]]:
    return (None if f.co2e_kg is None else f.co2e_kg * 3600.0 / f.bucket_s), {}


def _pue(f: BucketFigures) -> tuple[float | None, dict[str, float | None]]:
    # no IT energy (or none measured) is no PUE, not an infinite one
    return (f.total_kwh / f.it_kwh if f.total_kwh is not None and f.it_kwh else None), {}


def _imbalance(f: BucketFigures) -> tuple[float | None, dict[str, float | None]]:
    value = abs(f.main_kwh - f.sub_kwh) / f.main_kwh if f.main_kwh and f.sub_kwh is not None else None
    return value, {"main_kwh": f.main_kwh, "sub_items_kwh": f.sub_kwh}


BucketMetric = Callable[[BucketFigures], tuple[float | None, dict[str, float | None]]]
# The metrics observed once per completed bucket: a rule's metric names one, and its value (with
# the detail an alert shows) comes from the bucket's figures alone.
BUCKET_METRICS: Final[Mapping[str, BucketMetric]] = {
    "interval_energy_kwh": _energy,
    "emissions_rate_kg_per_h": _emissions_rate,
    "pue": _pue,
    "imbalance": _imbalance,
}


def anomaly_hours(at: datetime, tz: str, days: int) -> tuple[datetime, list[datetime]]:
    """The local hour that ends at or before `at` (its end, in UTC) and the starts (UTC) of that
    hour and of the same wall-clock hour on each of the `days` days before, newest first."""
    if at.tzinfo is None:
        raise InvalidInput("`at` must be timezone-aware")
    if days < 1:
        raise InvalidInput("an anomaly needs at least one day of history")
    hour_end = at.astimezone(ZoneInfo(tz)).replace(minute=0, second=0, microsecond=0)
    # aware arithmetic in one zone keeps the wall-clock hour across a DST change
    starts = [(hour_end - timedelta(hours=1)) - timedelta(days=d) for d in range(days + 1)]
    return hour_end.astimezone(UTC), [s.astimezone(UTC) for s in starts]


def preferred_intensity(
    rows: Iterable[Mapping[str, Any]],
    *,
    scope: str,
    basis: str | None = None,
    factor_set: str | None = None,
    preference: Sequence[str] = ("consumption", "production", "published"),
) -> list[Mapping[str, Any]]:
    """Per interval (`ts`), the one intensity row a grid rule watches: actual, of its scope (or
    published), of the rule's basis if it names one, else the first basis in `preference`; in
    time order."""
    order = [basis] if basis is not None else list(preference)
    best: dict[Any, Mapping[str, Any]] = {}
    for r in rows:
        if r["kind"] != "actual" or r["scope"] not in (scope, "published") or r["basis"] not in order:
            continue
        if factor_set is not None and r["factor_set"] != factor_set:
            continue
        held = best.get(r["ts"])
        if held is None or order.index(r["basis"]) < order.index(held["basis"]):
            best[r["ts"]] = r
    return [best[t] for t in sorted(best)]
