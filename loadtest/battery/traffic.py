"""Good traffic: meter readings as real fleets send them, with the faults real meters have.

Every meter reads about once a minute (with jitter, at millisecond precision, so readings fall
anywhere inside the 15-minute buckets). Registers go up with the meter's load; some meters
have a CT/PT multiplier, some a rollover value (the register wraps once, mid-stream), some a
physical power bound (a reading far beyond it is a spike), some are reset to about zero once,
some misread lower now and then (a transient dip), some go silent for two hours (a gap longer
than `WATTSTREAM_ENERGY_GAP_S`); a tenth of the meters report only power. Readings travel one per message or
in batches of the site's readings, in every timestamp form the contract allows (epoch
milliseconds, RFC 3339 with `Z` and with offsets), and some are sent twice (exact duplicates,
possibly in another form) or late (after later readings of their meter, well within the
lateness limit).

The data stays where the documented semantics are unambiguous, so that the oracle can be
exact: a reset drops to at most 0.2 % of the register, a dip to 30–90 % of it, a wrap comes from
within 1 % of the rollover value to under 1 % of it, a spike is 50–500 hours of the power bound
in a minute; dips are single, anomalies are at least 6 readings apart and never among a meter's
first or last 10 readings, and late readings are at least 5 readings from any anomaly. (A late
reading next to a dip changes which span the dip's successor closes; recomputing that is a
separate promise, tested in the test suite.)

`Traffic.expected` is what a correct pipeline must store; `Traffic.meters` says what the
database knows about each meter (`registered=False`: left for the worker to auto-register).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from loadtest.battery.kafka_io import Message

__all__ = ["Meter", "Sent", "Traffic", "make_traffic"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZONES = (UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)))
_METER_NAMES = ("main", "sub-hvac", "sub-light")
_GAP_S = 7200  # longer than the default WATTSTREAM_ENERGY_GAP_S (3600); the oracle reads the setting
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Meter:
    site: str
    meter: str
    registers: bool  # a cumulative register; otherwise power readings only
    multiplier: float = 1.0
    rollover_kwh: float | None = None
    max_power_kw: float | None = None
    registered: bool = True  # recorded before the run; otherwise auto-registered by the worker


@dataclass(frozen=True, slots=True)
class Sent:
    """One distinct reading (the last word on its meter and time)."""

    meter: int  # index into Traffic.meters
    ts_us: int
    energy_kwh: float | None
    power_kw: float | None
    quality: str


@dataclass
class Traffic:
    meters: list[Meter]
    expected: list[Sent]
    messages: list[Message]
    spikes: set[tuple[int, int]]  # (meter, ts_us) the generator made spikes of
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def sites(self) -> list[str]:
        return sorted({m.site for m in self.meters})

    def load(self) -> str:
        c = self.counts
        return (
            f"{len(self.expected):,} readings ({c['duplicate']:,} duplicates, {c['late']:,} late), "
            f"{len(self.meters)} meters, {c['single']:,} single + {c['batch']:,} batch messages"
        )


def _ts_text(ts_us: int, rng: random.Random) -> str | int:
    form = rng.random()
    if form < 0.35:
        return ts_us // 1000
    at = (_EPOCH + timedelta(microseconds=ts_us)).astimezone(_ZONES[int(form * 10) % 3])
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _body(meters: list[Meter], readings: list[Sent], rng: random.Random) -> dict[str, object]:
    """The JSON object of one reading as a device sends it."""
    out = []
    for r in readings:
        m = meters[r.meter]
        d: dict[str, object] = {"site": m.site, "meter": m.meter, "ts": _ts_text(r.ts_us, rng)}
        if r.energy_kwh is not None:
            d["energy_kwh"] = r.energy_kwh
        if r.power_kw is not None:
            d["power_kw"] = r.power_kw
        if r.quality != "ok" or rng.random() < 0.3:
            d["quality"] = r.quality
        out.append(d)
    return out[0] if len(out) == 1 else {"readings": out}


def _spaced(rng: random.Random, lo: int, hi: int, k: int, taken: set[int], gap: int) -> list[int]:
    """Up to `k` positions in [lo, hi), each at least `gap` from every taken one."""
    chosen: list[int] = []
    for _ in range(k * 20):
        if len(chosen) == k or hi <= lo:
            break
        p = rng.randrange(lo, hi)
        if all(abs(p - t) >= gap for t in taken):
            taken.add(p)
            chosen.append(p)
    return chosen


def _one(rng: random.Random, lo: int, hi: int, taken: set[int]) -> int | None:
    got = _spaced(rng, lo, hi, 1, taken, 6)
    return got[0] if got else None


def _meter_kinds(n_meters: int, rng: random.Random, auto_share: float) -> list[str]:
    kinds = []
    for i in range(n_meters):
        r = (i * 0.6180339887 + rng.random() * 0.05) % 1.0  # spread kinds across sites
        if r < 0.10:
            kinds.append("power")
        elif r < 0.25:
            kinds.append("rollover")
        elif r < 0.45:
            kinds.append("reset")
        elif r < 0.70:
            kinds.append("spiky")
        elif r < 0.70 + auto_share:
            kinds.append("auto")
        else:
            kinds.append("plain")
    return kinds


def make_traffic(
    prefix: str,
    n_readings: int,
    n_meters: int,
    *,
    seed: int,
    t0: datetime,
    auto_register_share: float = 0.05,
    duplicate_share: float = 0.02,
    late_share: float = 0.01,
    single_share: float = 0.2,
) -> Traffic:
    """About `n_readings` distinct readings over `n_meters` meters (three per site), in the order
    they are to be produced; see the module docstring."""
    rng = random.Random(seed)
    per_meter = max(n_readings // n_meters, 40)
    kinds = _meter_kinds(n_meters, rng, auto_register_share)
    meters: list[Meter] = []
    expected: list[Sent] = []
    spikes: set[tuple[int, int]] = set()
    counts: Counter[str] = Counter()
    events: dict[str, list[tuple[int, int, Sent]]] = {}  # site -> (send key, tiebreak, reading)
    t0_us = int((t0 - _EPOCH).total_seconds()) * _US
    for mi, kind in enumerate(kinds):
        site = f"{prefix}-s{mi // 3:03d}"
        multiplier = rng.choice((1.0, 1.0, 1.0, 2.0, 40.0, 0.5)) if kind not in ("power", "auto") else 1.0
        meter = Meter(
            site=site,
            meter=_METER_NAMES[mi % 3],
            registers=kind != "power",
            multiplier=multiplier,
            rollover_kwh=100_000.0 if kind == "rollover" else None,
            max_power_kw=1000.0 if kind == "spiky" else None,
            registered=kind != "auto",
        )
        meters.append(meter)
        n = per_meter + (1 if mi < n_readings - per_meter * n_meters else 0)
        taken: set[int] = set()
        gap_at = _one(rng, 12, n - 12, taken) if rng.random() < 0.12 else None
        if gap_at is not None:
            counts["gap"] += 1
        # timestamps: about a minute apart, at millisecond precision, one gap of two hours
        ts = [t0_us + rng.randrange(0, 600_000) * 1000]
        for i in range(1, n):
            step = 60_000 + rng.randrange(-10_000, 10_001)
            if i == gap_at:
                step += _GAP_S * 1000
            ts.append(ts[-1] + step * 1000)
        base_kw = rng.uniform(5.0, 300.0)
        kw = [
            max(
                base_kw * (1 + 0.3 * math.sin(2 * math.pi * t / 86_400e6)) + rng.gauss(0, base_kw * 0.05), 0.5
            )
            for t in ts
        ]
        values: list[float | None] = [None] * n
        qualities = ["estimated" if rng.random() < 0.03 else "ok" for _ in range(n)]
        if meter.registers:
            values = _register(meter, kind, ts, kw, taken, rng, counts, spikes, mi)
        late = _spaced(rng, 6, n - 6, int(n * late_share + rng.random()), taken, 5)
        counts["late"] += len(late)
        with_power = kind == "power" or rng.random() < 0.5
        for i in range(n):
            sent = Sent(
                meter=mi,
                ts_us=ts[i],
                energy_kwh=values[i],
                power_kw=round(kw[i], 3) if with_power else None,
                quality=qualities[i],
            )
            expected.append(sent)
            key = ts[min(i + rng.randint(2, 20), n - 1)] + 1 if i in late else ts[i]
            events.setdefault(site, []).append((key, len(expected), sent))
            if rng.random() < duplicate_share:
                counts["duplicate"] += 1
                events[site].append((ts[min(i + rng.randint(1, 50), n - 1)] + 2, len(expected), sent))
    messages = _pack(meters, events, rng, single_share, counts)
    return Traffic(meters, expected, messages, spikes, counts)


def _register(
    meter: Meter,
    kind: str,
    ts: list[int],
    kw: list[float],
    taken: set[int],
    rng: random.Random,
    counts: Counter[str],
    spikes: set[tuple[int, int]],
    mi: int,
) -> list[float | None]:
    """Register values as sent, with this meter kind's anomalies placed among `taken`."""
    n = len(ts)
    increments = [0.0] + [kw[i] * (ts[i] - ts[i - 1]) / 3.6e9 / meter.multiplier for i in range(1, n)]
    wrap_at = reset_at = None
    if kind == "rollover":
        wrap_at = _one(rng, n // 3, 2 * n // 3, taken)
        assert wrap_at is not None
        # the register crosses the rollover value exactly at `wrap_at`
        assert meter.rollover_kwh is not None
        start = meter.rollover_kwh - sum(increments[1:wrap_at]) - increments[wrap_at] * 0.5
        counts["rollover"] += 1
    else:
        start = rng.uniform(2_000.0, 60_000.0)
    if kind == "reset":
        reset_at = _one(rng, 10, n - 10, taken)
        counts["reset"] += reset_at is not None
    spike_at = set(_spaced(rng, 10, n - 10, rng.randint(1, 2), taken, 6)) if kind == "spiky" else set()
    dip_hi = wrap_at - 6 if wrap_at is not None else n - 10
    dip_at = set(_spaced(rng, 10, dip_hi, rng.randint(0, 2), taken, 6))
    counts["spike"] += len(spike_at)
    true = start
    values: list[float | None] = []
    for i in range(n):
        true += increments[i]
        if i == reset_at:
            true = rng.uniform(0.0, 0.002) * values[-1]  # type: ignore[operator]
        shown = true
        if meter.rollover_kwh is not None and true >= meter.rollover_kwh:
            shown = true - meter.rollover_kwh
        if i in dip_at and (values[-1] or 0.0) >= 100.0:  # a dip of a tiny register would be near zero
            shown = (values[-1] or 0.0) * rng.uniform(0.3, 0.9)
            counts["dip"] += 1
        if i in spike_at:
            assert meter.max_power_kw is not None
            shown = true + meter.max_power_kw * rng.uniform(50.0, 500.0) / meter.multiplier
            spikes.add((mi, ts[i]))
        values.append(round(shown, 3))
    return values


def _pack(
    meters: list[Meter],
    events: dict[str, list[tuple[int, int, Sent]]],
    rng: random.Random,
    single_share: float,
    counts: Counter[str],
) -> list[Message]:
    """Each site's readings in send order, one per message or in batches (about `single_share`
    of the readings travel alone); sites interleaved by time, as a fleet's gateways send."""
    mean_batch = 31  # randint(2, 60)
    p_single = single_share * mean_batch / (1 - single_share + single_share * mean_batch)
    keyed: list[tuple[int, str, Message]] = []
    for site, evs in events.items():
        evs.sort(key=lambda e: (e[0], e[1]))
        i = 0
        while i < len(evs):
            size = 1 if rng.random() < p_single else rng.randint(2, 60)
            group = evs[i : i + size]
            body = _body(meters, [e[2] for e in group], rng)
            counts["single" if len(group) == 1 and "readings" not in body else "batch"] += 1
            value = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            headers = (
                ("traceparent", f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01".encode()),
            )
            keyed.append(
                (
                    group[0][0],
                    site,
                    Message(site.encode(), value, headers if rng.random() < 0.1 else (), len(group)),
                )
            )
            i += size
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [m for _, _, m in keyed]
