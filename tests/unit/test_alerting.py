"""The alert kernels without services: `core.alerting`'s state machine and rule values, the
signed Alertmanager webhook contract of `schemas.webhooks`, and `ingest.webhooks.silenced`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.alerting import (
    BUCKET_METRICS,
    COMPARATORS,
    AlertState,
    BucketFigures,
    Condition,
    Transition,
    anomaly_hours,
    anomaly_score,
    event_id,
    fingerprint,
    local_period,
    preferred_intensity,
    quota_ratio,
    silenced,
    site_power_series,
    step,
)
from core.errors import InvalidInput
from ingest import webhooks
from schemas.webhooks import REPLAY_WINDOW_S, alertmanager_payload, sign, verify

US = 1_000_000
COMPARATOR_LITERALS: tuple[Literal[">", ">=", "<", "<="], ...] = (">", ">=", "<", "<=")
T0 = 1_795_486_500 * US  # 2026-11-24T02:15:00Z in µs

UP = Condition(">", threshold=10.0, resolve_threshold=8.0, for_s=60.0)
DOWN = Condition("<", threshold=10.0, resolve_threshold=12.0, for_s=60.0)


def _run(
    cond: Condition, obs: Sequence[tuple[int, float | None]], state: AlertState | None = None
) -> tuple[AlertState | None, list[Transition]]:
    """Feed observations through `step`; the final state and every transition, in order."""
    out: list[Transition] = []
    for ts, value in obs:
        state, tr = step(cond, state, ts, value)
        if tr is not None:
            out.append(tr)
    return state, out


# --- step ---


def test_breach_shorter_than_for_s_stays_pending() -> None:
    state, trs = _run(UP, [(T0, 11.0), (T0 + 30 * US, 12.0), (T0 + 59 * US, 11.0)])
    assert trs == []
    assert state is not None
    assert state.state == "pending"
    assert state.since_us == T0
    assert state.last_ts_us == T0 + 59 * US
    assert state.last_value == 11.0


def test_pending_then_back_under_threshold_is_inactive_and_restarts_the_clock() -> None:
    state, trs = _run(UP, [(T0, 11.0), (T0 + 30 * US, 9.0), (T0 + 60 * US, 11.0), (T0 + 100 * US, 11.0)])
    assert trs == []  # the breach restarted at T0+60s: only 40 s so far
    assert state is not None
    assert state.state == "pending"
    assert state.since_us == T0 + 60 * US


def test_reaching_for_s_fires_once_at_the_firing_observation() -> None:
    obs = [
        (T0, 11.0),
        (T0 + 30 * US, 11.0),
        (T0 + 60 * US, 12.0),
        (T0 + 90 * US, 13.0),
        (T0 + 120 * US, 11.0),
    ]
    state, trs = _run(UP, obs)
    assert trs == [Transition("firing", T0 + 60 * US, T0 + 60 * US, 12.0)]
    assert state is not None
    assert state.state == "firing"
    assert state.since_us == T0 + 60 * US
    assert state.last_ts_us == T0 + 120 * US


def test_hysteresis_band_keeps_firing_and_resolve_crossing_resolves_once() -> None:
    fire_at = T0 + 60 * US
    obs = [
        (T0, 11.0),
        (fire_at, 11.0),  # fires
        (T0 + 70 * US, 9.0),  # band: 8 < 9 <= 10
        (T0 + 80 * US, 10.0),  # the threshold itself is in the band for ">"
        (T0 + 90 * US, 8.5),
        (T0 + 95 * US, 11.0),  # back over: no second firing
        (T0 + 100 * US, 8.0),  # the resolve threshold itself counts as clear
        (T0 + 110 * US, 7.0),
        (T0 + 120 * US, 9.5),
    ]
    state, trs = _run(UP, obs)
    assert trs == [
        Transition("firing", fire_at, fire_at, 11.0),
        Transition("resolved", fire_at, T0 + 100 * US, 8.0),
    ]
    assert state is not None
    assert state.state == "inactive"


def test_band_values_while_firing_do_not_resolve() -> None:
    state, _ = _run(UP, [(T0, 11.0), (T0 + 60 * US, 11.0)])
    assert state is not None
    assert state.state == "firing"
    for i, v in enumerate([9.99, 8.01, 9.0, 10.0]):
        state, tr = step(UP, state, T0 + (61 + i) * US, v)
        assert tr is None
        assert state is not None
        assert state.state == "firing"
        assert state.since_us == T0 + 60 * US


def test_old_or_same_timestamp_is_ignored() -> None:
    state, _ = _run(UP, [(T0, 11.0), (T0 + 60 * US, 11.0)])
    assert state is not None
    assert state.state == "firing"
    for ts in (T0 + 60 * US, T0 + 59 * US, T0 - 1):
        again, tr = step(UP, state, ts, 0.0)  # would resolve if it counted
        assert again is state
        assert tr is None
    pending, _ = _run(UP, [(T0, 11.0)])
    again, tr = step(UP, pending, T0, 11.0)
    assert again is pending
    assert tr is None


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_or_non_finite_values_are_ignored(value: float | None) -> None:
    assert step(UP, None, T0, value) == (None, None)
    state, _ = _run(UP, [(T0, 11.0), (T0 + 60 * US, 11.0)])
    again, tr = step(UP, state, T0 + 120 * US, value)
    assert again is state
    assert tr is None
    # and a missing value does not advance the clock: the next real observation is still new
    _, tr = step(UP, state, T0 + 61 * US, 5.0)
    assert tr is not None
    assert tr.status == "resolved"


def test_for_zero_fires_on_first_breach() -> None:
    cond = Condition(">", 10.0, 8.0)
    state, tr = step(cond, None, T0, 10.5)
    assert tr == Transition("firing", T0, T0, 10.5)
    assert state == AlertState("firing", T0, T0, 10.5)


def test_first_observation_not_breaching_is_stored_inactive() -> None:
    state, tr = step(UP, None, T0, 3.0)
    assert tr is None
    assert state == AlertState("inactive", None, T0, 3.0)


def test_greater_or_equal_breaches_at_the_threshold() -> None:
    cond = Condition(">=", 10.0, 10.0)
    _, tr = step(cond, None, T0, 10.0)
    assert tr is not None
    assert tr.status == "firing"
    assert step(Condition(">", 10.0, 10.0), None, T0, 10.0)[1] is None


def test_less_than_mirrors_greater_than() -> None:
    up_obs = [
        (T0 + i * 20 * US, v)
        for i, v in enumerate([11.0, 11.0, 11.0, 11.0, 9.0, 10.0, 8.0, 7.0, 11.0, 11.0, 11.0, 11.0])
    ]
    down_obs = [(ts, 20.0 - v) for ts, v in up_obs]  # mirror around 10
    _, up = _run(UP, up_obs)
    _, down = _run(DOWN, down_obs)
    assert [(t.status, t.starts_at_us, t.at_us) for t in up] == [
        (t.status, t.starts_at_us, t.at_us) for t in down
    ]
    assert [t.status for t in down] == ["firing", "resolved", "firing"]
    assert [t.value for t in down] == [20.0 - t.value for t in up]


def test_less_than_hysteresis_band() -> None:
    state, trs = _run(DOWN, [(T0, 9.0), (T0 + 60 * US, 9.0), (T0 + 70 * US, 11.0), (T0 + 80 * US, 10.0)])
    assert [t.status for t in trs] == ["firing"]
    assert state is not None
    assert state.state == "firing"
    state, tr = step(DOWN, state, T0 + 90 * US, 12.0)
    assert tr == Transition("resolved", T0 + 60 * US, T0 + 90 * US, 12.0)


# --- step: properties ---


@st.composite
def _observations(draw: st.DrawFn) -> tuple[Condition, list[tuple[int, float | None]]]:
    comparator = draw(st.sampled_from(COMPARATOR_LITERALS))
    threshold = 10.0
    gap = draw(st.sampled_from([0.0, 0.5, 2.0]))
    resolve = threshold - gap if comparator in (">", ">=") else threshold + gap
    cond = Condition(comparator, threshold, resolve, for_s=draw(st.sampled_from([0.0, 1.0, 5.0, 30.0])))
    steps = draw(st.lists(st.integers(1, 20 * US), min_size=1, max_size=60))
    values = draw(
        st.lists(
            st.one_of(
                st.floats(5.0, 15.0),
                st.sampled_from([threshold, resolve]),
                st.none(),
            ),
            min_size=len(steps),
            max_size=len(steps),
        )
    )
    ts = T0
    obs: list[tuple[int, float | None]] = []
    for d, v in zip(steps, values, strict=True):
        ts += d
        obs.append((ts, v))
    return cond, obs


@settings(max_examples=300, deadline=None)
@given(_observations(), st.data())
def test_transitions_alternate_and_replay_adds_nothing(
    case: tuple[Condition, list[tuple[int, float | None]]], data: st.DataObject
) -> None:
    cond, obs = case
    state, trs = _run(cond, obs)
    assert [t.status for t in trs] == [("firing", "resolved")[i % 2] for i in range(len(trs))]
    for i, t in enumerate(trs):
        if t.status == "firing":
            assert t.starts_at_us == t.at_us
            assert cond.breaches(t.value)
        else:
            assert t.starts_at_us == trs[i - 1].starts_at_us
            assert t.at_us > t.starts_at_us
            assert cond.clears(t.value)
    # the state agrees with the last transition
    firing_now = bool(trs) and trs[-1].status == "firing"
    assert (state is not None and state.state == "firing") == firing_now
    # replaying any prefix (same timestamps, any values in it) from the final state moves nothing
    cut = data.draw(st.integers(0, len(obs)), label="prefix")
    prefix = obs[:cut]
    again, more = _run(cond, prefix, state)
    assert more == []
    assert again == state
    # restated values at the same timestamps (a missing value stays missing: it never counted)
    restated = [(ts, None if v is None else data.draw(st.floats(0.0, 20.0), label="v")) for ts, v in prefix]
    again, more = _run(cond, restated, state)
    assert more == []
    assert again == state


@settings(max_examples=200, deadline=None)
@given(_observations())
def test_step_is_deterministic(case: tuple[Condition, list[tuple[int, float | None]]]) -> None:
    cond, obs = case
    assert _run(cond, obs) == _run(cond, obs)


# --- Condition ---


def test_condition_accepts_equal_thresholds() -> None:
    assert COMPARATOR_LITERALS == COMPARATORS
    for comparator in COMPARATOR_LITERALS:
        Condition(comparator, 10.0, 10.0)


@pytest.mark.parametrize(
    ("comparator", "threshold", "resolve", "for_s"),
    [
        (">", 10.0, 10.5, 0.0),  # resolve above threshold, upward
        (">=", 10.0, 11.0, 0.0),
        ("<", 10.0, 9.5, 0.0),  # resolve below threshold, downward
        ("<=", 10.0, 9.0, 0.0),
        ("==", 10.0, 10.0, 0.0),  # not a comparator
        ("gt", 10.0, 10.0, 0.0),
        (">", math.nan, 8.0, 0.0),
        (">", 10.0, math.inf, 0.0),
        (">", 10.0, 8.0, -1.0),
    ],
)
def test_condition_validation(comparator: Any, threshold: float, resolve: float, for_s: float) -> None:
    with pytest.raises(InvalidInput):
        Condition(comparator, threshold, resolve, for_s)


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="resolve threshold"):
        Condition(">", 10.0, 11.0)


# --- fingerprint / event_id ---


def test_fingerprint_is_stable_16_hex_and_per_subject() -> None:
    fp = fingerprint(7, "meter:hz-b001-m01")
    assert fp == fingerprint(7, "meter:hz-b001-m01")
    assert len(fp) == 16
    assert all(c in "0123456789abcdef" for c in fp)
    assert fp != fingerprint(7, "meter:hz-b001-m02")
    assert fp != fingerprint(8, "meter:hz-b001-m01")
    # the separator keeps (1, "2x") and (12, "x") apart
    assert fingerprint(1, "2x") != fingerprint(12, "x")


def test_event_id_is_deterministic_and_differs_by_status_and_start() -> None:
    fp = fingerprint(7, "site:hz-b001")
    firing = event_id(fp, "firing", T0)
    assert firing == event_id(fp, "firing", T0)
    assert firing != event_id(fp, "resolved", T0)
    assert firing != event_id(fp, "firing", T0 + 1)
    assert firing != event_id(fingerprint(7, "site:hz-b002"), "firing", T0)
    assert firing.startswith(fp)


# --- anomaly_score ---


def test_anomaly_score_on_a_known_history() -> None:
    history = [10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 11.0]
    # median 10; |h - 10| = 0,1,1,0,2,0,1 → MAD 1 → scale 1.4826
    score, median, scale = anomaly_score(30.0, history)
    assert median == 10.0
    assert scale == pytest.approx(1.4826)
    assert score == pytest.approx(20.0 / 1.4826)
    assert score > 10
    assert anomaly_score(10.0, history)[0] == 0.0
    assert anomaly_score(10.0 - 1.4826, history)[0] == pytest.approx(1.0)


def test_anomaly_score_flat_history_uses_relative_floor() -> None:
    score, median, scale = anomaly_score(5.5, [5.0] * 7)
    assert median == 5.0
    assert scale == pytest.approx(0.25)
    assert score == pytest.approx(2.0)
    assert anomaly_score(4.5, [5.0] * 7)[0] == pytest.approx(2.0)


def test_anomaly_score_is_robust_to_outliers_and_skips_non_finite() -> None:
    history = [10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 11.0]
    base = anomaly_score(30.0, history)
    assert anomaly_score(30.0, [*history, math.nan, math.inf]) == base
    score, median, _ = anomaly_score(30.0, [*history, 1000.0])
    assert median == pytest.approx(10.0, abs=0.5)
    assert score > 10


def test_anomaly_score_zero_median_flat_history_is_finite() -> None:
    score, median, scale = anomaly_score(0.0, [0.0] * 5)
    assert (score, median) == (0.0, 0.0)
    assert scale > 0


@pytest.mark.parametrize("history", [[], [math.nan], [math.inf, -math.inf]])
def test_anomaly_score_needs_history(history: list[float]) -> None:
    with pytest.raises(InvalidInput):
        anomaly_score(1.0, history)


# --- local_period / quota_ratio ---


def _wall(year: int, month: int, day: int) -> datetime:
    """A local wall-clock midnight, to compare with an aware datetime stripped of its zone."""
    return datetime(year, month, day, tzinfo=UTC).replace(tzinfo=None)


def test_local_month_in_shanghai_crosses_into_november() -> None:
    at = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)  # 00:30 on 1 November in Shanghai
    start, end = local_period(at, "Asia/Shanghai", "month")
    assert start.replace(tzinfo=None) == _wall(2026, 11, 1)
    assert end.replace(tzinfo=None) == _wall(2026, 12, 1)
    assert start.utcoffset() == end.utcoffset() == timedelta(hours=8)
    assert start.astimezone(UTC) == datetime(2026, 10, 31, 16, tzinfo=UTC)
    assert start <= at < end


def test_local_month_in_december_ends_in_january() -> None:
    start, end = local_period(datetime(2026, 12, 15, tzinfo=UTC), "Asia/Shanghai", "month")
    assert start.replace(tzinfo=None) == _wall(2026, 12, 1)
    assert end.replace(tzinfo=None) == _wall(2027, 1, 1)


def test_local_year_boundaries() -> None:
    at = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)  # 2027-01-01 00:30 in Shanghai
    start, end = local_period(at, "Asia/Shanghai", "year")
    assert start.replace(tzinfo=None) == _wall(2027, 1, 1)
    assert end.replace(tzinfo=None) == _wall(2028, 1, 1)
    assert start <= at < end
    just_before = at - timedelta(hours=1)  # 2026-12-31 23:30 in Shanghai
    start, end = local_period(just_before, "Asia/Shanghai", "year")
    assert start.replace(tzinfo=None) == _wall(2026, 1, 1)
    assert end.replace(tzinfo=None) == _wall(2027, 1, 1)
    assert end.astimezone(UTC) == datetime(2026, 12, 31, 16, tzinfo=UTC)


def test_local_month_across_dst_has_each_own_offset() -> None:
    # British Summer Time starts on 2026-03-29
    start, end = local_period(datetime(2026, 3, 15, 12, tzinfo=UTC), "Europe/London", "month")
    assert start.replace(tzinfo=None) == _wall(2026, 3, 1)
    assert end.replace(tzinfo=None) == _wall(2026, 4, 1)
    assert start.utcoffset() == timedelta(0)
    assert end.utcoffset() == timedelta(hours=1)
    assert start.astimezone(UTC) == datetime(2026, 3, 1, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 3, 31, 23, tzinfo=UTC)
    # 2026-03-31T23:30Z is already 00:30 on 1 April in BST
    start2, _ = local_period(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "Europe/London", "month")
    assert start2.replace(tzinfo=None) == _wall(2026, 4, 1)


def test_local_period_accepts_any_aware_instant_and_refuses_naive() -> None:
    at = datetime(2026, 11, 1, 0, 30, tzinfo=timezone(timedelta(hours=8)))
    assert local_period(at, "Asia/Shanghai", "month") == local_period(
        at.astimezone(UTC), "Asia/Shanghai", "month"
    )
    with pytest.raises(InvalidInput):
        local_period(datetime(2026, 11, 1), "Asia/Shanghai", "month")  # noqa: DTZ001


def test_quota_ratio_on_course() -> None:
    start, end = local_period(datetime(2026, 11, 15, tzinfo=UTC), "Asia/Shanghai", "month")  # 30 days
    assert (end - start) == timedelta(days=30)
    at = start + timedelta(days=3)
    assert quota_ratio(100.0, start, end, at, 1000.0) == pytest.approx(1.0)
    assert quota_ratio(100.0, start, end, at.astimezone(UTC), 1000.0) == pytest.approx(1.0)
    assert quota_ratio(50.0, start, end, at, 1000.0) == pytest.approx(0.5)
    # at or after the end, the total to date is the projection
    assert quota_ratio(900.0, start, end, end, 1000.0) == pytest.approx(0.9)
    assert quota_ratio(900.0, start, end, end + timedelta(days=5), 1000.0) == pytest.approx(0.9)


@pytest.mark.parametrize("limit", [0.0, -1.0])
def test_quota_ratio_refuses_non_positive_limit(limit: float) -> None:
    start, end = local_period(datetime(2026, 11, 15, tzinfo=UTC), "Asia/Shanghai", "month")
    with pytest.raises(InvalidInput):
        quota_ratio(1.0, start, end, start + timedelta(days=1), limit)


def test_quota_ratio_refuses_at_not_after_start() -> None:
    start, end = local_period(datetime(2026, 11, 15, tzinfo=UTC), "Asia/Shanghai", "month")
    for at in (start, start - timedelta(seconds=1)):
        with pytest.raises(InvalidInput):
            quota_ratio(1.0, start, end, at, 1000.0)


# --- sign / verify ---

SECRET = "s3cret-0123456789abcdef"  # noqa: S105
BODY = b'{"version":"4","status":"firing"}'
NOW_S = 1_795_486_500


def test_signed_body_verifies() -> None:
    header = sign(SECRET, BODY, NOW_S)
    assert header.startswith(f"t={NOW_S},v1=")
    assert len(header.split("v1=", 1)[1]) == 64
    assert verify(SECRET, BODY, header, NOW_S)
    assert verify(SECRET, BODY, header, NOW_S + 10.5)
    assert verify(SECRET, BODY, header, NOW_S - REPLAY_WINDOW_S)  # the window's edge is inside


def test_changed_body_or_wrong_secret_fails() -> None:
    header = sign(SECRET, BODY, NOW_S)
    assert not verify(SECRET, BODY + b" ", header, NOW_S)
    assert not verify(SECRET, BODY.replace(b"firing", b"resolved"), header, NOW_S)
    assert not verify(SECRET + "x", BODY, header, NOW_S)
    # a different timestamp in the header does not carry the old signature
    forged = header.replace(f"t={NOW_S}", f"t={NOW_S + 1}")
    assert not verify(SECRET, BODY, forged, NOW_S)


@pytest.mark.parametrize("skew", [REPLAY_WINDOW_S + 1, -(REPLAY_WINDOW_S + 1), 3600, -86400])
def test_timestamp_outside_window_fails(skew: int) -> None:
    header = sign(SECRET, BODY, NOW_S)
    assert not verify(SECRET, BODY, header, NOW_S + skew)
    assert verify(SECRET, BODY, header, NOW_S + skew, window_s=abs(skew))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={'0' * 64}",  # no t
        f"t=,v1={'0' * 64}",
        f"t=abc,v1={'0' * 64}",
        f"t={NOW_S}",  # no v1
        f"t={NOW_S},v1=",
        f"t={NOW_S},v1=zz",
        f"t={NOW_S},v1={'0' * 64}",
    ],
)
def test_malformed_header_fails(header: str) -> None:
    assert not verify(SECRET, BODY, header, NOW_S)


def test_header_parts_in_any_order_verify() -> None:
    t, v1 = sign(SECRET, BODY, NOW_S).split(",")
    assert verify(SECRET, BODY, f"{v1},{t}", NOW_S)


# --- alertmanager_payload ---


def _event(**over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "HighPower", "tenant": "acme", "site": "hz-b001", "severity": "critical"},
        "annotations": {"summary": "power above 500 kW"},
        "starts_at": "2026-11-24T02:15:00Z",
        "ends_at": None,
        "fingerprint": fingerprint(7, "site:hz-b001"),
    }
    return event | over


def test_alertmanager_payload_firing() -> None:
    event = _event()
    doc = json.loads(alertmanager_payload(event, "on-call", "https://ws.example.org/"))
    assert doc["version"] == "4"
    assert doc["status"] == "firing"
    assert doc["receiver"] == "on-call"
    assert doc["externalURL"] == "https://ws.example.org/"
    assert doc["groupLabels"] == {"alertname": "HighPower"}
    assert doc["commonLabels"] == event["labels"]
    assert doc["commonAnnotations"] == event["annotations"]
    assert doc["truncatedAlerts"] == 0
    assert event["fingerprint"] in doc["groupKey"]
    assert len(doc["alerts"]) == 1
    (alert,) = doc["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == event["labels"]
    assert alert["annotations"] == event["annotations"]
    assert alert["startsAt"] == "2026-11-24T02:15:00Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["fingerprint"] == event["fingerprint"]
    assert alert["generatorURL"] == f"https://ws.example.org/v1/alerts/{event['fingerprint']}"


def test_alertmanager_payload_resolved() -> None:
    event = _event(status="resolved", ends_at="2026-11-24T03:00:00Z")
    doc = json.loads(alertmanager_payload(event, "on-call", "https://ws.example.org"))
    assert doc["status"] == "resolved"
    (alert,) = doc["alerts"]
    assert alert["status"] == "resolved"
    assert alert["endsAt"] == "2026-11-24T03:00:00Z"
    assert alert["startsAt"] == "2026-11-24T02:15:00Z"


def test_alertmanager_payload_without_alertname_and_with_unicode() -> None:
    event = _event(labels={"site": "西湖区"}, annotations={})
    body = alertmanager_payload(event, "西湖区 on-call", "https://ws.example.org")
    doc = json.loads(body.decode("utf-8"))
    assert doc["groupLabels"] == {"alertname": ""}
    assert doc["alerts"][0]["labels"] == {"site": "西湖区"}
    assert doc["receiver"] == "西湖区 on-call"


def test_payload_signature_round_trip() -> None:
    body = alertmanager_payload(_event(), "on-call", "https://ws.example.org")
    assert verify(SECRET, body, sign(SECRET, body, NOW_S), NOW_S + 1)


# --- silenced ---

LABELS = {"alertname": "HighPower", "tenant": "acme", "site": "hz-b001", "severity": "critical"}


def _m(name: str, value: str, *, is_regex: bool = False, is_equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "is_regex": is_regex, "is_equal": is_equal}


def test_ingest_webhooks_uses_this_silenced() -> None:
    assert vars(webhooks)["silenced"] is silenced


def test_silenced_equality_matcher() -> None:
    assert silenced(LABELS, [([_m("site", "hz-b001")], None)])
    assert not silenced(LABELS, [([_m("site", "hz-b002")], None)])
    assert not silenced(LABELS, [([_m("site", "hz-b00")], None)])  # not a prefix match
    assert not silenced(LABELS, [([_m("building", "hz-b001")], None)])  # a missing label is ""


def test_silenced_regex_matcher_is_a_full_match() -> None:
    assert silenced(LABELS, [([_m("site", "hz-.*", is_regex=True)], None)])
    assert silenced(LABELS, [([_m("site", "hz-b00[0-9]", is_regex=True)], None)])
    assert not silenced(LABELS, [([_m("site", "hz", is_regex=True)], None)])  # would be a search hit
    assert not silenced(LABELS, [([_m("site", "b001", is_regex=True)], None)])
    assert not silenced(LABELS, [([_m("site", "sh-.*", is_regex=True)], None)])
    # without is_regex, the value is literal
    assert not silenced(LABELS, [([_m("site", "hz-.*")], None)])


def test_silenced_negative_matchers() -> None:
    assert silenced(LABELS, [([_m("site", "hz-b002", is_equal=False)], None)])
    assert not silenced(LABELS, [([_m("site", "hz-b001", is_equal=False)], None)])
    assert silenced(LABELS, [([_m("severity", "info|warning", is_regex=True, is_equal=False)], None)])
    assert not silenced(LABELS, [([_m("severity", "critical|warning", is_regex=True, is_equal=False)], None)])
    # a missing label ("") differs from any non-empty value
    assert silenced(LABELS, [([_m("building", "b1", is_equal=False)], None)])


def test_silenced_needs_all_matchers_of_one_silence() -> None:
    both = [_m("site", "hz-b001"), _m("severity", "critical")]
    assert silenced(LABELS, [(both, None)])
    one_off = [_m("site", "hz-b001"), _m("severity", "warning")]
    assert not silenced(LABELS, [(one_off, None)])
    # any one silence is enough
    assert silenced(LABELS, [(one_off, None), ([_m("alertname", "HighPower")], None)])


def test_silenced_tenant_scope() -> None:
    matchers = [_m("site", "hz-b001")]
    assert silenced(LABELS, [(matchers, "acme")])
    assert not silenced(LABELS, [(matchers, "other")])
    assert not silenced({k: v for k, v in LABELS.items() if k != "tenant"}, [(matchers, "acme")])
    assert silenced({**LABELS, "tenant": "other"}, [(matchers, None)])  # no tenant: all alerts


def test_silenced_empty_matchers_or_no_silences_match_nothing() -> None:
    assert not silenced(LABELS, [([], None)])
    assert not silenced(LABELS, [([], "acme")])
    assert not silenced(LABELS, [])
    assert not silenced({}, [([], None)])


# --- the values rules observe (moved out of ingest/alerts.py) ------------------------------


def _reference_power(
    before: dict[int, float], readings: list[tuple[int, int, float]]
) -> list[tuple[int, float]]:
    """At each distinct time, every meter's latest power up to and including that time, summed."""
    out = []
    for t in sorted({ts for ts, _, _ in readings}):
        latest = dict(before)
        for ts, meter, kw in sorted(readings):
            if ts <= t:
                latest[meter] = kw
        out.append((t, sum(latest.values())))
    return out


@settings(max_examples=200)
@given(
    st.dictionaries(st.integers(0, 5), st.floats(0, 1000, allow_nan=False), max_size=4),
    st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 5), st.floats(0, 1000, allow_nan=False)), max_size=30
    ),
)
def test_site_power_series_agrees_with_the_reference(
    before: dict[int, float], readings: list[tuple[int, int, float]]
) -> None:
    got = site_power_series(before, readings)
    want = _reference_power(before, readings)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want])


def test_bucket_metrics() -> None:
    f = BucketFigures(total_kwh=30.0, main_kwh=30.0, sub_kwh=27.0, it_kwh=20.0, co2e_kg=6.0, bucket_s=900)
    values = {name: metric(f) for name, metric in BUCKET_METRICS.items()}
    assert values["interval_energy_kwh"] == (30.0, {})
    assert values["emissions_rate_kg_per_h"] == (24.0, {})
    assert values["pue"] == (1.5, {})
    assert values["imbalance"] == (pytest.approx(0.1), {"main_kwh": 30.0, "sub_items_kwh": 27.0})
    empty = BucketFigures(None, None, None, None, None, 900)
    assert {name: metric(empty)[0] for name, metric in BUCKET_METRICS.items()} == dict.fromkeys(
        BUCKET_METRICS
    )
    # no IT energy is no PUE; no main energy is no imbalance
    assert BUCKET_METRICS["pue"](BucketFigures(30.0, None, None, 0.0, None, 900))[0] is None
    assert BUCKET_METRICS["imbalance"](BucketFigures(None, 0.0, 5.0, None, None, 900))[0] is None


def test_anomaly_hours_keep_the_wall_clock_hour_across_dst() -> None:
    # 2026-03-30 09:20 in London (BST): the hour 08:00-09:00 local, and the same hour before the
    # change on 2026-03-29 (GMT), an hour later in UTC
    end, starts = anomaly_hours(datetime(2026, 3, 30, 8, 20, tzinfo=UTC), "Europe/London", 2)
    assert end == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert starts == [
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 28, 8, 0, tzinfo=UTC),
    ]
    with pytest.raises(InvalidInput):
        anomaly_hours(datetime(2026, 3, 30, 8, 20), "Europe/London", 2)  # noqa: DTZ001 - refused
    with pytest.raises(InvalidInput):
        anomaly_hours(datetime(2026, 3, 30, 8, 20, tzinfo=UTC), "Europe/London", 0)


def test_preferred_intensity() -> None:
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC)

    def row(
        ts: datetime, basis: str, scope: str = "lifecycle", kind: str = "actual", fs: str = "ipcc"
    ) -> dict:
        return {"ts": ts, "basis": basis, "scope": scope, "kind": kind, "factor_set": fs}

    rows = [
        row(t1, "production"),
        row(t1, "consumption"),
        row(t0, "published", scope="published", fs="published"),
        row(t0, "production", scope="direct"),
        row(t0, "consumption", kind="forecast"),
    ]
    got = preferred_intensity(rows, scope="lifecycle")
    assert [(r["ts"], r["basis"]) for r in got] == [(t0, "published"), (t1, "consumption")]
    assert [r["basis"] for r in preferred_intensity(rows, scope="lifecycle", basis="production")] == [
        "production"
    ]
    # the direct scope: at t0 its production beats the published value; t1 has only lifecycle rows
    assert [(r["ts"], r["basis"]) for r in preferred_intensity(rows, scope="direct")] == [(t0, "production")]
    assert preferred_intensity(rows, scope="lifecycle", factor_set="nope") == []
