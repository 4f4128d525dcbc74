"""Interval energy per meter and time bucket, from cumulative registers and power readings.

`interval_energy` takes the readings of many meters at once, sorted by (meter, ts) with unique
timestamps per meter; NaN in `energy_kwh` / `power_kw` means that value is absent. Meter
parameters (`multiplier`, `rollover_kwh`, `max_power_kw`) are given per reading; where a
parameter applies to a span of time, the value of the reading that closes the span is used.

Registers. Each meter keeps a *baseline* register value and an *anchor*, the reading the
baseline was taken from; both start at the meter's first reading with `energy_kwh`. For each
later reading `i` with energy `e`, `d = e - baseline`:

- `d >= 0`: delta `d`;
- `d < 0`, the meter has a rollover value `R`, `0.9 R <= baseline <= R` and `e <= 0.1 R`: the
  register wrapped; delta `R - baseline + e`;
- `d < 0` and `e <= reset_fraction * baseline`: the register was reset to about zero; delta `e`
  (the energy counted since the reset);
- otherwise `i` is a *dip*, most likely a misread: it is skipped (no delta, baseline and anchor
  unchanged). When `dip_confirm` consecutive register readings are dips, the register really
  went down: the last of them becomes the new baseline and anchor, with delta 0 over the span,
  which is marked estimated. Any accepted reading ends a run of dips.
- a *spike*: if `max_power_kw` is set and `delta * multiplier > max_power_kw * hours * 1.1` (hours
  of the span from the anchor, 10 % tolerance; the bound is real power), the reading is
  refused: `spikes[i]` is set and it is skipped like a dip, so the next reading measures from
  the same baseline and anchor, over the whole span. A spike does not end a run of dips.

An accepted reading's `delta * multiplier` kWh is spread uniformly over the span from the
anchor to it and prorated across buckets in proportion to time (microseconds, exactly), then it
becomes the anchor. Spans from one meter's first register reading to its last accepted one
tile that time, so the energy of any range of whole spans is exactly the sum of the register
deltas. A span no longer than `gap_s` counts as coverage; a longer one still carries its energy
(the register total is exact) but is marked estimated and is not coverage. Times are compared
at microsecond resolution (`gap_s` is rounded to whole microseconds).

Power. Between consecutive readings outside those register spans (before a meter's first
register reading, after its last accepted one, or a meter without registers), when both ends
have `power_kw` and they are at most `gap_s` apart, the energy is the integral of the power
interpolated linearly between them (the trapezoid), times the multiplier; a sub-span gets the
integral over its own time, not a uniform share. It counts as coverage. A longer gap, or an
end without power, gives no energy and no coverage: missing time is reported, never filled.
Inside register spans power is not integrated: the register is exact.

Buckets are `bucket_s` long and aligned to the UTC epoch. Each meter gets one row for every
bucket from the one holding its first reading to the one holding its last (every bucket an
interval between readings overlaps or a reading falls in), sorted by meter then start.
`n` counts the readings with `ts` in the bucket, spikes included; `coverage_s` is the time
covered by measured spans (at most the bucket length); `quality` is estimated (2) if any
estimated span touches the bucket, else measured (0) if the coverage is the whole bucket, else
partial (1).

Recompute windows. After a batch is stored (new, late, duplicated or corrected readings),
`recompute_windows` says from a slice of a meter's stored readings which buckets can have
changed and which readings recompute them as the whole history would. The register chain
carries only (anchor, dips) from one reading to the next (the baseline is the anchor's value),
and accepting a reading sets it to (that reading, 0) whatever it was before: two chains that
accept the same reading agree from there on. So:

- Before the batch's first reading the chain is as it was. Its state where the slice starts is
  unknown, but that chain accepts one of the next `dip_confirm` register readings not flagged
  suspect (a reading the stored buckets did not refuse as a spike is accepted or is a dip), and
  each such start is followed until one state remains. A state that would refuse a reading
  that is not flagged is not the stored chain, so it is dropped.
- Every span the batch can change starts at that state's anchor or later, and so does the power
  interval into the batch's first reading. The window starts with the bucket holding the earlier
  of the two. The kernel starts at the chain's last accepted reading at or before that bucket's
  start: its state is (that reading, 0) there, so a fresh start computes what the history does.
- After the batch, the new chain is followed exactly, and so is every chain the stored buckets
  can have come from: the chain without the batch's readings if they were all new (`inserted`);
  otherwise any state, since the values they replaced are not known (the argument of the first
  point again). The window ends with the bucket of the first reading after the batch at which
  every old chain has the new one's state; from there both compute the same spans and power
  intervals. The kernel runs on to the new chain's first accepted reading at or after the
  window's end, where the last span reaching into the window ends.

That covers every classification a new or corrected value can change, in both directions: a
wrong value starting a dip run after it or a correction ending one, a reset, a spike, and a
run of refused spikes behind a wrong low baseline, however long the power bound makes it. A slice
too short for this is reported (`need_before` / `need_after`), never used silently; from a
meter's first reading to its last is always enough. A meter with no register value in the slice,
old or new, needs no state at all (only the power intervals around the new readings change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from core.errors import InvalidInput

__all__ = [
    "QUALITY_ESTIMATED",
    "QUALITY_MEASURED",
    "QUALITY_PARTIAL",
    "BucketEnergy",
    "EnergyResult",
    "RecomputeWindows",
    "interval_energy",
    "recompute_windows",
    "segment_sums",
]

QUALITY_MEASURED: Final = 0
QUALITY_PARTIAL: Final = 1
QUALITY_ESTIMATED: Final = 2

_US_PER_S: Final = 1_000_000
_US_PER_H: Final = 3_600_000_000.0
_SPIKE_TOLERANCE: Final = 1.1
_ROLLOVER_HIGH: Final = 0.9  # the baseline must be this close to the rollover value ...
_ROLLOVER_LOW: Final = 0.1  # ... and the new reading this close to zero for a wrap

# How the register chain takes a reading (`_classify`): `_FIRST` opens the chain.
_FIRST: Final = 0
_ACCEPTED: Final = 1
_CONFIRMED: Final = 2  # the last of `dip_confirm` dips: accepted with delta 0, estimated
_DIP: Final = 3
_SPIKE: Final = 4
_MAX_STATES: Final = 32  # possible kernel states followed at once by a recompute window (see there)


@dataclass(frozen=True, slots=True)
class BucketEnergy:
    """One row per (meter, bucket) touched, sorted by meter then `bucket_start_us`."""

    meter: NDArray[np.int64]
    bucket_start_us: NDArray[np.int64]
    kwh: NDArray[np.float64]
    coverage_s: NDArray[np.float64]
    n: NDArray[np.int32]
    quality: NDArray[np.int8]


@dataclass(frozen=True, slots=True)
class EnergyResult:
    buckets: BucketEnergy
    spikes: NDArray[np.bool_]  # per input reading: refused as a physically impossible jump


def interval_energy(
    meter: ArrayLike,
    ts_us: ArrayLike,
    energy_kwh: ArrayLike,
    power_kw: ArrayLike,
    *,
    multiplier: ArrayLike,
    rollover_kwh: ArrayLike,
    max_power_kw: ArrayLike,
    bucket_s: int = 900,
    gap_s: float = 3600.0,
    reset_fraction: float = 0.01,
    dip_confirm: int = 3,
) -> EnergyResult:
    """Energy, coverage, reading count and quality per meter and bucket (see the module docstring).

    Raises `InvalidInput` for arrays of different lengths or the wrong kind, readings not sorted
    by meter and then strictly by time, negative or infinite values, or parameters out of range.
    """
    m = _int_array("meter", meter)
    ts = _int_array("ts_us", ts_us)
    e = _float_array("energy_kwh", energy_kwh)
    p = _float_array("power_kw", power_kw)
    mult = _float_array("multiplier", multiplier)
    roll = _float_array("rollover_kwh", rollover_kwh)
    maxp = _float_array("max_power_kw", max_power_kw)
    _same_length(
        meter=m, ts_us=ts, energy_kwh=e, power_kw=p, multiplier=mult, rollover_kwh=roll, max_power_kw=maxp
    )
    _check_bucket(bucket_s)
    if not (math.isfinite(gap_s) and gap_s > 0):
        raise InvalidInput(f"gap_s must be positive and finite, not {gap_s}")
    _check_chain(reset_fraction, dip_confirm)
    _check_order(m, ts)
    _check_values("energy_kwh", e, allow_nan=True, allow_zero=True)
    _check_values("power_kw", p, allow_nan=True, allow_zero=True)
    _check_values("multiplier", mult, allow_nan=False, allow_zero=False)
    _check_values("rollover_kwh", roll, allow_nan=True, allow_zero=False)
    _check_values("max_power_kw", maxp, allow_nan=True, allow_zero=False)

    bucket_us = int(bucket_s) * _US_PER_S
    gap_us = round(gap_s * _US_PER_S)
    out = _interval_energy(
        m, ts, e, p, mult, roll, maxp, bucket_us, gap_us, float(reset_fraction), int(dip_confirm)
    )
    b_meter, b_start, kwh, cov_us, n, quality, spikes = out
    coverage_s = np.minimum(cov_us / _US_PER_S, float(bucket_s))
    return EnergyResult(BucketEnergy(b_meter, b_start, kwh, coverage_s, n, quality), spikes)


@dataclass(frozen=True, slots=True)
class RecomputeWindows:
    """Per meter of a slice, in order: what a batch can have changed and what recomputes it.

    Run `interval_energy` on readings `[start, stop)` (indices into the slice) and keep its
    buckets in `[bucket_lo_us, bucket_hi_us)`: those are the buckets the batch can have changed,
    computed as the whole history would. `need_before` / `need_after`: the slice does not reach
    far enough back / on for that; the other fields are then a best effort over the slice.
    """

    meter: NDArray[np.int64]
    start: NDArray[np.int64]
    stop: NDArray[np.int64]
    bucket_lo_us: NDArray[np.int64]
    bucket_hi_us: NDArray[np.int64]
    need_before: NDArray[np.bool_]
    need_after: NDArray[np.bool_]


def recompute_windows(
    meter: ArrayLike,
    ts_us: ArrayLike,
    energy_kwh: ArrayLike,
    *,
    multiplier: ArrayLike,
    rollover_kwh: ArrayLike,
    max_power_kw: ArrayLike,
    batch_meter: ArrayLike,
    batch_ts_us: ArrayLike,
    suspect_meter: ArrayLike,
    suspect_ts_us: ArrayLike,
    first: ArrayLike,
    last: ArrayLike,
    inserted: ArrayLike,
    bucket_s: int = 900,
    reset_fraction: float = 0.01,
    dip_confirm: int = 3,
) -> RecomputeWindows:
    """The buckets a batch can have changed, per meter, from a slice of its stored readings.

    The slice holds, sorted by (meter, ts), readings as stored after the batch was written; every
    meter in it has readings in the batch (`batch_meter`, `batch_ts_us`: sorted, all in the
    slice). `suspect_meter`, `suspect_ts_us`: the slice's readings stored with quality 2 before
    this batch's spikes are flagged (sorted). Per meter, in the slice's order: `first` / `last`,
    the slice holds the meter's first / last stored reading; `inserted`, none of the meter's batch
    readings replaced a stored one (else their old values are taken as unknown). See "Recompute
    windows" in the module docstring.

    Raises `InvalidInput` for arrays of different lengths or the wrong kind, unsorted readings,
    batch or suspect readings not in the slice, a meter without batch readings, or parameters out
    of range.
    """
    m = _int_array("meter", meter)
    ts = _int_array("ts_us", ts_us)
    e = _float_array("energy_kwh", energy_kwh)
    mult = _float_array("multiplier", multiplier)
    roll = _float_array("rollover_kwh", rollover_kwh)
    maxp = _float_array("max_power_kw", max_power_kw)
    _same_length(meter=m, ts_us=ts, energy_kwh=e, multiplier=mult, rollover_kwh=roll, max_power_kw=maxp)
    marked = []
    for what, keys, times in (("batch", batch_meter, batch_ts_us), ("suspect", suspect_meter, suspect_ts_us)):
        km = _int_array(f"{what}_meter", keys)
        kt = _int_array(f"{what}_ts_us", times)
        _same_length(**{f"{what}_meter": km, f"{what}_ts_us": kt})
        _check_order(km, kt)
        marked.append((what, km, kt))
    firsts = _bool_array("first", first)
    lasts = _bool_array("last", last)
    news = _bool_array("inserted", inserted)
    _same_length(first=firsts, last=lasts, inserted=news)
    _check_bucket(bucket_s)
    _check_chain(reset_fraction, dip_confirm)
    _check_order(m, ts)
    _check_values("energy_kwh", e, allow_nan=True, allow_zero=True)
    _check_values("multiplier", mult, allow_nan=False, allow_zero=False)
    _check_values("rollover_kwh", roll, allow_nan=True, allow_zero=False)
    _check_values("max_power_kw", maxp, allow_nan=True, allow_zero=False)
    starts = np.flatnonzero(np.r_[True, m[1:] != m[:-1]]) if len(m) else np.empty(0, np.int64)
    if len(firsts) != len(starts):
        raise InvalidInput(
            f"first, last and inserted need one value per meter ({len(starts)}), got {len(firsts)}"
        )
    masks = []
    for what, km, kt in marked:
        mask, missing = _mark(m, ts, km, kt)
        if missing:
            raise InvalidInput(f"{missing} {what} readings are not in the slice")
        masks.append(mask)
    batch, flagged = masks
    without = np.flatnonzero(np.add.reduceat(batch, starts) == 0) if len(m) else starts
    if without.size:
        raise InvalidInput(f"meter {m[starts[without[0]]]} has no reading in the batch")
    out = _recompute_windows(
        m, ts, e, mult, roll, maxp, flagged, batch, firsts, lasts, news,
        int(bucket_s) * _US_PER_S, float(reset_fraction), int(dip_confirm),
    )  # fmt: skip
    return RecomputeWindows(*out)


def segment_sums(keys: ArrayLike, values: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Sums of `values` over runs of equal consecutive `keys`: (the run's key, its sum), in order.

    Sort by key first for a group-by; NaN values make their run's sum NaN.
    """
    k = _int_array("keys", keys)
    v = _float_array("values", values)
    _same_length(keys=k, values=v)
    return _segment_sums(k, v)


# --- validation -----------------------------------------------------------------------------


def _array(name: str, x: ArrayLike, kinds: str, what: str, dtype: type[np.generic]) -> NDArray[Any]:
    a = np.asarray(x)
    if a.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size and a.dtype.kind not in kinds:
        raise InvalidInput(f"{name} must hold {what}, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


def _int_array(name: str, x: ArrayLike) -> NDArray[np.int64]:
    return _array(name, x, "iu", "integers", np.int64)


def _float_array(name: str, x: ArrayLike) -> NDArray[np.float64]:
    return _array(name, x, "iuf", "numbers", np.float64)


def _bool_array(name: str, x: ArrayLike) -> NDArray[np.bool_]:
    return _array(name, x, "b", "booleans", np.bool_)


def _check_bucket(bucket_s: int) -> None:
    if isinstance(bucket_s, bool) or not isinstance(bucket_s, int | np.integer):
        raise InvalidInput(f"bucket_s must be an integer number of seconds, not {bucket_s!r}")
    if not 60 <= bucket_s <= 3600 or 3600 % bucket_s:
        raise InvalidInput(f"bucket_s must divide 3600 and lie in 60..3600, not {bucket_s}")


def _check_chain(reset_fraction: float, dip_confirm: int) -> None:
    if not 0 <= reset_fraction < 1:
        raise InvalidInput(f"reset_fraction must lie in [0, 1), not {reset_fraction}")
    if isinstance(dip_confirm, bool) or not isinstance(dip_confirm, int | np.integer) or dip_confirm < 1:
        raise InvalidInput(f"dip_confirm must be an integer >= 1, not {dip_confirm!r}")


def _same_length(**arrays: NDArray[Any]) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInput(f"arrays must have the same length, got {lengths}")


def _check_order(meter: NDArray[np.int64], ts: NDArray[np.int64]) -> None:
    down = np.flatnonzero(meter[1:] < meter[:-1])
    if down.size:
        i = int(down[0]) + 1
        raise InvalidInput(f"readings must be sorted by meter: meter[{i}] = {meter[i]} < {meter[i - 1]}")
    bad = np.flatnonzero((meter[1:] == meter[:-1]) & (ts[1:] <= ts[:-1]))
    if bad.size:
        i = int(bad[0]) + 1
        raise InvalidInput(
            f"ts_us must increase strictly within a meter: meter {meter[i]} has ts_us[{i}] = {ts[i]}"
            f" after {ts[i - 1]}"
        )


def _check_values(name: str, a: NDArray[np.float64], *, allow_nan: bool, allow_zero: bool) -> None:
    ok = np.isnan(a) if allow_nan else np.zeros(a.shape, dtype=np.bool_)
    ok |= np.isfinite(a) & ((a >= 0) if allow_zero else (a > 0))
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        want = "non-negative" if allow_zero else "positive"
        nan = " or NaN" if allow_nan else ""
        raise InvalidInput(f"{name} must be finite and {want}{nan}: {name}[{i}] = {a[i]}")


# --- kernels --------------------------------------------------------------------------------


@njit(cache=True)
def _spread(
    ta: int,
    tb: int,
    q0: float,
    q1: float,
    scale: float,
    measured: bool,
    estimated: bool,
    shift: int,
    bucket_us: int,
    kwh: NDArray[np.float64],
    cov_us: NDArray[np.int64],
    est: NDArray[np.bool_],
) -> None:
    """Adds the energy of the span [ta, tb] to the buckets it overlaps.

    The energy density goes linearly from q0 at ta to q1 at tb; a sub-span gets `scale` times its
    share of the time times the density at its midpoint, which is the exact integral of a linear
    density. A register delta is q0 = q1 = kWh, scale = 1; power is q = kW, scale = hours.
    """
    dt = tb - ta
    for k in range(ta // bucket_us, (tb - 1) // bucket_us + 1):
        lo = max(ta, k * bucket_us)
        hi = min(tb, (k + 1) * bucket_us)
        mid = ((lo - ta) + (hi - ta)) / (2.0 * dt)
        j = k + shift
        kwh[j] += scale * ((hi - lo) / dt) * (q0 + (q1 - q0) * mid)
        if measured:
            cov_us[j] += hi - lo
        if estimated:
            est[j] = True


@njit(cache=True)
def _power_interval(
    a: int,
    b: int,
    ts: NDArray[np.int64],
    power: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    gap_us: int,
    shift: int,
    bucket_us: int,
    kwh: NDArray[np.float64],
    cov_us: NDArray[np.int64],
    est: NDArray[np.bool_],
) -> None:
    dt = ts[b] - ts[a]
    if np.isnan(power[a]) or np.isnan(power[b]) or dt > gap_us:
        return  # missing time: no energy, no coverage
    m = multiplier[b]
    hours = dt / _US_PER_H
    _spread(ts[a], ts[b], power[a] * m, power[b] * m, hours, True, False, shift, bucket_us, kwh, cov_us, est)


@njit(cache=True, inline="always")  # called per reading: no call, no reference counting
def _classify(
    i: int,
    anchor: int,
    dips: int,
    ts: NDArray[np.int64],
    energy: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power: NDArray[np.float64],
    reset_fraction: float,
    dip_confirm: int,
) -> tuple[int, float]:
    """(kind, delta) of register reading `i` given the chain's anchor and the dips since it.

    The one place the register rules live: the kernel and the recompute windows both call it,
    so a window can never disagree with the computation it bounds. The baseline is always
    `energy[anchor]`, which is why (anchor, dips) is the kernel's whole per-meter state.
    """
    e = energy[i]
    baseline = energy[anchor]
    d = e - baseline
    r = rollover[i]
    if d >= 0.0:
        delta = d
    elif not np.isnan(r) and _ROLLOVER_HIGH * r <= baseline <= r and e <= _ROLLOVER_LOW * r:
        delta = (r - baseline) + e
    elif e <= reset_fraction * baseline:
        delta = e
    elif dips + 1 < dip_confirm:
        return _DIP, 0.0
    else:
        return _CONFIRMED, 0.0  # delta 0 over a positive span: never beyond a power bound
    dt = ts[i] - ts[anchor]
    bound = max_power[i]
    # max_power_kw is real power: compare the delta after the CT/PT multiplier
    if not np.isnan(bound) and delta * multiplier[i] > bound * (dt / _US_PER_H) * _SPIKE_TOLERANCE:
        return _SPIKE, delta
    return _ACCEPTED, delta


@njit(cache=True)
def _interval_energy(
    meter: NDArray[np.int64],
    ts: NDArray[np.int64],
    energy: NDArray[np.float64],
    power: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power: NDArray[np.float64],
    bucket_us: int,
    gap_us: int,
    reset_fraction: float,
    dip_confirm: int,
) -> tuple[
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.int64],
    NDArray[np.int32],
    NDArray[np.int8],
    NDArray[np.bool_],
]:
    n_in = len(ts)
    # pass 1: meter segments and the number of bucket rows each needs
    n_seg = 0
    for i in range(n_in):
        if i == 0 or meter[i] != meter[i - 1]:
            n_seg += 1
    bounds = np.empty(n_seg + 1, np.int64)
    s = 0
    for i in range(n_in):
        if i == 0 or meter[i] != meter[i - 1]:
            bounds[s] = i
            s += 1
    bounds[n_seg] = n_in
    offsets = np.empty(n_seg + 1, np.int64)
    offsets[0] = 0
    for s in range(n_seg):
        first_k = ts[bounds[s]] // bucket_us
        last_k = ts[bounds[s + 1] - 1] // bucket_us
        offsets[s + 1] = offsets[s] + last_k - first_k + 1
    n_rows = offsets[n_seg]

    out_meter = np.empty(n_rows, np.int64)
    out_start = np.empty(n_rows, np.int64)
    kwh = np.zeros(n_rows, np.float64)
    cov_us = np.zeros(n_rows, np.int64)
    n = np.zeros(n_rows, np.int32)
    est = np.zeros(n_rows, np.bool_)
    spikes = np.zeros(n_in, np.bool_)

    # pass 2: per meter, the register chain in time order, power outside it
    for s in range(n_seg):
        i0 = bounds[s]
        i1 = bounds[s + 1]
        row0 = offsets[s]
        k_first = ts[i0] // bucket_us
        shift = row0 - k_first  # row of bucket k is k + shift
        for j in range(row0, offsets[s + 1]):
            out_meter[j] = meter[i0]
            out_start[j] = (k_first + j - row0) * bucket_us
        anchor = -1
        dips = 0
        for i in range(i0, i1):
            n[ts[i] // bucket_us + shift] += 1
            if anchor < 0 and i > i0:
                _power_interval(i - 1, i, ts, power, multiplier, gap_us, shift, bucket_us, kwh, cov_us, est)
            if np.isnan(energy[i]):
                continue
            if anchor < 0:
                anchor = i
                continue
            kind, delta = _classify(
                i, anchor, dips, ts, energy, multiplier, rollover, max_power, reset_fraction, dip_confirm
            )
            if kind == _DIP:
                dips += 1
                continue
            if kind == _SPIKE:
                spikes[i] = True
                continue
            dt = ts[i] - ts[anchor]
            estimated = kind == _CONFIRMED or dt > gap_us
            q = delta * multiplier[i]
            _spread(
                ts[anchor], ts[i], q, q, 1.0, not estimated, estimated, shift, bucket_us, kwh, cov_us, est
            )
            anchor = i
            dips = 0
        if anchor >= 0:
            for i in range(anchor + 1, i1):
                _power_interval(i - 1, i, ts, power, multiplier, gap_us, shift, bucket_us, kwh, cov_us, est)

    quality = np.empty(n_rows, np.int8)
    for j in range(n_rows):
        if est[j]:
            quality[j] = QUALITY_ESTIMATED
        elif cov_us[j] == bucket_us:
            quality[j] = QUALITY_MEASURED
        else:
            quality[j] = QUALITY_PARTIAL
    return out_meter, out_start, kwh, cov_us, n, quality, spikes


@njit(cache=True, inline="always")  # called per reading: no call, no reference counting
def _advance(
    i: int,
    anchor: int,
    dips: int,
    ts: NDArray[np.int64],
    energy: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power: NDArray[np.float64],
    reset_fraction: float,
    dip_confirm: int,
) -> tuple[int, int, int]:
    """The kernel's state (anchor, dips) after register reading `i` (anchor -1: no chain yet), and how
    `i` was taken."""
    if anchor < 0:
        return i, 0, _FIRST
    kind, _ = _classify(
        i, anchor, dips, ts, energy, multiplier, rollover, max_power, reset_fraction, dip_confirm
    )
    if kind == _DIP:
        return anchor, dips + 1, kind
    if kind == _SPIKE:
        return anchor, dips, kind
    return i, 0, kind


@njit(cache=True)
def _add_state(anchors: NDArray[np.int64], dips: NDArray[np.int64], n: int, anchor: int, dip: int) -> int:
    """Adds a possible state to the set unless it is there; -1 when the set is full."""
    for c in range(n):
        if anchors[c] == anchor and dips[c] == dip:
            return n
    if n == len(anchors):
        return -1
    anchors[n] = anchor
    dips[n] = dip
    return n + 1


@njit(cache=True)
def _step_states(
    i: int,
    anchors: NDArray[np.int64],
    dips: NDArray[np.int64],
    n: int,
    flagged: bool,
    keep_one: bool,
    ts: NDArray[np.int64],
    energy: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power: NDArray[np.float64],
    reset_fraction: float,
    dip_confirm: int,
) -> int:
    """Every possible state over register reading `i`, in place; returns how many remain.

    A state that would refuse `i` as a spike when `i` is not flagged suspect is not the state the
    stored buckets were computed with (every refused spike is flagged), so it is dropped; unless
    that would drop them all and nothing else can be true (`keep_one`): then the flags are not to
    be trusted here and every state stays possible.
    """
    m = 0
    for c in range(n):
        a, d, kind = _advance(
            i, anchors[c], dips[c], ts, energy, multiplier, rollover, max_power, reset_fraction, dip_confirm
        )
        if kind == _SPIKE and not flagged:
            continue
        m = _add_state(anchors, dips, m, a, d)  # m <= c: never overwrites a state not yet read
    if m == 0 and keep_one and n > 0:
        for c in range(n):
            a, d, _ = _advance(
                i,
                anchors[c],
                dips[c],
                ts,
                energy,
                multiplier,
                rollover,
                max_power,
                reset_fraction,
                dip_confirm,
            )
            m = _add_state(anchors, dips, m, a, d)
    return m


@njit(cache=True)
def _mark(
    meter: NDArray[np.int64], ts: NDArray[np.int64], b_meter: NDArray[np.int64], b_ts: NDArray[np.int64]
) -> tuple[NDArray[np.bool_], int]:
    """Which readings are among (b_meter, b_ts) (both sorted by meter, ts), and how many of those
    are no reading."""
    mask = np.zeros(len(ts), np.bool_)
    i = 0
    missing = 0
    for j in range(len(b_ts)):
        while i < len(ts) and (meter[i] < b_meter[j] or (meter[i] == b_meter[j] and ts[i] < b_ts[j])):
            i += 1
        if i < len(ts) and meter[i] == b_meter[j] and ts[i] == b_ts[j]:
            mask[i] = True
        else:
            missing += 1
    return mask, missing


@njit(cache=True)
def _meter_window(
    i0: int,
    i1: int,
    ts: NDArray[np.int64],
    energy: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power: NDArray[np.float64],
    suspect: NDArray[np.bool_],
    batch: NDArray[np.bool_],
    first: bool,
    last: bool,
    inserted: bool,
    bucket_us: int,
    reset_fraction: float,
    dip_confirm: int,
    anchors: NDArray[np.int64],
    dips: NDArray[np.int64],
) -> tuple[int, int, int, int, bool, bool]:
    """(start, stop, bucket_lo, bucket_hi, need_before, need_after) of one meter's readings [i0, i1);
    `anchors` and `dips` are room for the possible states."""
    lo = i0
    while not batch[lo]:
        lo += 1
    hi = i1 - 1
    while not batch[hi]:
        hi -= 1

    # 1. The state before the slice is unknown (unless it is the meter's first reading). Whatever
    # it was, the chain accepts some reading within `dip_confirm` unflagged register readings (an
    # unflagged reading is no spike, so it is accepted or counts a dip), and acceptance at `i`
    # leaves (i, 0) whatever came before: follow every such start until one state remains.
    known_at = i0 - 1  # the state after this reading is (anchor, dip)
    anchor = -1
    dip = 0
    resolved = first
    if not first:
        n = 0
        unknown = True
        seen = 0
        for i in range(i0, lo):
            if np.isnan(energy[i]):
                continue
            flagged = suspect[i]
            n = _step_states(
                i,
                anchors,
                dips,
                n,
                flagged,
                not unknown,
                ts,
                energy,
                multiplier,
                rollover,
                max_power,
                reset_fraction,
                dip_confirm,
            )
            if unknown:
                n = _add_state(anchors, dips, n, i, 0)
                if n < 0:
                    break
                if not flagged:
                    seen += 1
                    unknown = seen < dip_confirm
            if not unknown and n == 1:
                resolved = True
                known_at = i
                anchor = anchors[0]
                dip = dips[0]
                break
    need_before = False
    if not resolved:
        no_registers = True
        for i in range(i0, i1):
            if not np.isnan(energy[i]):
                no_registers = False
                break
        if inserted and last and no_registers and lo > i0:
            # no register value before or after the batch, old or new: every interval here is
            # power whatever the state was, and only those around the new readings changed
            b0 = ts[lo - 1] // bucket_us * bucket_us
            start = lo - 1
            while start > i0 and ts[start] > b0:
                start -= 1
            if ts[start] <= b0:
                return start, i1, b0, ts[i1 - 1] // bucket_us * bucket_us + bucket_us, False, False
        need_before = True  # a best effort from here: the state a fresh start at i0 gives

    # 2. The state P before the batch's first reading: the same before and after the batch. Every
    # span that can change starts at P's anchor or later (a new reading can close P's span early,
    # or its old value may have), and so does the power interval into the batch's first reading.
    # The kernel starts at an accepted reading no later than the start of that bucket: its state
    # after it is (it, 0), so a fresh start there computes what the whole history would, and no
    # span before it reaches the bucket. P's anchor is the latest accepted reading, so that start
    # is the latest anchor at or before the start of the bucket the current anchor is in.
    a = anchor
    d = dip
    start = a if a >= 0 and ts[a] % bucket_us == 0 else -1
    for i in range(known_at + 1, lo):
        if not np.isnan(energy[i]):
            na, d, _ = _advance(
                i, a, d, ts, energy, multiplier, rollover, max_power, reset_fraction, dip_confirm
            )
            if na != a:
                f = ts[na] // bucket_us * bucket_us
                if ts[na] == f:
                    start = na
                elif a >= 0 and ts[a] <= f:
                    start = a
                a = na
    p_anchor = a
    p_dip = d
    t0 = ts[lo - 1] if lo > i0 else ts[lo]
    if p_anchor >= 0:
        t0 = ts[p_anchor]  # never after lo - 1
    else:
        start = -1
    b0 = t0 // bucket_us * bucket_us
    if start < 0 or need_before:
        need_before = need_before or not first
        start = i0

    # 3. After the batch: the new chain (from P, exact) against every chain the stored buckets can
    # have come from. A new reading was absent before; a replaced one had a value we cannot see,
    # so after it any state was possible (the same argument as in 1). The window ends at the first
    # reading after the batch where every old chain has the new chain's state: from there on both
    # compute the same spans and power intervals.
    na = p_anchor
    nd = p_dip
    n = 1
    anchors[0] = p_anchor
    dips[0] = p_dip
    unknown = False
    seen = 0
    r = -1
    for i in range(lo, i1):
        register = not np.isnan(energy[i])
        if register:
            na, nd, _ = _advance(
                i, na, nd, ts, energy, multiplier, rollover, max_power, reset_fraction, dip_confirm
            )
        if batch[i]:
            if not inserted:
                unknown = True
                seen = 0
                n = 0
        elif register:
            flagged = suspect[i]
            n = _step_states(
                i,
                anchors,
                dips,
                n,
                flagged,
                not unknown,
                ts,
                energy,
                multiplier,
                rollover,
                max_power,
                reset_fraction,
                dip_confirm,
            )
            if unknown:
                n = _add_state(anchors, dips, n, i, 0)
                if n < 0:
                    break
                if not flagged:
                    seen += 1
                    unknown = seen < dip_confirm
        if i > hi and not unknown:
            same = True
            for c in range(n):
                if anchors[c] != na or dips[c] != nd:
                    same = False
                    break
            if same:
                r = i
                break
    need_after = False
    if r < 0:
        # never the same within the slice: to its end, which must be the meter's last reading
        need_after = not last
        r = i1 - 1
    b1 = ts[r] // bucket_us * bucket_us + bucket_us
    # The kernel runs on to the new chain's first accepted reading at or after b1: the last span
    # that reaches into the window ends there (or the meter's last reading, if none follows).
    stop = -1
    for i in range(r + 1, i1):
        if np.isnan(energy[i]):
            continue
        na, nd, kind = _advance(
            i, na, nd, ts, energy, multiplier, rollover, max_power, reset_fraction, dip_confirm
        )
        if kind != _DIP and kind != _SPIKE and ts[i] >= b1:
            stop = i + 1
            break
    if stop < 0:
        stop = i1
        need_after = need_after or not last
    return start, stop, b0, b1, need_before, need_after


@njit(cache=True)
def _recompute_windows(
    meter: NDArray[np.int64],
    ts: NDArray[np.int64],
    energy: NDArray[np.float64],
    multiplier: NDArray[np.float64],
    rollover: NDArray[np.float64],
    max_power: NDArray[np.float64],
    suspect: NDArray[np.bool_],
    batch: NDArray[np.bool_],
    first: NDArray[np.bool_],
    last: NDArray[np.bool_],
    inserted: NDArray[np.bool_],
    bucket_us: int,
    reset_fraction: float,
    dip_confirm: int,
) -> tuple[
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.bool_],
    NDArray[np.bool_],
]:
    n_seg = len(first)
    out_meter = np.empty(n_seg, np.int64)
    start = np.empty(n_seg, np.int64)
    stop = np.empty(n_seg, np.int64)
    lo = np.empty(n_seg, np.int64)
    hi = np.empty(n_seg, np.int64)
    need_before = np.empty(n_seg, np.bool_)
    need_after = np.empty(n_seg, np.bool_)
    anchors = np.empty(_MAX_STATES, np.int64)
    dips = np.empty(_MAX_STATES, np.int64)
    i0 = 0
    for s in range(n_seg):
        i1 = i0 + 1
        while i1 < len(ts) and meter[i1] == meter[i0]:
            i1 += 1
        out_meter[s] = meter[i0]
        start[s], stop[s], lo[s], hi[s], need_before[s], need_after[s] = _meter_window(
            i0,
            i1,
            ts,
            energy,
            multiplier,
            rollover,
            max_power,
            suspect,
            batch,
            first[s],
            last[s],
            inserted[s],
            bucket_us,
            reset_fraction,
            dip_confirm,
            anchors,
            dips,
        )
        i0 = i1
    return out_meter, start, stop, lo, hi, need_before, need_after


@njit(cache=True)
def _segment_sums(
    keys: NDArray[np.int64], values: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    n_runs = 0
    for i in range(len(keys)):
        if i == 0 or keys[i] != keys[i - 1]:
            n_runs += 1
    out_keys = np.empty(n_runs, np.int64)
    sums = np.zeros(n_runs, np.float64)
    r = -1
    for i in range(len(keys)):
        if i == 0 or keys[i] != keys[i - 1]:
            r += 1
            out_keys[r] = keys[i]
        sums[r] += values[i]
    return out_keys, sums
