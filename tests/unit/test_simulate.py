"""The simulator without Kafka: realistic shapes, exact registers, and faults only where it says."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from ingest.simulate import FaultPlan, Simulator, fleet_records, make_fleet
from schemas.messages import Reading, ReadingDecoder, encode_reading

START = datetime(2026, 11, 16, 16, 0, tzinfo=UTC)  # Tuesday 00:00 in Shanghai


def _sim(*, rate: float = 0.0, seed: int = 3, sites: int = 4, step_s: float = 300.0) -> Simulator:
    return Simulator(make_fleet(sites, seed), START, step_s, seed=seed, faults=FaultPlan(rate=rate))


def _stream(sim: Simulator, ticks: int) -> list[Reading]:
    out: list[Reading] = []
    for _ in range(ticks):
        out += sim.next_tick()
    return out + sim.drain()


def _by_meter(readings: list[Reading]) -> dict[tuple[str, str], list[Reading]]:
    series: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    for r in readings:
        series[(r.site, r.meter)].append(r)
    return series


def test_fleet_has_every_kind_and_roles() -> None:
    fleet = make_fleet(8, seed=1)
    assert {s.kind for s in fleet} == {"office", "mall", "hospital", "datacentre"}
    sites, meters = fleet_records(fleet)
    assert len({s.site_id for s in sites}) == 8
    building = next(s for s in fleet if s.kind == "office")
    roles = {(m.meter, m.role, m.sub_item) for m in meters if m.site_id == building.site}
    assert ("main", "main", None) in roles
    assert {sub for _, role, sub in roles if role == "sub_item"} == {"照明插座", "空调", "动力", "特殊"}
    dc = next(s for s in fleet if s.kind == "datacentre")
    assert {m.role for m in meters if m.site_id == dc.site} == {"facility", "it_load"}


def test_clean_stream_has_monotone_registers_and_no_faults() -> None:
    sim = _sim()
    readings = _stream(sim, 288)  # a day of 5-minute ticks
    assert sim.faults == ()
    for series in _by_meter(readings).values():
        energies = [r.energy_kwh for r in series]
        assert energies == sorted(energies)
        assert len({r.ts for r in series}) == len(series) == 289 - 1


def test_registers_integrate_power_exactly() -> None:
    readings = _stream(_sim(), 50)
    for series in _by_meter(readings).values():
        for a, b in itertools.pairwise(series):
            assert a.power_kw is not None and b.power_kw is not None
            assert a.energy_kwh is not None and b.energy_kwh is not None
            trapezoid = (a.power_kw + b.power_kw) / 2 * 300 / 3600
            assert b.energy_kwh - a.energy_kwh == pytest.approx(trapezoid, rel=1e-9, abs=1e-9)


def test_main_meter_is_the_sum_of_sub_items() -> None:
    readings = _stream(_sim(), 20)
    by_tick: dict[tuple[str, object], dict[str, float]] = defaultdict(dict)
    for r in readings:
        assert r.power_kw is not None
        by_tick[(r.site, r.ts)][r.meter] = r.power_kw
    checked = 0
    for meters in by_tick.values():
        if "main" in meters:
            subs = [v for k, v in meters.items() if k.startswith("sub-")]
            assert meters["main"] == pytest.approx(sum(subs), rel=1e-9)
            checked += 1
    assert checked > 0


def test_office_weekday_noon_beats_sunday_small_hours() -> None:
    fleet = [s for s in make_fleet(8, seed=1) if s.kind == "office"][:1]
    noon = Simulator(fleet, datetime(2026, 11, 18, 4, 0, tzinfo=UTC), 60, seed=1, faults=FaultPlan(rate=0))
    night = Simulator(fleet, datetime(2026, 11, 21, 19, 0, tzinfo=UTC), 60, seed=1, faults=FaultPlan(rate=0))
    main_noon = next(r.power_kw for r in noon.next_tick() if r.meter == "main")
    main_night = next(r.power_kw for r in night.next_tick() if r.meter == "main")
    assert main_noon is not None and main_night is not None
    assert main_noon > 2 * main_night


def test_faults_appear_as_reported() -> None:
    sim = _sim(rate=0.02, seed=9)
    readings = _stream(sim, 400)
    series = _by_meter(readings)
    kinds = {f.kind for f in sim.faults}
    assert kinds == {"reset", "gap", "duplicate", "late"}
    for f in sim.faults:
        meter = series[(f.site, f.meter)]
        times = [r.ts for r in meter]
        if f.kind == "duplicate":
            assert times.count(f.ts) == 2
        elif f.kind == "late":
            i = times.index(f.ts)
            assert any(t > f.ts for t in times[:i]), "a later reading was sent before the late one"
        elif f.kind == "gap":
            assert f.ts not in times
        elif f.kind == "reset":
            r = next(r for r in meter if r.ts == f.ts)
            assert r.energy_kwh is not None and r.energy_kwh <= 2.0


def test_same_seed_same_stream() -> None:
    a = _stream(_sim(rate=0.01, seed=4), 100)
    b = _stream(_sim(rate=0.01, seed=4), 100)
    assert a == b
    assert a != _stream(_sim(rate=0.01, seed=5), 100)


def test_every_message_decodes() -> None:
    readings = _stream(_sim(rate=0.01), 30)
    decoder = ReadingDecoder()
    now = START + timedelta(days=30)
    for r in readings:
        good, bad = decoder.decode(encode_reading(r), now)
        assert bad == [] and len(good) == 1
    good, bad = decoder.decode(encode_reading(readings[:50]), now)
    assert bad == [] and len(good) == 50


def test_start_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        Simulator(make_fleet(1), datetime(2026, 1, 1), 60)  # noqa: DTZ001 - the point of the test
