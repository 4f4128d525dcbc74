"""core.energy: hand-checked examples, properties, and the kernel against a plain-Python oracle.

Run also with NUMBA_DISABLE_JIT=1, so the kernels' Python source is what is measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from energy_reference import Reading, Row, reference_energy
from hypothesis import given, settings
from hypothesis import strategies as st

from core.energy import (
    QUALITY_ESTIMATED,
    QUALITY_MEASURED,
    QUALITY_PARTIAL,
    EnergyResult,
    interval_energy,
    segment_sums,
)
from core.errors import CoreError, InvalidInput

NAN = float("nan")
MIN_US = 60_000_000
T10 = 1_763_978_400_000_000  # 2025-11-24 10:00 UTC, in epoch microseconds


def at(minutes: float) -> int:
    """Microseconds `minutes` after the reference hour (called 10:00 below)."""
    return T10 + round(minutes * MIN_US)


def run(readings: Sequence[Reading], **kw: Any) -> EnergyResult:
    """The kernel on `Reading`s; None becomes NaN."""

    def col(values: list[float | None]) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.array([NAN if v is None else v for v in values], dtype=np.float64)

    return interval_energy(
        np.array([r.meter for r in readings], dtype=np.int64),
        np.array([r.ts_us for r in readings], dtype=np.int64),
        col([r.energy for r in readings]),
        col([r.power for r in readings]),
        multiplier=col([r.multiplier for r in readings]),
        rollover_kwh=col([r.rollover for r in readings]),
        max_power_kw=col([r.max_power for r in readings]),
        **kw,
    )


def rows(result: EnergyResult) -> dict[tuple[int, int], Row]:
    b = result.buckets
    return {
        (int(m), int(s)): Row(float(k), float(c), int(n), int(q))
        for m, s, k, c, n, q in zip(
            b.meter, b.bucket_start_us, b.kwh, b.coverage_s, b.n, b.quality, strict=True
        )
    }


def kwh_by_minute(result: EnergyResult) -> dict[int, float]:
    """Bucket start (minutes after 10:00) → kWh, for one meter."""
    b = result.buckets
    return {(int(s) - T10) // MIN_US: float(k) for s, k in zip(b.bucket_start_us, b.kwh, strict=True)}


def register(*points: tuple[float, float | None], meter: int = 1, **kw: Any) -> list[Reading]:
    return [Reading(meter, at(m), e, None, **kw) for m, e in points]


# --- hand-checked examples ------------------------------------------------------------------


def test_constant_power_fills_four_buckets() -> None:
    readings = [Reading(1, at(m), None, 10.0) for m in range(0, 61, 5)]
    result = run(readings)
    got = list(rows(result).values())
    assert [r.kwh for r in got[:4]] == pytest.approx([2.5] * 4, rel=1e-12)
    assert [(r.coverage_s, r.n, r.quality) for r in got[:4]] == [(900.0, 3, QUALITY_MEASURED)] * 4
    # the 11:00 reading opens an 11:00 bucket with nothing measured in it yet
    assert got[4] == Row(0.0, 0.0, 1, QUALITY_PARTIAL)
    assert not result.spikes.any()


def test_register_delta_prorated_by_time() -> None:
    result = run(register((7, 1000.0), (22, 1015.0)))
    assert kwh_by_minute(result) == pytest.approx({0: 8.0, 15: 7.0}, rel=1e-12)
    got = list(rows(result).values())
    assert [(r.coverage_s, r.n, r.quality) for r in got] == [(480.0, 1, QUALITY_PARTIAL), (420.0, 1, 1)]


def test_reading_exactly_on_a_boundary() -> None:
    result = run(register((0, 10.0), (15, 13.0), (30, 19.0)))
    got = rows(result)
    assert [(r.kwh, r.coverage_s, r.n, r.quality) for r in got.values()] == [
        (3.0, 900.0, 1, QUALITY_MEASURED),
        (6.0, 900.0, 1, QUALITY_MEASURED),
        (0.0, 0.0, 1, QUALITY_PARTIAL),  # 10:30 holds the last reading, no interval
    ]


def test_power_is_prorated_as_the_integral_not_a_uniform_share() -> None:
    result = run([Reading(1, at(0), None, 0.0), Reading(1, at(30), None, 12.0)])
    # 0 → 12 kW over 30 min is 3 kWh: a quarter of it in the first half
    assert kwh_by_minute(result) == pytest.approx({0: 0.75, 15: 2.25, 30: 0.0}, rel=1e-12)


def test_rollover() -> None:
    result = run(register((0, 99999.0), (5, 1.0), rollover=99999.9))
    assert result.buckets.kwh.sum() == pytest.approx(1.9, rel=1e-9)
    assert result.buckets.quality.tolist() == [QUALITY_PARTIAL]


def test_reset_counts_the_energy_after_it() -> None:
    result = run(register((0, 5000.0), (5, 0.3)))
    assert result.buckets.kwh.sum() == pytest.approx(0.3, rel=1e-12)


def test_transient_dip_is_not_a_new_baseline() -> None:
    # deltas 1, 0 (999.5 is skipped), 1: the second kWh is spread from the 10:15 reading to 10:45
    result = run(register((0, 1000.0), (15, 1001.0), (30, 999.5), (45, 1002.0)))
    assert kwh_by_minute(result) == pytest.approx({0: 1.0, 15: 0.5, 30: 0.5, 45: 0.0}, rel=1e-12)
    assert result.buckets.quality.tolist()[:3] == [QUALITY_MEASURED] * 3
    assert not result.spikes.any()


def test_persistent_dip_becomes_the_baseline_after_dip_confirm_readings() -> None:
    points = ((0, 1000.0), (15, 1001.0), (30, 500.0), (45, 500.5), (60, 501.0), (75, 503.0))
    result = run(register(*points), dip_confirm=3)
    # 10:15 → 11:00 carries delta 0, estimated; then 501 is the baseline and 503 adds 2 kWh
    assert kwh_by_minute(result) == pytest.approx({0: 1.0, 15: 0.0, 30: 0.0, 45: 0.0, 60: 2.0, 75: 0.0})
    assert result.buckets.quality.tolist() == [0, 2, 2, 2, 0, 1]
    # with one more confirmation needed, 501 is still a dip and 503 one more: nothing after 10:15 is known
    longer = run(register(*points), dip_confirm=4)
    assert kwh_by_minute(longer) == pytest.approx({0: 1.0, 15: 0.0, 30: 0.0, 45: 0.0, 60: 0.0, 75: 0.0})
    assert longer.buckets.coverage_s.tolist() == [900.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_spike_is_refused_and_the_next_reading_counts_from_the_baseline() -> None:
    # 100 kWh in 15 min is 400 kW on a 10 kW meter
    result = run(register((0, 50.0), (15, 150.0), (30, 52.0), max_power=10.0))
    assert result.spikes.tolist() == [False, True, False]
    assert kwh_by_minute(result) == pytest.approx({0: 1.0, 15: 1.0, 30: 0.0}, rel=1e-12)
    assert result.buckets.quality.tolist() == [QUALITY_MEASURED, QUALITY_MEASURED, QUALITY_PARTIAL]
    assert result.buckets.n.tolist() == [1, 1, 1]  # the spike is still a reading


def test_spike_bound_has_ten_percent_tolerance() -> None:
    within = run(register((0, 0.0), (15, 2.7), max_power=10.0))  # 10.8 kW
    beyond = run(register((0, 0.0), (15, 2.8), max_power=10.0))  # 11.2 kW
    assert within.spikes.tolist() == [False, False]
    assert beyond.spikes.tolist() == [False, True]


def test_power_gap_is_missing_coverage() -> None:
    readings = [Reading(1, at(m), None, 4.0) for m in (0, 15, 90, 105)]
    result = run(readings, gap_s=3600.0)
    got = list(rows(result).values())
    assert [r.kwh for r in got] == pytest.approx([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    assert [r.coverage_s for r in got] == [900.0, 0, 0, 0, 0, 0, 900.0, 0]
    assert [r.quality for r in got] == [0, 1, 1, 1, 1, 1, 0, 1]


def test_register_gap_is_prorated_and_estimated() -> None:
    result = run(register((0, 0.0), (15, 1.0), (90, 6.0), (105, 7.0)), gap_s=3600.0)
    got = list(rows(result).values())
    assert [r.kwh for r in got] == pytest.approx([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    assert [r.coverage_s for r in got] == [900.0, 0, 0, 0, 0, 0, 900.0, 0]
    assert [r.quality for r in got] == [0, 2, 2, 2, 2, 2, 0, 1]


def test_multiplier_applies_to_registers_and_power() -> None:
    reg = run(register((0, 10.0), (15, 11.5), multiplier=40.0))
    assert reg.buckets.kwh[0] == pytest.approx(60.0, rel=1e-12)
    pwr = run([Reading(1, at(0), None, 2.0, multiplier=40.0), Reading(1, at(15), None, 2.0, multiplier=40.0)])
    assert pwr.buckets.kwh[0] == pytest.approx(20.0, rel=1e-12)


def test_meters_are_not_mixed() -> None:
    readings = register((0, 100.0), (15, 101.0), meter=7) + register((5, 5.0), (20, 8.0), meter=9)
    got = rows(run(readings))
    assert list(got) == [(7, at(0)), (7, at(15)), (9, at(0)), (9, at(15))]
    assert [r.kwh for r in got.values()] == pytest.approx([1.0, 0.0, 2.0, 1.0])


def test_power_only_outside_register_spans() -> None:
    readings = [
        Reading(1, at(0), None, 4.0),  # before the first register reading: power counts
        Reading(1, at(15), 100.0, 4.0),
        Reading(1, at(20), None, 400.0),  # inside a register span: the register is exact
        Reading(1, at(30), 102.0, 4.0),
        Reading(1, at(45), None, 8.0),  # after the last register reading: power again
    ]
    assert kwh_by_minute(run(readings)) == pytest.approx({0: 1.0, 15: 2.0, 30: 1.5, 45: 0.0}, rel=1e-12)


def test_empty_input() -> None:
    result = run([])
    assert len(result.buckets.meter) == 0
    assert result.buckets.kwh.dtype == np.float64
    assert result.spikes.shape == (0,)


def test_output_dtypes() -> None:
    b = run(register((0, 1.0), (15, 2.0))).buckets
    dtypes = [a.dtype for a in (b.meter, b.bucket_start_us, b.kwh, b.coverage_s, b.n, b.quality)]
    assert dtypes == [np.dtype(t) for t in (np.int64, np.int64, np.float64, np.float64, np.int32, np.int8)]


def test_quality_constants() -> None:
    assert (QUALITY_MEASURED, QUALITY_PARTIAL, QUALITY_ESTIMATED) == (0, 1, 2)


def test_segment_sums() -> None:
    keys, sums = segment_sums(np.array([3, 3, 1, 1, 1, 3]), np.array([1.0, 2.0, 0.5, 0.25, 0.25, 7.0]))
    assert keys.tolist() == [3, 1, 3]
    assert sums.tolist() == [3.0, 1.0, 7.0]
    empty = segment_sums(np.array([], dtype=np.int64), np.array([]))
    assert [len(a) for a in empty] == [0, 0]


# --- validation -----------------------------------------------------------------------------


def _arrays(n: int = 3) -> dict[str, Any]:
    return {
        "meter": np.ones(n, dtype=np.int64),
        "ts_us": np.arange(n, dtype=np.int64) * MIN_US,
        "energy_kwh": np.arange(n, dtype=np.float64),
        "power_kw": np.full(n, NAN),
        "multiplier": np.ones(n),
        "rollover_kwh": np.full(n, NAN),
        "max_power_kw": np.full(n, NAN),
    }


def _call(**changes: Any) -> EnergyResult:
    args = _arrays() | changes
    pos = [args.pop(k) for k in ("meter", "ts_us", "energy_kwh", "power_kw")]
    return interval_energy(*pos, **args)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"meter": np.array([2, 1, 1])}, "sorted by meter"),
        ({"ts_us": np.array([0, 2, 1]) * MIN_US}, "increase strictly"),
        ({"ts_us": np.array([0, 1, 1]) * MIN_US}, "increase strictly"),
        ({"ts_us": np.array([0.0, 1.0, 2.0])}, "integers"),
        ({"energy_kwh": np.zeros(2)}, "same length"),
        ({"max_power_kw": np.zeros(4)}, "same length"),
        ({"meter": np.ones((3, 1), dtype=np.int64)}, "one-dimensional"),
        ({"bucket_s": 0}, "bucket_s"),
        ({"bucket_s": 7}, "bucket_s"),
        ({"bucket_s": 7200}, "bucket_s"),
        ({"bucket_s": 900.0}, "bucket_s"),
        ({"gap_s": 0.0}, "gap_s"),
        ({"gap_s": math.inf}, "gap_s"),
        ({"reset_fraction": 1.0}, "reset_fraction"),
        ({"dip_confirm": 0}, "dip_confirm"),
        ({"multiplier": np.array([1.0, 0.0, 1.0])}, "multiplier"),
        ({"multiplier": np.array([1.0, NAN, 1.0])}, "multiplier"),
        ({"energy_kwh": np.array([1.0, -1.0, 2.0])}, "energy_kwh"),
        ({"power_kw": np.array([NAN, math.inf, NAN])}, "power_kw"),
        ({"rollover_kwh": np.array([0.0, 0.0, 0.0])}, "rollover_kwh"),
        ({"max_power_kw": np.array([NAN, -5.0, NAN])}, "max_power_kw"),
    ],
)
def test_invalid_input_raises_a_core_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        _call(**changes)
    assert isinstance(info.value, CoreError)
    assert isinstance(info.value, ValueError)
    assert not info.value.retriable


def test_valid_arguments_pass_the_same_checks() -> None:
    assert _call(bucket_s=np.int64(60)).buckets.kwh.sum() == pytest.approx(2.0)


def test_segment_sums_checks_lengths() -> None:
    with pytest.raises(InvalidInput, match="same length"):
        segment_sums(np.array([1, 2]), np.array([1.0]))


# --- properties -----------------------------------------------------------------------------

_STEP_US = st.one_of(
    st.integers(1, 20 * 60).map(lambda s: s * 1_000_000),  # whole seconds, mostly under the gap
    st.integers(1, 3 * 3_600_000_000),  # anything up to 3 h, to the microsecond
)
_T0 = st.integers(0, 4 * 3_600_000_000).map(lambda d: T10 + d)


@st.composite
def monotone_meters(draw: st.DrawFn) -> tuple[list[Reading], dict[int, float]]:
    """Several meters with monotone registers; also (last - first) × multiplier per meter."""
    readings: list[Reading] = []
    totals: dict[int, float] = {}
    for meter in sorted(draw(st.sets(st.integers(-5, 1000), min_size=1, max_size=4))):
        mult = draw(st.sampled_from([1.0, 2.5, 40.0, 0.001]))
        t = draw(_T0)
        e = draw(st.floats(0, 1e6, allow_nan=False))
        first = e
        for k in range(draw(st.integers(1, 25))):
            if k:
                t += draw(_STEP_US)
                e += draw(st.floats(0, 500, allow_nan=False))
            readings.append(Reading(meter, t, e, None, mult))
        totals[meter] = (e - first) * mult
    return readings, totals


@given(monotone_meters(), st.sampled_from([60, 300, 900, 3600]), st.sampled_from([600.0, 3600.0]))
@settings(max_examples=150, deadline=None)
def test_register_totals_are_exact(
    data: tuple[list[Reading], dict[int, float]], bucket_s: int, gap_s: float
) -> None:
    readings, totals = data
    b = run(readings, bucket_s=bucket_s, gap_s=gap_s).buckets
    meters, sums = segment_sums(b.meter, b.kwh)
    assert meters.tolist() == sorted(totals)
    for meter, total in zip(meters.tolist(), sums.tolist(), strict=True):
        assert total == pytest.approx(totals[meter], rel=1e-9, abs=1e-9)


_KINDS = ["up", "up", "up", "same", "reset", "dip", "spike", "absent", "top"]


@st.composite
def mixed_meters(draw: st.DrawFn) -> list[Reading]:
    """Registers with resets, dips, spikes, rollovers and holes; power-only meters; gaps."""
    readings: list[Reading] = []
    for meter in sorted(draw(st.sets(st.integers(0, 50), min_size=1, max_size=4))):
        power_only = draw(st.booleans()) and draw(st.booleans())
        rollover = draw(st.sampled_from([None, 1000.0]))
        max_power = draw(st.sampled_from([None, 50.0, 2000.0]))
        mults = draw(st.lists(st.sampled_from([1.0, 2.5, 40.0]), min_size=1, max_size=2))
        power_share = draw(st.sampled_from([0.0, 0.5, 1.0]))
        t = draw(_T0)
        true = draw(st.floats(0, 999, allow_nan=False))
        for k in range(draw(st.integers(1, 25))):
            if k:
                t += draw(_STEP_US)
            kind = draw(st.sampled_from(_KINDS))
            energy: float | None
            if kind == "up":
                true += draw(st.floats(0, 60, allow_nan=False))
                if rollover is not None and true >= rollover:
                    true -= rollover
                energy = true
            elif kind == "reset":
                true = energy = draw(st.floats(0, 1, allow_nan=False))
            elif kind == "dip":
                energy = max(0.0, true - draw(st.floats(0.001, 30, allow_nan=False)))
            elif kind == "spike":
                energy = true + 1e5
            elif kind == "top" and rollover is not None:
                true = energy = rollover * 0.95
            elif kind == "absent":
                energy = None
            else:
                energy = true
            power = draw(st.floats(0, 100, allow_nan=False)) if draw(st.floats(0, 1)) < power_share else None
            readings.append(
                Reading(
                    meter,
                    t,
                    None if power_only else energy,
                    power,
                    multiplier=draw(st.sampled_from(mults)),
                    rollover=rollover,
                    max_power=max_power,
                )
            )
    return readings


@given(
    mixed_meters(),
    st.sampled_from([60, 300, 900, 3600]),
    st.sampled_from([600.0, 3600.0]),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([0.0, 0.01, 0.2]),
)
@settings(max_examples=200, deadline=None)
def test_kernel_equals_reference(
    readings: list[Reading], bucket_s: int, gap_s: float, dip_confirm: int, reset_fraction: float
) -> None:
    kw: dict[str, Any] = {
        "bucket_s": bucket_s,
        "gap_s": gap_s,
        "dip_confirm": dip_confirm,
        "reset_fraction": reset_fraction,
    }
    result = run(readings, **kw)
    want, want_spikes = reference_energy(readings, **kw)
    got = rows(result)
    assert list(got) == list(want)
    assert result.spikes.tolist() == want_spikes
    for key, w in want.items():
        g = got[key]
        assert (g.n, g.quality) == (w.n, w.quality), key
        assert g.kwh == pytest.approx(w.kwh, rel=1e-9, abs=1e-9), key
        assert g.coverage_s == pytest.approx(w.coverage_s, rel=1e-12, abs=1e-9), key
    b = result.buckets
    assert (b.bucket_start_us % (bucket_s * 1_000_000) == 0).all()
    assert ((b.coverage_s >= 0) & (b.coverage_s <= bucket_s)).all()
    assert (b.kwh >= 0).all()


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(-1e6, 1e6, allow_nan=False)), max_size=40))
@settings(max_examples=100, deadline=None)
def test_segment_sums_match_a_loop(pairs: list[tuple[int, float]]) -> None:
    want: list[tuple[int, float]] = []
    for key, value in pairs:
        if want and want[-1][0] == key:
            want[-1] = (key, want[-1][1] + value)
        else:
            want.append((key, value))
    keys, sums = segment_sums(
        np.array([k for k, _ in pairs], dtype=np.int64), np.array([v for _, v in pairs])
    )
    assert keys.tolist() == [k for k, _ in want]
    assert sums.tolist() == [v for _, v in want]
