"""core.energy.recompute_windows: the buckets a batch can have changed, without a database.

`StreamModel` is the energy stage with dicts for tables: it stores readings as the writer's upsert
does (a re-sent reading replaces the stored one, its quality too), asks `recompute_windows` which
buckets to recompute from a slice of the stored readings, recomputes them with the kernel and
flags the spikes it refused. After every batch its buckets must equal the kernel over all stored
readings, whatever slice it was given (a slice too short must be reported, never used silently).

Run also with NUMBA_DISABLE_JIT=1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from energy_reference import Reading, reference_energy
from energy_streams import MIN_US, T0, MeterSpec, Plan, Sent, plans
from hypothesis import given, settings
from hypothesis import strategies as st

from core.energy import RecomputeWindows, interval_energy, recompute_windows
from core.errors import InvalidInput

NAN = float("nan")
BUCKET_US = 900 * 1_000_000

# (readings of one meter, index of the batch's first and last reading) -> slice [a, b) to decide from
Slicer = Callable[[int, int, int], tuple[int, int]]


def _full(n: int, lo: int, hi: int) -> tuple[int, int]:
    return 0, n


def _f(v: float | None) -> float:
    return NAN if v is None else v


class StreamModel:
    """The energy stage over dicts (see the module docstring)."""

    def __init__(
        self, meters: Sequence[MeterSpec], *, bucket_s: int = 900, gap_s: float = 3600.0, **chain: Any
    ) -> None:
        self.meters = meters
        self.kw: dict[str, Any] = {"bucket_s": bucket_s, **chain}
        self.gap_s = gap_s
        self.stored: dict[tuple[int, int], Sent] = {}  # (meter, ts) -> the row, quality as stored
        self.buckets: dict[tuple[int, int], tuple[float, float, int, int]] = {}
        self.windows: list[RecomputeWindows] = []
        self.enough: list[bool] = []  # per batch: the slicer's slices were enough, nothing fetched again

    def deliver(self, batch: Sequence[Sent], slicer: Slicer = _full, *, know_inserted: bool = True) -> None:
        latest = {(s.meter, s.ts_us): s for s in batch}  # the later of two in a batch wins
        inserted = {m: True for m, _ in latest}
        for key, s in latest.items():
            inserted[key[0]] &= key not in self.stored
            if self.stored.get(key) != s:  # an exact duplicate changes nothing, not even a flag
                self.stored[key] = s
        keys = sorted(latest)
        parts: list[list[Sent]] = []
        first, last = [], []
        for meter in sorted(inserted):
            rs = [self.stored[k] for k in sorted(self.stored) if k[0] == meter]
            mine = [i for i, r in enumerate(rs) if (meter, r.ts_us) in latest]
            a, b = slicer(len(rs), mine[0], mine[-1])
            parts.append(rs[a:b])
            first.append(a == 0)
            last.append(b == len(rs))
        w = self._windows(parts, keys, first, last, [know_inserted and inserted[m] for m in sorted(inserted)])
        self.enough.append(not (w.need_before | w.need_after).any())
        if not self.enough[-1]:
            # the slicer was too short: the whole history must always be enough
            parts = [[self.stored[k] for k in sorted(self.stored) if k[0] == m] for m in sorted(inserted)]
            n = len(parts)
            w = self._windows(parts, keys, [True] * n, [True] * n, [False] * n)
            assert not (w.need_before | w.need_after).any()
        self.windows.append(w)
        whole = [r for rs in parts for r in rs]  # start and stop index the whole slice
        todo = [r for a, b in zip(w.start, w.stop, strict=True) for r in whole[a:b]]
        result = self._energy(todo)
        b = result.buckets
        for k in range(len(b.meter)):
            seg = int(np.searchsorted(w.meter, b.meter[k]))
            if w.bucket_lo_us[seg] <= b.bucket_start_us[k] < w.bucket_hi_us[seg]:
                row = (float(b.kwh[k]), float(b.coverage_s[k]), int(b.n[k]), int(b.quality[k]))
                self.buckets[(int(b.meter[k]), int(b.bucket_start_us[k]))] = row
        for r, spike in zip(todo, result.spikes, strict=True):
            if spike:
                self.stored[(r.meter, r.ts_us)] = Sent(r.meter, r.ts_us, r.energy, r.power, 2)

    def batch(self) -> dict[tuple[int, int], tuple[float, float, int, int]]:
        """The kernel over every stored reading: what the stored buckets must be."""
        b = self._energy([self.stored[k] for k in sorted(self.stored)]).buckets
        return {
            (int(m), int(s)): (float(k), float(c), int(n), int(q))
            for m, s, k, c, n, q in zip(
                b.meter, b.bucket_start_us, b.kwh, b.coverage_s, b.n, b.quality, strict=True
            )
        }

    def _windows(
        self,
        parts: list[list[Sent]],
        keys: list[tuple[int, int]],
        first: list[bool],
        last: list[bool],
        inserted: list[bool],
    ) -> RecomputeWindows:
        rs = [r for p in parts for r in p]
        return recompute_windows(
            [r.meter for r in rs],
            [r.ts_us for r in rs],
            [_f(r.energy) for r in rs],
            multiplier=[self.meters[r.meter].multiplier for r in rs],
            rollover_kwh=[_f(self.meters[r.meter].rollover) for r in rs],
            max_power_kw=[_f(self.meters[r.meter].max_power) for r in rs],
            suspect_meter=[r.meter for r in rs if r.quality == 2],
            suspect_ts_us=[r.ts_us for r in rs if r.quality == 2],
            batch_meter=[m for m, _ in keys],
            batch_ts_us=[t for _, t in keys],
            first=np.array(first, dtype=np.bool_),
            last=np.array(last, dtype=np.bool_),
            inserted=np.array(inserted, dtype=np.bool_),
            **self.kw,
        )

    def _energy(self, rs: list[Sent]) -> Any:
        return interval_energy(
            np.array([r.meter for r in rs], dtype=np.int64),
            np.array([r.ts_us for r in rs], dtype=np.int64),
            np.array([_f(r.energy) for r in rs]),
            np.array([_f(r.power) for r in rs]),
            multiplier=np.array([self.meters[r.meter].multiplier for r in rs]),
            rollover_kwh=np.array([_f(self.meters[r.meter].rollover) for r in rs]),
            max_power_kw=np.array([_f(self.meters[r.meter].max_power) for r in rs]),
            gap_s=self.gap_s,
            **self.kw,
        )


def assert_streamed_equals_batch(model: StreamModel) -> None:
    want = model.batch()
    got = model.buckets
    assert sorted(got) == sorted(want)
    for key, (kwh, cov, n, q) in want.items():
        g = got[key]
        assert (g[2], g[3]) == (n, q), key
        assert g[0] == pytest.approx(kwh, rel=1e-9, abs=1e-9), key
        assert g[1] == pytest.approx(cov, rel=1e-12, abs=1e-9), key


def at(minute: float) -> int:
    return T0 + round(minute * MIN_US)


def sent(*points: tuple[float, float | None], meter: int = 0, power: float | None = None) -> list[Sent]:
    return [Sent(meter, at(m), e, power if e is not None else (power or 0.0)) for m, e in points]


PLAIN = MeterSpec(1.0, None, None)


# --- the repro and its relatives ----------------------------------------------------


def test_a_correction_alone_recomputes_the_dip_run_its_wrong_value_caused() -> None:
    """Issue 15: 14:13 sent as 1101 makes 102, 103, 104 dips (the third confirms a new baseline);
    the correct 101, sent alone later, must reach the 14:15 bucket those dips made estimated."""
    model = StreamModel([PLAIN])
    model.deliver(sent((12, 100.0), (13, 1101.0), (14, 102.0), (16, 103.0), (17, 104.0), (18, 105.0)))
    assert model.buckets[(0, at(15))][0] == pytest.approx(1.0)  # 104 → 105, the rest estimated 0
    assert model.buckets[(0, at(15))][3] == 2
    model.deliver(sent((13, 101.0)))
    w = model.windows[-1]
    assert (w.bucket_lo_us[0], w.bucket_hi_us[0]) == (at(0), at(30))
    assert model.buckets[(0, at(15))][0] == pytest.approx(2.5)  # 0.5 of 102 → 103, then 1 + 1
    assert model.buckets[(0, at(15))][3] == 1  # measured up to 14:18, the rest of it not yet
    assert_streamed_equals_batch(model)


def test_a_wrong_value_arriving_late_starts_a_dip_run_after_it() -> None:
    model = StreamModel([PLAIN])
    model.deliver(sent((12, 100.0), (14, 102.0), (16, 103.0), (17, 104.0), (18, 105.0), (31, 106.0)))
    model.deliver(sent((13, 1101.0)))  # late, and wrong: 14:14 to 14:17 become dips
    assert model.buckets[(0, at(15))][3] == 2
    assert_streamed_equals_batch(model)


def test_a_correction_that_removes_a_register_value_is_seen() -> None:
    model = StreamModel([PLAIN])
    model.deliver(sent((12, 100.0), (13, 1101.0), (14, 102.0), (16, 103.0), (17, 104.0), (18, 105.0)))
    model.deliver([Sent(0, at(13), None, 3.0)])
    assert_streamed_equals_batch(model)


def test_a_late_reset_and_its_correction() -> None:
    model = StreamModel([PLAIN])
    model.deliver(sent((0, 500.0), (10, 501.0), (20, 502.0), (40, 503.0), (50, 504.0)))
    model.deliver(sent((30, 0.2)))  # a reset: 503 and 504 now count from 0.2
    assert_streamed_equals_batch(model)
    model.deliver(sent((30, 502.5)))
    assert_streamed_equals_batch(model)


def test_correcting_the_anchor_of_a_run_of_spikes() -> None:
    """A wrong low baseline makes every later reading a spike until enough time has passed; the
    correction lifts them all, including spikes far from it."""
    model = StreamModel([MeterSpec(1.0, None, 30.0)])
    points = [(m, 5000.0 + m * 0.1) for m in range(0, 180, 6)]
    model.deliver(sent(*points[:3], (13, 0.0), *points[3:]))  # 0.0 at 14:13 is taken as a reset
    flagged = [k for k, s in model.stored.items() if s.quality == 2]
    assert len(flagged) > 10, "the register reads as 5000 kWh jumps on a 30 kW meter"
    model.deliver(sent((13, 5001.3)))
    assert_streamed_equals_batch(model)


def test_a_new_reading_can_close_a_span_opened_long_before() -> None:
    """Dips after 14:02 keep its anchor; a late good reading at 15:20 closes a span from 14:02, so
    buckets back to 14:00 change, though the reading before it is at 15:10."""
    model = StreamModel([PLAIN])
    model.deliver(sent((2, 100.0), (50, 99.0), (70, 99.5), (90, 120.0), (100, 121.0)))
    model.deliver(sent((80, 101.0)))  # now 14:50 and 15:10 are dips of a run that 15:20 ends
    w = model.windows[-1]
    assert w.bucket_lo_us[0] == at(0)
    assert_streamed_equals_batch(model)


def test_in_order_readings_recompute_from_the_bucket_before_them() -> None:
    """The common path: in-order register readings change the bucket of the reading before them
    and their own, nothing earlier, and a short slice is enough."""
    model = StreamModel([PLAIN])
    model.deliver(sent(*((m, 100.0 + m) for m in range(0, 40, 2))))

    def short(n: int, lo: int, hi: int) -> tuple[int, int]:
        return max(0, lo - 12), n

    model.deliver(sent((40, 140.5), (42, 142.0)), short)
    w = model.windows[-1]
    assert model.enough[-1]
    assert (w.bucket_lo_us[0], w.bucket_hi_us[0]) == (at(30), at(45))
    assert_streamed_equals_batch(model)


def test_power_only_meters_need_no_register_state() -> None:
    model = StreamModel([PLAIN])
    model.deliver([Sent(0, at(m), None, 10.0) for m in range(0, 40, 2)])

    def short(n: int, lo: int, hi: int) -> tuple[int, int]:
        return lo - 5, n  # from 14:30, the start of the bucket before the new readings' bucket

    model.deliver([Sent(0, at(m), None, 12.0) for m in (40, 42)], short)
    w = model.windows[-1]
    assert (w.bucket_lo_us[0], w.bucket_hi_us[0]) == (at(30), at(45))
    assert model.enough[-1]
    assert_streamed_equals_batch(model)


def test_a_short_slice_is_reported_not_used() -> None:
    model = StreamModel([PLAIN])
    model.deliver(sent(*((m, 100.0 + m) for m in range(0, 60, 2))))
    rs = [model.stored[k] for k in sorted(model.stored)]
    common: dict[str, Any] = {
        "multiplier": np.ones(3),
        "rollover_kwh": np.full(3, NAN),
        "max_power_kw": np.full(3, NAN),
        "suspect_meter": [],
        "suspect_ts_us": [],
        "batch_meter": [0],
        "batch_ts_us": [rs[10].ts_us],
        "inserted": [False],
    }
    three = rs[9:12]
    e = [_f(r.energy) for r in three]
    w = recompute_windows([0] * 3, [r.ts_us for r in three], e, first=[False], last=[False], **common)
    # no state is known before 14:20 (one reading), and nothing shows where the old chain rejoins
    assert w.need_before.tolist() == [True]
    assert w.need_after.tolist() == [True]
    ok = recompute_windows([0] * 3, [r.ts_us for r in three], e, first=[True], last=[True], **common)
    assert not ok.need_before[0] and not ok.need_after[0]


def test_spike_flags_rule_out_a_misread_as_the_state() -> None:
    """A misread low value first in a short slice could be the state the stored buckets came from;
    then the next readings would be spikes on a 30 kW meter for over an hour. They are not flagged
    suspect, so it was not: the state is known three readings on, and the slice is enough."""
    model = StreamModel([MeterSpec(1.0, None, 30.0)])
    history = [(m, 5000.0 + 0.1 * m) for m in range(60)]
    history[40] = (40, 4960.0)
    model.deliver(sent(*history))
    assert not any(s.quality == 2 for s in model.stored.values())

    def from_the_misread(n: int, lo: int, hi: int) -> tuple[int, int]:
        return 40, n

    model.deliver(sent((60, 5006.0)), from_the_misread)
    w = model.windows[-1]
    assert model.enough[-1]
    assert (w.bucket_lo_us[0], w.bucket_hi_us[0]) == (at(45), at(75))
    assert_streamed_equals_batch(model)


def test_too_many_possible_states_is_reported() -> None:
    """Falling readings sent as suspect, with a long dip confirmation: every one could be the state,
    each with its own dip count, more than the window follows at once."""
    n = 45
    ts = [at(m) for m in range(n)]
    energy = [1000.0 - m for m in range(n)]
    common: dict[str, Any] = {
        "multiplier": np.ones(n),
        "rollover_kwh": np.full(n, NAN),
        "max_power_kw": np.full(n, NAN),
        "suspect_meter": [0] * n,
        "suspect_ts_us": ts,
        "dip_confirm": 100,
        "inserted": [False],
    }
    late = recompute_windows(
        [0] * n, ts, energy, batch_meter=[0], batch_ts_us=[ts[-1]], first=[False], last=[True], **common
    )
    assert late.need_before.tolist() == [True]
    early = recompute_windows(
        [0] * n, ts, energy, batch_meter=[0], batch_ts_us=[ts[0]], first=[True], last=[False], **common
    )
    assert early.need_after.tolist() == [True]
    whole = recompute_windows(
        [0] * n, ts, energy, batch_meter=[0], batch_ts_us=[ts[0]], first=[True], last=[True], **common
    )
    assert not whole.need_after[0]
    assert whole.bucket_hi_us[0] == at(45)


YES = np.array([True])
BOTH = np.array([True, True])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"first": [1]}, "booleans"),
        ({"first": BOTH, "last": BOTH, "inserted": BOTH}, "one value per meter"),
        ({"batch_ts_us": [5]}, "batch readings are not in the slice"),
        ({"batch_meter": [1, 1], "batch_ts_us": [2, 1]}, "increase strictly"),
        ({"suspect_meter": [1], "suspect_ts_us": [7]}, "suspect readings are not in the slice"),
        ({"suspect_meter": [1, 1], "suspect_ts_us": [2, 1]}, "increase strictly"),
        (
            {"meter": [1, 2], "batch_ts_us": [1], "first": BOTH, "last": BOTH, "inserted": BOTH},
            "meter 2 has no reading in the batch",
        ),
        ({"bucket_s": 7}, "bucket_s"),
        ({"dip_confirm": 0}, "dip_confirm"),
        ({"energy_kwh": [1.0, -1.0]}, "energy_kwh"),
        ({"multiplier": [1.0]}, "same length"),
    ],
)
def test_invalid_input(changes: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "meter": [1, 1],
        "ts_us": [1, 2],
        "energy_kwh": [1.0, 2.0],
        "multiplier": [1.0, 1.0],
        "rollover_kwh": [NAN, NAN],
        "max_power_kw": [NAN, NAN],
        "batch_meter": [1],
        "batch_ts_us": [2],
        "suspect_meter": [],
        "suspect_ts_us": [],
        "first": YES,
        "last": YES,
        "inserted": YES,
    } | changes
    pos = [args.pop(k) for k in ("meter", "ts_us", "energy_kwh")]
    with pytest.raises(InvalidInput, match=message):
        recompute_windows(*pos, **args)


# --- the property ---------------------------------------------------------------------------

_CONTEXT = st.sampled_from([0, 1, 2, 3, 5, 8, 10_000])


@given(
    plans(),
    st.data(),
    st.sampled_from([60, 300, 900]),
    st.sampled_from([600.0, 3600.0]),
    st.sampled_from([1, 2, 3]),
    st.sampled_from([0.01, 0.2]),
    st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_streamed_buckets_equal_the_batch_computation(
    plan: Plan,
    data: st.DataObject,
    bucket_s: int,
    gap_s: float,
    dip_confirm: int,
    reset_fraction: float,
    know_inserted: bool,
) -> None:
    model = StreamModel(
        plan.meters, bucket_s=bucket_s, gap_s=gap_s, dip_confirm=dip_confirm, reset_fraction=reset_fraction
    )

    def slicer(n: int, lo: int, hi: int) -> tuple[int, int]:
        return max(0, lo - data.draw(_CONTEXT)), min(n, hi + 1 + data.draw(_CONTEXT))

    for batch in plan.batches:
        model.deliver(batch, slicer, know_inserted=know_inserted)
        assert_streamed_equals_batch(model)
    # and the kernel's batch computation is the plain-Python oracle's
    final = plan.final()
    assert [(s.meter, s.ts_us) for s in final] == sorted(model.stored)
    readings = [
        Reading(
            s.meter, s.ts_us, s.energy, s.power, plan.meters[s.meter].multiplier,
            plan.meters[s.meter].rollover, plan.meters[s.meter].max_power,
        )
        for s in final
    ]  # fmt: skip
    want, _ = reference_energy(
        readings, bucket_s=bucket_s, gap_s=gap_s, dip_confirm=dip_confirm, reset_fraction=reset_fraction
    )
    assert sorted(model.buckets) == sorted(want)
    for key, w in want.items():
        kwh, cov, n, q = model.buckets[key]
        assert (n, q) == (w.n, w.quality), key
        assert kwh == pytest.approx(w.kwh, rel=1e-9, abs=1e-9), key
        assert cov == pytest.approx(w.coverage_s, rel=1e-12, abs=1e-9), key
