"""Interval energy recomputed in one batch from everything produced: the battery's oracle.

Written from the documented semantics (README "Interval energy, in-stream" and DESIGN
"Computation"), in plain Python, without the platform's code (nothing from `core/` or
`ingest/`): if both were wrong the same way, the battery would not see it.

Per meter, readings sorted by time:

- **Register spans.** The first reading with a register value is the first *anchor*. Each later
  register reading either closes a span from the anchor (and becomes the anchor) or is
  skipped: a rise is the delta; a fall where the meter has a rollover value, the anchor sits
  near it and the reading near zero is a wrap (`rollover - anchor + reading`); a fall to near
  zero is a reset (the reading is the energy since); any other fall is a transient dip (skipped,
  not a new baseline). A delta beyond `max_power_kw` × the span's hours (10 % tolerance) is a
  spike: skipped too, and the reading is flagged suspect. A span's delta × multiplier is spread
  uniformly over its time; a span longer than the gap limit still carries its energy but is
  estimated and not coverage.
- **Power.** Outside register spans (a meter of power readings only), consecutive readings at
  most the gap limit apart, both with power, give the trapezoid's energy, each bucket the
  integral over its own part of the span; that time is covered. Anything else is missing time.
- **Buckets** are aligned to the UTC epoch; a meter has a row for every bucket from the one
  holding its first reading to the one holding its last, with the readings counted in it, the
  covered seconds, and a quality: estimated if an estimated span touches it, else measured when
  covered in full, else partial.

"Near" in the documented words is read as the data generator keeps it, far from any threshold:
resets fall below `_RESET_FRACTION` of the anchor, wraps come from within `_NEAR_ROLLOVER` of the
rollover value to below `_NEAR_ZERO_OF_ROLLOVER` of it. Only single dips are generated, so the
rule for a run of dips (a register that really went down) is not needed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BucketValue", "MeterEnergy", "meter_energy"]

_RESET_FRACTION = 0.01
_NEAR_ROLLOVER = 0.9
_NEAR_ZERO_OF_ROLLOVER = 0.1
_SPIKE_TOLERANCE = 1.1
QUALITY_MEASURED, QUALITY_PARTIAL, QUALITY_ESTIMATED = 0, 1, 2


@dataclass
class BucketValue:
    kwh: float = 0.0
    covered_us: int = 0
    n: int = 0
    estimated: bool = False


@dataclass
class MeterEnergy:
    buckets: dict[int, BucketValue]  # bucket start (epoch µs) -> value
    spikes: set[int]  # timestamps (epoch µs) of refused register readings
    total_kwh: float  # the sum of every accepted delta × multiplier

    def quality(self, start_us: int, bucket_us: int) -> int:
        b = self.buckets[start_us]
        if b.estimated:
            return QUALITY_ESTIMATED
        return QUALITY_MEASURED if b.covered_us >= bucket_us else QUALITY_PARTIAL


def meter_energy(
    readings: Sequence[tuple[int, float | None, float | None]],
    *,
    multiplier: float,
    rollover_kwh: float | None,
    max_power_kw: float | None,
    bucket_s: int,
    gap_s: float,
) -> MeterEnergy:
    """`readings` are one meter's (ts_us, energy_kwh, power_kw), distinct times, any order."""
    rs = sorted(readings)
    bucket_us = bucket_s * 1_000_000
    gap_us = round(gap_s * 1_000_000)
    first = rs[0][0] // bucket_us
    last = rs[-1][0] // bucket_us
    buckets = {k * bucket_us: BucketValue() for k in range(first, last + 1)}
    for ts, _, _ in rs:
        buckets[ts // bucket_us * bucket_us].n += 1

    def spread(t0: int, t1: int) -> list[tuple[BucketValue, int, int]]:
        """The buckets [t0, t1] overlaps, with each overlap's bounds."""
        out = []
        k = t0 // bucket_us
        while k * bucket_us < t1:
            lo, hi = max(t0, k * bucket_us), min(t1, (k + 1) * bucket_us)
            if hi > lo:
                out.append((buckets[k * bucket_us], lo, hi))
            k += 1
        return out

    spikes: set[int] = set()
    total = 0.0
    anchor: tuple[int, float] | None = None  # (ts, register) the next span starts from
    first_register_ts: int | None = None
    for ts, energy, _ in rs:
        if energy is None:
            continue
        if anchor is None:
            anchor, first_register_ts = (ts, energy), ts
            continue
        a_ts, a_e = anchor
        if energy >= a_e:
            delta = energy - a_e
        elif (
            rollover_kwh is not None
            and a_e >= _NEAR_ROLLOVER * rollover_kwh
            and energy <= _NEAR_ZERO_OF_ROLLOVER * rollover_kwh
        ):
            delta = rollover_kwh - a_e + energy
        elif energy <= _RESET_FRACTION * a_e:
            delta = energy
        else:
            continue  # a transient dip
        kwh = delta * multiplier
        hours = (ts - a_ts) / 3.6e9
        if max_power_kw is not None and kwh > max_power_kw * hours * _SPIKE_TOLERANCE:
            spikes.add(ts)
            continue
        estimated = ts - a_ts > gap_us
        for b, lo, hi in spread(a_ts, ts):
            b.kwh += kwh * (hi - lo) / (ts - a_ts)
            if estimated:
                b.estimated = True
            else:
                b.covered_us += hi - lo
        total += kwh
        anchor = (ts, energy)

    # power: between consecutive readings outside the register spans
    last_anchor_ts = anchor[0] if anchor is not None else None
    for (t0, _, p0), (t1, _, p1) in itertools.pairwise(rs):
        outside = (
            first_register_ts is None
            or t1 <= first_register_ts
            or (last_anchor_ts is not None and t0 >= last_anchor_ts)
        )
        if not outside or p0 is None or p1 is None or t1 - t0 > gap_us:
            continue
        for b, lo, hi in spread(t0, t1):
            # the exact integral of the linear power over [lo, hi], in kWh
            p_lo = p0 + (p1 - p0) * (lo - t0) / (t1 - t0)
            p_hi = p0 + (p1 - p0) * (hi - t0) / (t1 - t0)
            part = (p_lo + p_hi) / 2 * (hi - lo) / 3.6e9 * multiplier
            b.kwh += part
            b.covered_us += hi - lo
            total += part
    return MeterEnergy(buckets, spikes, total)
