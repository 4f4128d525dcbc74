"""Production intensity, shares and flow tracing against hand-solved networks and plain references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.intensity import (
    CLASS_FOSSIL,
    CLASS_NUCLEAR,
    CLASS_RENEWABLE,
    CLASS_STORAGE,
    CLASS_UNKNOWN,
    consumption_intensity,
    lowest_window,
    production_intensity,
)

F, R, N, S, U = CLASS_FOSSIL, CLASS_RENEWABLE, CLASS_NUCLEAR, CLASS_STORAGE, CLASS_UNKNOWN
NAN = math.nan


def _reference_production(mw: list[float], factor: list[float], cls: list[int]) -> tuple[float, ...]:
    num = den = primary = fossil = renewable = nuclear = 0.0
    for p, f, c in zip(mw, factor, cls, strict=True):
        if not p > 0:
            continue
        if c == S:
            if not math.isnan(f):
                num, den = num + p * f, den + p
            continue
        num, den, primary = num + p * f, den + p, primary + p
        fossil += p if c == F else 0.0
        renewable += p if c == R else 0.0
        nuclear += p if c == N else 0.0
    share = (lambda x: x / primary) if primary else (lambda x: NAN)
    return (num / den if den else NAN, den, share(fossil), share(renewable), share(renewable + nuclear))


def test_intensity_is_generation_weighted_mean_of_factors() -> None:
    # coal 100 MW @ 820, wind 300 @ 11, nuclear 100 @ 12: (82000 + 3300 + 1200) / 500
    r = production_intensity([[100, 300, 100]], [[820, 11, 12]], [F, R, N])
    assert r.intensity[0] == pytest.approx(86500 / 500)
    assert r.generation_mw[0] == 500
    assert r.fossil_share[0] == pytest.approx(0.2)
    assert r.renewable_share[0] == pytest.approx(0.6)
    assert r.nonfossil_share[0] == pytest.approx(0.8)  # nuclear is non-fossil, not renewable


def test_charging_is_not_generation_and_discharge_without_factor_keeps_the_mix_intensity() -> None:
    base = production_intensity([[100, 100]], [[500, 0]], [F, R])
    charging = production_intensity([[100, 100, -50]], [[500, 0, NAN]], [F, R, S])
    discharging = production_intensity([[100, 100, 80]], [[500, 0, NAN]], [F, R, S])
    assert charging.intensity[0] == discharging.intensity[0] == base.intensity[0] == 250
    assert discharging.generation_mw[0] == 200
    # with a factor (a zone file's battery discharge), discharge is generation at that factor
    priced = production_intensity([[100, 100, 100]], [[500, 0, 200]], [F, R, S])
    assert priced.intensity[0] == pytest.approx((50000 + 20000) / 300)
    assert priced.fossil_share[0] == pytest.approx(0.5)  # shares are of primary generation


def test_unknown_is_in_the_denominator_and_in_no_share() -> None:
    r = production_intensity([[50, 50]], [[700, 0]], [U, R])
    assert r.fossil_share[0] + r.nonfossil_share[0] == pytest.approx(0.5)


def test_nothing_generating_gives_nan_not_an_error() -> None:
    r = production_intensity([[0, NAN, -3]], [[820, 11, NAN]], [F, R, S])
    assert math.isnan(r.intensity[0]) and math.isnan(r.fossil_share[0]) and r.generation_mw[0] == 0


def test_a_generating_column_without_factor_is_refused() -> None:
    with pytest.raises(InvalidInput, match="interval 1"):
        production_intensity([[1, 0], [1, 1]], [[1, NAN], [1, NAN]], [F, R])
    with pytest.raises(InvalidInput):
        production_intensity([[1]], [[1, 2]], [F])
    with pytest.raises(InvalidInput):
        production_intensity([[1]], [[-1]], [F])
    with pytest.raises(InvalidInput):
        production_intensity([[1]], [[1]], [9])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.floats(-500, 5000), st.just(NAN)),
            st.one_of(st.floats(0, 1200), st.just(NAN)),
            st.sampled_from([F, R, N, S, U]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_production_matches_reference(cols: list[tuple[float, float, int]]) -> None:
    mw = [c[0] for c in cols]
    factor = [c[1] if c[2] == S or not math.isnan(c[1]) else 100.0 for c in cols]
    cls = [c[2] for c in cols]
    got = production_intensity([mw], [factor], cls)
    want = _reference_production(mw, factor, cls)
    for g, w in zip(
        (got.intensity, got.generation_mw, got.fossil_share, got.renewable_share, got.nonfossil_share),
        want,
        strict=True,
    ):
        assert g[0] == pytest.approx(w, rel=1e-9, abs=1e-9, nan_ok=True)


def test_two_region_exchange_solved_by_hand() -> None:
    # A: 100 MW at 800 g/kWh, imports 50 MW from B; B: 200 MW at 100 g/kWh, imports nothing.
    # x_B = 100; x_A = (800*100 + 50*100) / (100 + 50) = 566.67
    flows = np.zeros((1, 2, 2))
    flows[0, 1, 0] = 50
    x = consumption_intensity([[100, 200]], [[800, 100]], flows)
    assert x[0, 0] == pytest.approx(85000 / 150)
    assert x[0, 1] == pytest.approx(100)


def test_three_region_loop_solved_by_hand() -> None:
    # A -> B -> C -> A, 10 MW each; 90 MW produced each at 900, 0 and 300 g/kWh.
    # 100 x_A = 81000 + 10 x_C; 100 x_B = 10 x_A; 100 x_C = 27000 + 10 x_B
    # => x_A = 837 / 0.999, x_B = x_A / 10, x_C = 270 + x_A / 100
    flows = np.zeros((1, 3, 3))
    flows[0, 0, 1] = flows[0, 1, 2] = flows[0, 2, 0] = 10
    x = consumption_intensity([[90, 90, 90]], [[900, 0, 300]], flows)
    x_a = 837 / 0.999
    assert x[0] == pytest.approx([x_a, x_a / 10, 270 + x_a / 100], rel=1e-12)


def test_missing_neighbour_uses_its_fallback_value() -> None:
    # A imports 100 MW from an external region X whose fallback intensity is 560 g/kWh
    flows = np.zeros((1, 2, 2))
    flows[0, 1, 0] = 100
    x = consumption_intensity([[300]], [[100]], flows, [[560]])
    assert x[0, 0] == pytest.approx((300 * 100 + 100 * 560) / 400)
    with pytest.raises(InvalidInput, match="fallback"):
        consumption_intensity([[300]], [[100]], flows, [[NAN]])


def test_a_region_with_no_power_has_no_intensity() -> None:
    flows = np.zeros((2, 2, 2))
    flows[1, 0, 1] = 20  # step 1: B lives on imports from A alone, so it consumes A's intensity
    x = consumption_intensity([[50, 0], [50, 0]], [[400, NAN], [400, NAN]], flows)
    assert x[0, 0] == 400 and math.isnan(x[0, 1])
    assert x[1, 1] == pytest.approx(400)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_tracing_matches_dense_solve_and_conserves_emissions(n: int, e: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    steps = 3
    p = rng.uniform(1, 1000, (steps, n))
    c = rng.uniform(0, 1000, (steps, n))
    fl = rng.uniform(0, 300, (steps, n + e, n + e)) * (rng.random((steps, n + e, n + e)) < 0.5)
    for t in range(steps):
        np.fill_diagonal(fl[t], 0)
    ext = rng.uniform(0, 900, (steps, e))
    x = consumption_intensity(p, c, fl, ext)
    for t in range(steps):
        inflow = fl[t, :, :n].sum(axis=0)
        a = np.diag(p[t] + inflow) - fl[t, :n, :n].T
        b = c[t] * p[t] + fl[t, n:, :n].T @ ext[t]
        assert x[t] == pytest.approx(np.linalg.solve(a, b), rel=1e-9)
        # what regions consume (production + imports - exports) carries all emissions in
        consumed = p[t] + inflow - fl[t, :n, :].sum(axis=1)
        emitted_in = c[t] @ p[t] + ext[t] @ fl[t, n:, :n].sum(axis=1)
        exported_out = x[t] @ fl[t, :n, n:].sum(axis=1)
        assert x[t] @ consumed + exported_out == pytest.approx(emitted_in, rel=1e-9)


def _hour(h: float) -> int:
    return int(h * 3_600_000_000)


def test_lowest_window_finds_the_cleanest_stretch() -> None:
    # hourly intensities: the two cleanest consecutive hours are 3-5 (100, 120)
    values = [500, 400, 300, 100, 120, 450, 90, 600]
    starts = [_hour(h) for h in range(8)]
    w = lowest_window(starts, [s + _hour(1) for s in starts], values, 7200, 3600)
    assert w is not None
    assert (w.start_us, w.end_us, w.mean) == (_hour(3), _hour(5), 110)
    assert w.horizon_mean == pytest.approx(sum(values) / 8)
    # one hour: hour 6 alone is cleanest
    one = lowest_window(starts, [s + _hour(1) for s in starts], values, 3600, 900)
    assert one is not None and (one.start_us, one.mean) == (_hour(6), 90)


def test_lowest_window_never_spans_a_gap() -> None:
    starts = [_hour(0), _hour(1), _hour(3), _hour(4)]  # hour 2 missing
    values = [100, 100, 500, 500]
    w = lowest_window(starts, [s + _hour(1) for s in starts], values, 3 * 3600, 3600)
    assert w is None
    w2 = lowest_window(starts, [s + _hour(1) for s in starts], values, 2 * 3600, 1800)
    assert w2 is not None and w2.mean == 100 and w2.start_us == 0


def test_lowest_window_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidInput):
        lowest_window([0], [1], [1], 3600, 7000)
    assert lowest_window([], [], [], 3600, 300) is None
