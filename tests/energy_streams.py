"""Meter histories and the order they arrive in, for the property tests of in-stream energy.

A plan is what a careless fleet sends: registers with dips, resets, spikes and rollovers,
power-only readings, readings sent wrong first and corrected later (alone, late, after the dip
run the wrong value caused, or never), duplicates, readings late by a few places, some sent as
suspect, all cut into batches. Whatever the plan, the buckets streamed batch by batch must equal
a batch computation over what is stored at the end: the last value sent for each timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

T0 = 1_772_460_000_000_000  # 2026-03-02 14:00 UTC in epoch µs
MIN_US = 60_000_000

# seconds between readings: mostly a minute, some beyond a 15-minute bucket or a 1-hour gap
_STEPS_S = [20, 60, 60, 60, 60, 300, 840, 2400, 5400]
_KINDS = ["up", "up", "up", "up", "same", "reset", "dip", "spike", "absent", "top"]
_WRONG = ["high", "high", "huge", "low", "zero", "none", "any"]
# places a correction or a late reading arrives after its slot; 10_000 is "at the very end"
_LATE_BY = [1, 2, 3, 5, 8, 10_000]


@dataclass(frozen=True)
class MeterSpec:
    multiplier: float
    rollover: float | None
    max_power: float | None


@dataclass(frozen=True)
class Sent:
    meter: int  # index into Plan.meters
    ts_us: int
    energy: float | None
    power: float | None
    quality: int = 0  # 2: the device sent it as suspect


@dataclass(frozen=True)
class Plan:
    meters: tuple[MeterSpec, ...]
    batches: tuple[tuple[Sent, ...], ...]

    def final(self) -> list[Sent]:
        """What is stored at the end: the last value sent per (meter, ts), sorted by (meter, ts)."""
        last = {(s.meter, s.ts_us): s for batch in self.batches for s in batch}
        return [last[k] for k in sorted(last)]


@st.composite
def plans(draw: st.DrawFn, max_meters: int = 3, max_readings: int = 24) -> Plan:
    specs: list[MeterSpec] = []
    truth: list[Sent] = []
    for m in range(draw(st.integers(1, max_meters))):
        spec = MeterSpec(
            multiplier=draw(st.sampled_from([1.0, 2.5])),
            rollover=draw(st.sampled_from([None, 1000.0])),
            max_power=draw(st.sampled_from([None, 30.0, 2000.0])),
        )
        specs.append(spec)
        power_only = draw(st.integers(0, 7)) == 0
        with_power = draw(st.sampled_from([0.0, 0.5, 1.0]))
        t = T0 + draw(st.integers(0, 3600)) * 1_000_000
        true = draw(st.floats(0, 990, allow_nan=False))
        for k in range(draw(st.integers(1, max_readings))):
            if k:
                t += draw(st.sampled_from(_STEPS_S)) * 1_000_000
            energy: float | None
            kind = draw(st.sampled_from(_KINDS))
            if kind == "up":
                true += draw(st.floats(0, 8, allow_nan=False))
                if spec.rollover is not None and true >= spec.rollover:
                    true -= spec.rollover
                energy = true
            elif kind == "reset":
                true = energy = draw(st.floats(0, 1, allow_nan=False))
            elif kind == "dip":
                energy = max(0.0, true - draw(st.floats(0.01, 30, allow_nan=False)))
            elif kind == "spike":
                energy = true + 1e5
            elif kind == "top" and spec.rollover is not None:
                true = energy = spec.rollover * 0.95
            elif kind == "absent":
                energy = None
            else:
                energy = true
            power = draw(st.floats(0, 100, allow_nan=False)) if draw(st.floats(0, 1)) < with_power else None
            if power_only:
                energy = None
            if energy is None and power is None:
                power = 0.0  # a reading carries a register value or power, or both
            quality = 2 if draw(st.integers(0, 24)) == 0 else 0
            truth.append(Sent(m, t, energy, power, quality))
    truth.sort(key=lambda s: (s.ts_us, s.meter))

    # each send gets a place: its slot, or later when late; ties keep the order they were made in
    sends: list[tuple[int, int, Sent, bool]] = []
    for slot, s in enumerate(truth):
        how = draw(st.sampled_from(["on time"] * 6 + ["corrected", "corrected", "late", "duplicated"]))
        alone = draw(st.booleans())
        if how == "corrected":
            sends.append((slot, len(sends), _wrong(draw, s), False))
            sends.append((slot + draw(st.sampled_from(_LATE_BY)), len(sends), s, alone))
        elif how == "late":
            sends.append((slot + draw(st.sampled_from(_LATE_BY)), len(sends), s, alone))
        else:
            sends.append((slot, len(sends), s, False))
            if how == "duplicated":
                sends.append((slot + draw(st.sampled_from(_LATE_BY)), len(sends), s, alone))
    sends.sort(key=lambda x: (x[0], x[1]))

    batches: list[tuple[Sent, ...]] = []
    current: list[Sent] = []
    size = draw(st.integers(1, 8))
    for _, _, s, alone in sends:
        if alone:
            if current:
                batches.append(tuple(current))
                current = []
            batches.append((s,))
            continue
        current.append(s)
        if len(current) >= size:
            batches.append(tuple(current))
            current = []
            size = draw(st.integers(1, 8))
    if current:
        batches.append(tuple(current))
    return Plan(tuple(specs), tuple(batches))


def _wrong(draw: st.DrawFn, s: Sent) -> Sent:
    """A wrong first version of `s`: a misread register, a register where none belongs, or none."""
    base = s.energy if s.energy is not None else draw(st.floats(0, 990, allow_nan=False))
    kind = draw(st.sampled_from(_WRONG))
    energy: float | None
    if kind == "high":
        energy = base + draw(st.sampled_from([5.0, 1000.0]))
    elif kind == "huge":
        energy = base + 1e5
    elif kind == "low":
        energy = max(0.0, base - draw(st.floats(0.5, 50, allow_nan=False)))
    elif kind == "zero":
        energy = 0.0
    elif kind == "none":
        energy = None
    else:
        energy = draw(st.floats(0, 2000, allow_nan=False))
    power = s.power if energy is not None or s.power is not None else 1.0
    return Sent(s.meter, s.ts_us, energy, power, s.quality)
