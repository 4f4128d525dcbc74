"""The meter simulator behind `wattstream simulate`: synthetic buildings and data centres.

Two halves. `Simulator` is pure and deterministic (one seed fixes every value and every
fault), so tests and demos can rely on what it produces; `run_simulation` paces it into
Kafka. Faults are injected on purpose: the ingest path must be seen to survive what real
meters do (registers that reset, gaps, readings sent twice, readings that arrive late), and
each one is recorded so a demo can point at what the platform should have caught.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.grid_sim import GridSimulator
from ingest.registry import MeterRecord, SiteRecord, register
from ingest.sender import ReadingSender, reading_producer
from schemas.grid import encode_grid_record
from schemas.messages import Reading
from schemas.settings import Settings
from schemas.vocabulary import MeterRole, SubItem

__all__ = [
    "DEFAULT_FAULT_RATE",
    "DEMO_TENANTS",
    "FaultPlan",
    "InjectedFault",
    "MeterSpec",
    "SimulationSummary",
    "Simulator",
    "SiteSpec",
    "make_fleet",
    "run_simulation",
]

Kind = Literal["office", "mall", "hospital", "datacentre"]
FaultKind = Literal["reset", "gap", "duplicate", "late"]
_FAULT_KINDS: Final[tuple[FaultKind, ...]] = ("reset", "gap", "duplicate", "late")
DEFAULT_FAULT_RATE: Final = 0.0005  # per reading: a handful in a demo's ten thousand readings
_DEFAULT_STEP_S: Final = 60.0  # when no rate fixes the step: a typical meter's reporting interval
_BACKFILL: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter of a site; `role` and `sub_item` are what the meters table records."""

    name: str
    role: MeterRole
    sub_item: SubItem | None = None


_BUILDING_METERS: Final = (
    MeterSpec("main", "main"),
    MeterSpec("sub-lighting", "sub_item", "照明插座"),
    MeterSpec("sub-hvac", "sub_item", "空调"),
    MeterSpec("sub-power", "sub_item", "动力"),
    MeterSpec("sub-special", "sub_item", "特殊"),
)
_DATACENTRE_METERS: Final = (MeterSpec("facility", "facility"), MeterSpec("it", "it_load"))


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """A synthetic site. `base_kw` is the design peak load (for a data centre: its IT load)."""

    site: str
    kind: Kind
    floor_area_m2: float
    base_kw: float
    timezone: str = "Asia/Shanghai"

    @property
    def meters(self) -> tuple[MeterSpec, ...]:
        return _DATACENTRE_METERS if self.kind == "datacentre" else _BUILDING_METERS


# floor area (m²) and peak load density (W/m²; for data centres IT W per m² of white space)
_SIZES: Final[dict[Kind, tuple[tuple[float, float], tuple[float, float]]]] = {
    "office": ((8_000, 60_000), (45, 75)),
    "mall": ((20_000, 150_000), (70, 110)),
    "hospital": ((20_000, 120_000), (55, 85)),
    "datacentre": ((1_500, 12_000), (600, 1_200)),
}
_KINDS: Final[tuple[Kind, ...]] = ("office", "mall", "hospital", "datacentre")


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 -- synthetic data wants reproducibility, not secrecy


def make_fleet(n_sites: int, seed: int = 0) -> list[SiteSpec]:
    """A mix of sites, every kind present from four sites on, offices the most common."""
    if n_sites < 1:
        raise ValueError("n_sites must be at least 1")
    rng = _rng(seed)
    fleet = []
    for i in range(n_sites):
        kind = _KINDS[i] if i < len(_KINDS) else rng.choices(_KINDS, weights=(4, 2, 2, 2))[0]
        (a_lo, a_hi), (d_lo, d_hi) = _SIZES[kind]
        area = round(rng.uniform(a_lo, a_hi), -2)
        prefix = "dc" if kind == "datacentre" else "b"
        fleet.append(
            SiteSpec(f"hz-{prefix}{i + 1:03d}", kind, area, round(area * rng.uniform(d_lo, d_hi) / 1e3, 1))
        )
    return fleet


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How often a meter misbehaves: `rate` is the chance per reading that a fault starts."""

    rate: float = DEFAULT_FAULT_RATE
    kinds: tuple[FaultKind, ...] = _FAULT_KINDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("fault rate must be within [0, 1]")
        if not self.kinds or not set(self.kinds) <= set(_FAULT_KINDS):
            raise ValueError(f"fault kinds must be a non-empty subset of {_FAULT_KINDS}")


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault the simulator put in the stream on purpose; `ts` is the affected reading's time."""

    kind: FaultKind
    site: str
    meter: str
    ts: datetime
    detail: str


def _outdoor_c(local: datetime, hour: float) -> float:
    """Hangzhou-like weather: ~5 °C mid-January, ~29 °C late July, warmest mid-afternoon."""
    seasonal = 17.0 - 12.0 * math.cos(2 * math.pi * (local.timetuple().tm_yday - 20) / 365.25)
    return seasonal + 4.0 * math.cos(2 * math.pi * (hour - 14.5) / 24)


def _window(hour: float, opens: float, closes: float, width: float = 0.6) -> float:
    """A smooth 0..1 opening-hours curve: real loads ramp up and down, they do not step."""
    return 1.0 / ((1.0 + math.exp((opens - hour) / width)) * (1.0 + math.exp((hour - closes) / width)))


def _occupancy(kind: Kind, weekday: int, hour: float) -> float:
    if kind == "office":
        return (1.0 if weekday < 5 else 0.15 if weekday == 5 else 0.05) * _window(hour, 8, 18)
    if kind == "mall":
        return (1.0 if weekday >= 5 else 0.8) * _window(hour, 10, 22)
    # hospital wards never close; outpatient clinics add a daytime bump, smaller at weekends
    return 0.55 + (0.45 if weekday < 5 else 0.2) * math.exp(-(((hour - 11.0) / 3.5) ** 2))


# (idle, occupied) shares of the design peak for 照明插座, 动力, 特殊; then the 空调 share
_SHARES: Final[dict[Kind, tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]]] = {
    "office": ((0.04, 0.26), (0.04, 0.12), (0.03, 0.04), 0.40),
    "mall": ((0.06, 0.30), (0.05, 0.14), (0.04, 0.10), 0.40),
    "hospital": ((0.08, 0.18), (0.08, 0.10), (0.12, 0.08), 0.35),
}


def _ideal_kw(site: SiteSpec, local: datetime) -> dict[str, float]:
    """Noise-free load per metered quantity at a local time (sub-items, or IT load and PUE)."""
    hour = local.hour + local.minute / 60 + (local.second + local.microsecond / 1e6) / 3600
    temp = _outdoor_c(local, hour)
    b = site.base_kw
    if site.kind == "datacentre":
        # cooling works harder on hot afternoons: PUE ~1.3 in winter nights to ~1.55 in summer days
        return {
            "it": b * (0.82 + 0.04 * math.sin(2 * math.pi * (hour - 9) / 24)),
            "pue": 1.28 + 0.009 * max(0.0, temp - 5),
        }
    occ = _occupancy(site.kind, local.weekday(), hour)
    light, power, special, hvac = _SHARES[site.kind]
    demand = 0.1 + (max(0.0, temp - 20) + 0.6 * max(0.0, 15 - temp)) / 12
    return {
        "sub-lighting": b * (light[0] + light[1] * occ),
        "sub-hvac": b * hvac * demand * (0.25 + 0.75 * occ),
        "sub-power": b * (power[0] + power[1] * occ),
        "sub-special": b * (special[0] + special[1] * occ),
    }


@dataclass(slots=True)
class _Meter:
    name: str
    energy_kwh: float
    power_kw: float | None = None  # the previous tick's power, for the trapezoid
    drift: float = 0.0  # slow relative noise, AR(1)
    gap_left: int = 0
    held: Reading | None = None
    release_tick: int = 0


class Simulator:
    """Readings for every meter of a fleet, one tick at a time, from `start` every `step_s`.

    Registers integrate the reported power exactly (trapezoid), so energy from registers and
    energy from power agree wherever no fault intervenes. Noise and faults use separate
    random streams: the same seed gives the same loads whatever the fault plan.
    """

    def __init__(
        self,
        fleet: Sequence[SiteSpec],
        start: datetime,
        step_s: float,
        *,
        seed: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self._start = start.astimezone(UTC)
        self._step_s = step_s
        self._plan = faults if faults is not None else FaultPlan()
        self._rng = _rng(seed)
        self._fault_rng = _rng(seed ^ 0x5EED_FA17)
        # drift of relative sd 3 % with a 15-minute memory, whatever the step
        self._phi = math.exp(-step_s / 900.0)
        self._drift_sd = 0.03 * math.sqrt(1 - self._phi**2)
        self._sites = [
            (s, ZoneInfo(s.timezone), [_Meter(m.name, self._initial_register(s, m)) for m in s.meters])
            for s in fleet
        ]
        self._tick = 0
        self._faults: list[InjectedFault] = []

    def _initial_register(self, site: SiteSpec, meter: MeterSpec) -> float:
        share = 1.0 if meter.role in ("main", "facility", "it_load") else 0.25
        return round(site.base_kw * share * 0.5 * 8760 * self._rng.uniform(0.3, 6.0), 3)

    @property
    def now(self) -> datetime:
        """The UTC time of the next tick."""
        return self._start + timedelta(seconds=self._tick * self._step_s)

    @property
    def faults(self) -> tuple[InjectedFault, ...]:
        return tuple(self._faults)

    def ticks(self) -> Iterator[list[Reading]]:
        while True:
            yield self.next_tick()

    def next_tick(self) -> list[Reading]:
        """This tick's readings, meter by meter; late readings released now come last."""
        k, ts = self._tick, self.now
        self._tick += 1
        out: list[Reading] = []
        released: list[Reading] = []
        for site, tz, meters in self._sites:
            local = ts.astimezone(tz)
            powers = self._powers(site, local, meters)
            for meter in meters:
                self._emit(site, meter, k, local, powers[meter.name], out)
                if meter.held is not None and meter.release_tick == k:
                    released.append(meter.held)
                    meter.held = None
        return out + released

    def drain(self) -> list[Reading]:
        """Late readings still held back, for a run that stops before their release."""
        held = [m.held for _, _, meters in self._sites for m in meters if m.held is not None]
        for _, _, meters in self._sites:
            for m in meters:
                m.held = None
        return held

    def _noisy(self, meter: _Meter, ideal: float) -> float:
        meter.drift = self._phi * meter.drift + self._rng.gauss(0.0, self._drift_sd)
        return round(max(0.0, ideal * (1.0 + meter.drift + self._rng.gauss(0.0, 0.005))), 3)

    def _powers(self, site: SiteSpec, local: datetime, meters: list[_Meter]) -> dict[str, float]:
        ideal = _ideal_kw(site, local)
        if site.kind == "datacentre":
            it = self._noisy(meters[1], ideal["it"])
            return {"it": it, "facility": self._noisy(meters[0], it * ideal["pue"])}
        subs = {m.name: self._noisy(m, ideal[m.name]) for m in meters[1:]}
        return {"main": sum(subs.values()), **subs}

    def _emit(
        self, site: SiteSpec, meter: _Meter, k: int, local: datetime, power: float, out: list[Reading]
    ) -> None:
        if meter.power_kw is not None:
            meter.energy_kwh += (meter.power_kw + power) / 2 * self._step_s / 3600
        meter.power_kw = power
        kind: FaultKind | None = None
        frng = self._fault_rng
        eligible = k > 0 and meter.gap_left == 0 and meter.held is None and self._plan.rate > 0
        if eligible and frng.random() < self._plan.rate:
            kind = frng.choice(self._plan.kinds)
        detail = ""
        if kind == "reset":
            old, meter.energy_kwh = meter.energy_kwh, round(frng.uniform(0.0, 2.0), 3)
            detail = f"register {old:.3f} -> {meter.energy_kwh:.3f} kWh"
        reading = Reading(site.site, meter.name, local, meter.energy_kwh, power)
        if meter.gap_left > 0:
            meter.gap_left -= 1
        elif kind == "gap":
            n = frng.randint(2, 5)
            meter.gap_left, detail = n - 1, f"silent for {n} ticks"
        elif kind == "late":
            n = frng.randint(2, 6)
            meter.held, meter.release_tick, detail = reading, k + n, f"sent {n} ticks late"
        else:
            out.append(reading)
            if kind == "duplicate":
                out.append(reading)
                detail = "sent twice"
        if kind is not None:
            self._faults.append(InjectedFault(kind, site.site, meter.name, local, detail))


# the city's districts: each runs its own buildings, and sees only them
DEMO_TENANTS: Final = ("hz-xihu", "hz-binjiang")


def fleet_records(fleet: list[SiteSpec], region: str = "CN-ZJ") -> tuple[list[SiteRecord], list[MeterRecord]]:
    """What the database should know of a fleet: kinds, zones, areas, and each meter's role."""
    sites = [
        SiteRecord(
            site_id=s.site,
            name=f"{s.kind} {s.site}",
            kind="datacentre" if s.kind == "datacentre" else "building",
            region=region,
            timezone=s.timezone,
            floor_area_m2=s.floor_area_m2,
            tenant=DEMO_TENANTS[i % len(DEMO_TENANTS)],
        )
        for i, s in enumerate(fleet)
    ]
    meters = [
        MeterRecord(
            site_id=s.site,
            meter=m.name,
            role=m.role,
            sub_item=m.sub_item,
        )
        for s in fleet
        for m in s.meters
    ]
    return sites, meters


@dataclass(slots=True)
class SimulationSummary:
    """What a run produced; `withheld` counts generated readings that were never sent."""

    sites: int
    meters: int
    step_s: float
    first_ts: datetime
    last_ts: datetime | None = None
    readings: int = 0
    messages: int = 0
    withheld: int = 0
    grid_records: int = 0
    elapsed_s: float = 0.0
    cancelled: bool = False
    faults: list[InjectedFault] = field(default_factory=list)


async def run_simulation(
    settings: Settings,
    *,
    sites: int = 10,
    rate: float = 100.0,
    duration_s: float | None = None,
    count: int | None = None,
    batch: int = 1,
    start: datetime | None = None,
    speedup: float = 1.0,
    seed: int = 0,
    fault_rate: float = DEFAULT_FAULT_RATE,
    progress: bool = True,
    register_fleet: bool = True,
    grid: bool = False,
) -> SimulationSummary:
    """Produce a simulated fleet's readings to the readings topic until `count`, `duration_s` or Ctrl-C.

    `rate` readings per wall second (<= 0: as fast as possible) covering `speedup` simulated
    seconds each, which fixes the tick step. The simulated clock never passes the real now,
    since the ingest worker refuses readings from the future: with `speedup` > 1 (or no rate)
    the default start is a week ago, and once the clock catches up it runs in real time.
    With `grid`, the fleet region's grid mixes (`ingest.grid_sim`) follow the same clock.
    """
    if sites < 1 or batch < 1 or speedup <= 0 or (count is not None and count < 0):
        raise ValueError("sites and batch must be >= 1, speedup > 0, count >= 0")
    fleet = make_fleet(sites, seed)
    if register_fleet:
        await register(settings.database_url.get_secret_value(), *fleet_records(fleet))
    n_meters = sum(len(s.meters) for s in fleet)
    step_s = round(n_meters * speedup / rate, 3) if rate > 0 else _DEFAULT_STEP_S
    if start is None:
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        start -= _BACKFILL if speedup > 1 or rate <= 0 else timedelta(0)
    sim = Simulator(fleet, start, max(step_s, 0.001), seed=seed, faults=FaultPlan(rate=fault_rate))
    summary = SimulationSummary(sites, n_meters, max(step_s, 0.001), start.astimezone(UTC))
    console = Console()
    display = Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "{task.fields[rate]:>7.0f} readings/s  faults {task.fields[faults]}  at {task.fields[sim]}"
        ),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    producer = reading_producer(settings, "wattstream-simulate")
    await producer.start()
    try:
        sender = ReadingSender(producer, settings.topic_readings, batch, summary)
        grid_sim = GridSimulator(start, seed=seed) if grid else None

        async def send_grid(now: datetime) -> None:
            if grid_sim is None:
                return
            for record in grid_sim.until(now):
                await producer.send(
                    settings.topic_grid, encode_grid_record(record), key=str(record["region"]).encode()
                )
                summary.grid_records += 1

        with display:
            task = display.add_task("simulate", total=count, rate=0.0, faults=0, sim="")
            try:
                await _produce(
                    sim,
                    sender,
                    send_grid,
                    summary,
                    rate,
                    count,
                    None if duration_s is None else t0 + duration_s,
                    display,
                    task,
                )
            except asyncio.CancelledError:
                # Ctrl-C: stop producing, deliver what was handed over, and report it
                summary.cancelled = True
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
            budget = None if count is None else count - summary.readings - summary.withheld
            late = sim.drain()
            for reading in late[:budget]:
                await sender.add(reading)
            summary.withheld += len(late[budget:]) if budget is not None else 0
            await sender.flush()
            display.update(task, completed=summary.readings, faults=len(sim.faults))
    finally:
        await producer.stop()
    summary.elapsed_s = loop.time() - t0
    summary.faults = list(sim.faults)
    _print_summary(console, summary)
    return summary


async def _produce(
    sim: Simulator,
    sender: ReadingSender,
    send_grid: Callable[[datetime], Awaitable[None]],
    summary: SimulationSummary,
    rate: float,
    count: int | None,
    deadline: float | None,
    display: Progress,
    task: Any,
) -> None:
    loop = asyncio.get_running_loop()
    t0 = last_shown = loop.time()
    generated = 0
    while (count is None or generated < count) and (deadline is None or loop.time() < deadline):
        ahead = (sim.now - datetime.now(UTC)).total_seconds()
        if ahead > 0:  # never produce readings from the future
            await asyncio.sleep(ahead if deadline is None else min(ahead, max(0.0, deadline - loop.time())))
            continue
        readings = sim.next_tick()
        await send_grid(sim.now)
        if count is not None and len(readings) > count - generated:
            summary.withheld += len(readings) - (count - generated)
            readings = readings[: count - generated]
        for reading in readings:
            await sender.add(reading)
            generated += 1
            # pace the long-run rate, sleeping only when ahead of it by a noticeable amount
            if rate > 0 and (lead := t0 + generated / rate - loop.time()) > 0.005:
                await asyncio.sleep(lead)
        summary.last_ts = (
            readings[-1].ts if readings and isinstance(readings[-1].ts, datetime) else summary.last_ts
        )
        await asyncio.sleep(0)  # let deliveries, and Ctrl-C, in even at full speed
        if loop.time() - last_shown >= 0.1:
            last_shown = loop.time()
            shown_rate = generated / max(last_shown - t0, 1e-9)
            sim_at = f"{summary.last_ts:%Y-%m-%d %H:%M}" if summary.last_ts else ""
            display.update(
                task, completed=summary.readings, rate=shown_rate, faults=len(sim.faults), sim=sim_at
            )


def _print_summary(console: Console, summary: SimulationSummary) -> None:
    end = f"{summary.last_ts:%Y-%m-%d %H:%M:%S%z}" if summary.last_ts else "-"
    cancelled = "cancelled: " if summary.cancelled else ""
    console.print(
        f"{cancelled}{summary.readings} readings in {summary.messages} messages "
        f"from {summary.sites} sites ({summary.meters} meters) in {summary.elapsed_s:.1f} s; simulated "
        f"{summary.first_ts:%Y-%m-%d %H:%M:%S%z} to {end} every {summary.step_s:g} s; "
        f"{summary.withheld} withheld, {len(summary.faults)} faults injected"
        + (f"; {summary.grid_records} grid records" if summary.grid_records else "")
    )
    if summary.faults:
        table = Table("kind", "site", "meter", "ts", "detail", title="injected faults")
        for f in summary.faults:
            table.add_row(f.kind, f.site, f.meter, f.ts.isoformat(), f.detail)
        console.print(table)
