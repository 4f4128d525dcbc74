"""A plain-Python oracle for `core.energy.interval_energy`, written from its docstring, not its code.

Loops over dicts, exact `Fraction` arithmetic for time and for the proration of energy into
buckets, and every bucket found by asking each interval which buckets it overlaps. Slow and
obvious on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby, pairwise

US_PER_S = 1_000_000


@dataclass(frozen=True)
class Reading:
    meter: int
    ts_us: int
    energy: float | None
    power: float | None
    multiplier: float = 1.0
    rollover: float | None = None
    max_power: float | None = None


@dataclass(frozen=True)
class Row:
    kwh: float
    coverage_s: float
    n: int
    quality: int


@dataclass
class _Bucket:
    kwh: Fraction = Fraction(0)
    covered_us: int = 0
    n: int = 0
    estimated: bool = False


@dataclass(frozen=True)
class _Span:
    start_us: int
    end_us: int
    kwh_per_h_start: Fraction  # energy density (kW) at start and end, linear in between
    kwh_per_h_end: Fraction
    measured: bool
    estimated: bool


def reference_energy(
    readings: list[Reading],
    *,
    bucket_s: int = 900,
    gap_s: float = 3600.0,
    reset_fraction: float = 0.01,
    dip_confirm: int = 3,
) -> tuple[dict[tuple[int, int], Row], list[bool]]:
    """({(meter, bucket_start_us): Row}, spike flag per reading) for readings sorted by (meter, ts)."""
    bucket_us = bucket_s * US_PER_S
    gap = Fraction(gap_s)
    rows: dict[tuple[int, int], Row] = {}
    spikes: list[bool] = []
    for meter, group in groupby(readings, key=lambda r: r.meter):
        rs = list(group)
        spans, meter_spikes = _meter_spans(rs, gap, reset_fraction, dip_confirm)
        spikes += meter_spikes
        buckets: dict[int, _Bucket] = {}
        for r in rs:
            buckets.setdefault(r.ts_us // bucket_us * bucket_us, _Bucket()).n += 1
        for a, b in pairwise(rs):  # every interval touches the buckets it overlaps
            for start in range(a.ts_us // bucket_us * bucket_us, b.ts_us, bucket_us):
                buckets.setdefault(start, _Bucket())
        for span in spans:
            _add(span, buckets, bucket_us)
        for start, bk in buckets.items():
            if bk.estimated:
                quality = 2
            elif bk.covered_us == bucket_us:
                quality = 0
            else:
                quality = 1
            rows[(meter, start)] = Row(float(bk.kwh), bk.covered_us / US_PER_S, bk.n, quality)
    return dict(sorted(rows.items())), spikes


def _meter_spans(
    rs: list[Reading], gap: Fraction, reset_fraction: float, dip_confirm: int
) -> tuple[list[_Span], list[bool]]:
    spikes = [False] * len(rs)
    spans: list[_Span] = []
    baseline: float | None = None
    anchor: Reading | None = None
    first_register: int | None = None
    last_anchor: int | None = None
    dip_run = 0
    for pos, r in enumerate(rs):
        if r.energy is None:
            continue
        if anchor is None or baseline is None:
            baseline, anchor, first_register, last_anchor = r.energy, r, pos, pos
            continue
        e = r.energy
        hours = Fraction(r.ts_us - anchor.ts_us, 3600 * US_PER_S)
        estimated = False
        if e >= baseline:
            delta = e - baseline
        elif r.rollover is not None and 0.9 * r.rollover <= baseline <= r.rollover and e <= 0.1 * r.rollover:
            delta = (r.rollover - baseline) + e
        elif e <= reset_fraction * baseline:
            delta = e
        else:
            dip_run += 1
            if dip_run < dip_confirm:
                continue
            delta, estimated = 0.0, True
        # spike bound: a float comparison by definition (kW x hours x 10 % tolerance)
        span_h = (r.ts_us - anchor.ts_us) / 3.6e9
        if r.max_power is not None and delta * r.multiplier > r.max_power * span_h * 1.1:
            spikes[pos] = True
            continue
        long = Fraction(r.ts_us - anchor.ts_us, US_PER_S) > gap
        density = Fraction(delta) * Fraction(r.multiplier) / hours  # uniform over the span
        spans.append(
            _Span(anchor.ts_us, r.ts_us, density, density, not (estimated or long), estimated or long)
        )
        baseline, anchor, last_anchor, dip_run = e, r, pos, 0

    for k in range(1, len(rs)):
        inside_registers = (
            first_register is not None and last_anchor is not None and first_register <= k - 1 < last_anchor
        )
        a, b = rs[k - 1], rs[k]
        if inside_registers or a.power is None or b.power is None:
            continue
        if Fraction(b.ts_us - a.ts_us, US_PER_S) > gap:
            continue
        m = Fraction(b.multiplier)
        spans.append(_Span(a.ts_us, b.ts_us, Fraction(a.power) * m, Fraction(b.power) * m, True, False))
    return spans, spikes


def _add(span: _Span, buckets: dict[int, _Bucket], bucket_us: int) -> None:
    length = span.end_us - span.start_us

    def density(t: int) -> Fraction:
        share = Fraction(t - span.start_us, length)
        return span.kwh_per_h_start + (span.kwh_per_h_end - span.kwh_per_h_start) * share

    start = span.start_us // bucket_us * bucket_us
    while start < span.end_us:
        lo, hi = max(start, span.start_us), min(start + bucket_us, span.end_us)
        bk = buckets.setdefault(start, _Bucket())
        # trapezoid rule: exact for a density linear in time
        bk.kwh += Fraction(hi - lo, 3600 * US_PER_S) * (density(lo) + density(hi)) / 2
        if span.measured:
            bk.covered_us += hi - lo
        bk.estimated |= span.estimated
        start += bucket_us
