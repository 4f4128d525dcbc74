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
    "interval_energy",
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
    if isinstance(bucket_s, bool) or not isinstance(bucket_s, int | np.integer):
        raise InvalidInput(f"bucket_s must be an integer number of seconds, not {bucket_s!r}")
    if not 60 <= bucket_s <= 3600 or 3600 % bucket_s:
        raise InvalidInput(f"bucket_s must divide 3600 and lie in 60..3600, not {bucket_s}")
    if not (math.isfinite(gap_s) and gap_s > 0):
        raise InvalidInput(f"gap_s must be positive and finite, not {gap_s}")
    if not 0 <= reset_fraction < 1:
        raise InvalidInput(f"reset_fraction must lie in [0, 1), not {reset_fraction}")
    if isinstance(dip_confirm, bool) or not isinstance(dip_confirm, int | np.integer) or dip_confirm < 1:
        raise InvalidInput(f"dip_confirm must be an integer >= 1, not {dip_confirm!r}")
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
        baseline = 0.0
        dips = 0
        for i in range(i0, i1):
            n[ts[i] // bucket_us + shift] += 1
            if anchor < 0 and i > i0:
                _power_interval(i - 1, i, ts, power, multiplier, gap_us, shift, bucket_us, kwh, cov_us, est)
            e = energy[i]
            if np.isnan(e):
                continue
            if anchor < 0:
                anchor = i
                baseline = e
                continue
            d = e - baseline
            r = rollover[i]
            confirmed_dip = False
            if d >= 0.0:
                delta = d
            elif not np.isnan(r) and _ROLLOVER_HIGH * r <= baseline <= r and e <= _ROLLOVER_LOW * r:
                delta = (r - baseline) + e
            elif e <= reset_fraction * baseline:
                delta = e
            else:
                dips += 1
                if dips < dip_confirm:
                    continue
                delta = 0.0
                confirmed_dip = True
            dt = ts[i] - ts[anchor]
            bound = max_power[i]
            # max_power_kw is real power: compare the delta after the CT/PT multiplier
            if not np.isnan(bound) and delta * multiplier[i] > bound * (dt / _US_PER_H) * _SPIKE_TOLERANCE:
                spikes[i] = True
                continue
            estimated = confirmed_dip or dt > gap_us
            q = delta * multiplier[i]
            _spread(
                ts[anchor], ts[i], q, q, 1.0, not estimated, estimated, shift, bucket_us, kwh, cov_us, est
            )
            anchor = i
            baseline = e
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
