"""What the database holds against what was produced: stored readings against the distinct
readings sent, `energy_interval` against the oracle, and the worker's progress (its stored
offsets against the topic's ends)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from ingest.registry import MeterRecord, SiteRecord, register
from loadtest.battery.kafka_io import end_offsets
from loadtest.battery.oracle import meter_energy
from loadtest.battery.traffic import Traffic
from schemas.settings import Settings

__all__ = ["Comparison", "Watch", "compare", "prepare_meters", "wait_until"]

_QUALITY = {"ok": 0, "estimated": 1, "suspect": 2}
_SQL_METERS = "SELECT meter_id, site_id, meter FROM meters WHERE site_id = ANY($1::text[])"
_SQL_READINGS = """
SELECT meter_id, (extract(epoch FROM ts) * 1000000)::bigint AS ts_us, energy_kwh, power_kw, quality
  FROM readings WHERE meter_id = ANY($1::bigint[])
"""
_SQL_BUCKETS = """
SELECT meter_id, (extract(epoch FROM bucket_start) * 1000000)::bigint AS start_us, kwh, coverage_s, n, quality
  FROM energy_interval WHERE meter_id = ANY($1::bigint[])
"""
_SQL_QUARANTINED = "SELECT count(*) FROM quarantine WHERE site_id = ANY($1::text[])"
_SQL_OFFSETS = "SELECT partition, next_offset FROM ingest_offsets WHERE consumer_group = $1 AND topic = $2"


async def prepare_meters(s: Settings, traffic: Traffic, tenant: str = "battery") -> None:
    """Record the meters the traffic says are known beforehand (multipliers, rollover values,
    power bounds), as an operator's import would."""
    known = [m for m in traffic.meters if m.registered]
    await register(
        s.database_url.get_secret_value(),
        [SiteRecord(site, tenant=tenant) for site in sorted({m.site for m in known})],
        [
            MeterRecord(
                m.site,
                m.meter,
                multiplier=m.multiplier,
                rollover_kwh=m.rollover_kwh,
                max_power_kw=m.max_power_kw,
            )
            for m in known
        ],
    )


@dataclass
class Comparison:
    readings: int = 0  # distinct readings produced
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # stored rows nobody sent
    wrong: int = 0  # stored with other values than sent
    buckets: int = 0
    buckets_wrong: int = 0  # missing, extra or different from the oracle
    max_kwh_diff: float = 0.0
    meters_wrong: int = 0  # meters whose energy total differs
    quarantined: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = []
        if self.lost or self.duplicated or self.unexpected or self.wrong:
            out.append(
                f"readings: {self.lost:,} lost, {self.duplicated:,} duplicated, {self.unexpected:,} "
                f"unexpected, {self.wrong:,} with wrong values of {self.readings:,}"
            )
        if self.buckets_wrong or self.meters_wrong:
            out.append(
                f"energy: {self.buckets_wrong:,} of {self.buckets:,} buckets and {self.meters_wrong} meters' "
                f"totals differ from the batch recomputation (max |Δ| {self.max_kwh_diff:.3g} kWh)"
            )
        if self.quarantined:
            out.append(f"{self.quarantined} readings quarantined (none was beyond the lateness limit)")
        if out and self.examples:
            out.append("for example: " + "; ".join(self.examples[:6]))
        return out

    def figure(self) -> str:
        return (
            f"{self.stored:,}/{self.readings:,} stored, {self.lost} lost, {self.duplicated} dup; "
            f"{self.buckets - self.buckets_wrong:,}/{self.buckets:,} buckets = oracle "
            f"(max |Δ| {self.max_kwh_diff:.1g} kWh)"
        )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


async def compare(s: Settings, traffic: Traffic) -> Comparison:
    """Stored readings and buckets of the traffic's meters against what was produced."""
    c = Comparison(readings=len(traffic.expected))
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        ids = {
            (r["site_id"], r["meter"]): r["meter_id"] for r in await conn.fetch(_SQL_METERS, traffic.sites)
        }
        by_index = {i: ids.get((m.site, m.meter)) for i, m in enumerate(traffic.meters)}
        meter_ids = [v for v in by_index.values() if v is not None]
        rows = await conn.fetch(_SQL_READINGS, meter_ids)
        buckets = await conn.fetch(_SQL_BUCKETS, meter_ids)
        c.quarantined = int(await conn.fetchval(_SQL_QUARANTINED, traffic.sites))
    finally:
        await conn.close()
    stored: dict[tuple[int, int], tuple[float | None, float | None, int]] = {}
    for r in rows:
        key = (r["meter_id"], r["ts_us"])
        if key in stored:
            c.duplicated += 1
        stored[key] = (r["energy_kwh"], r["power_kw"], r["quality"])
    c.stored = len(stored)
    per_meter: dict[int, list[tuple[int, float | None, float | None]]] = {}
    for sent in traffic.expected:
        per_meter.setdefault(sent.meter, []).append((sent.ts_us, sent.energy_kwh, sent.power_kw))
    oracle = {
        i: meter_energy(
            rs,
            multiplier=traffic.meters[i].multiplier,
            rollover_kwh=traffic.meters[i].rollover_kwh,
            max_power_kw=traffic.meters[i].max_power_kw,
            bucket_s=s.energy_bucket_s,
            gap_s=s.energy_gap_s,
        )
        for i, rs in per_meter.items()
    }
    for i, o in oracle.items():  # the generator and the oracle agree on what a spike is
        made = {ts for m, ts in traffic.spikes if m == i}
        if made != o.spikes:
            raise AssertionError(f"battery bug: meter {traffic.meters[i]} spikes {made} != oracle {o.spikes}")
    seen: set[tuple[int, int]] = set()
    for sent in traffic.expected:
        mid = by_index[sent.meter]
        key = (mid if mid is not None else -1, sent.ts_us)
        seen.add(key)
        got = stored.get(key)
        m = traffic.meters[sent.meter]
        if got is None:
            c.lost += 1
            if len(c.examples) < 6:
                c.examples.append(f"lost {m.site}/{m.meter} at {sent.ts_us} µs")
            continue
        quality = 2 if sent.ts_us in oracle[sent.meter].spikes else _QUALITY[sent.quality]
        if got != (sent.energy_kwh, sent.power_kw, quality):
            c.wrong += 1
            if len(c.examples) < 6:
                c.examples.append(
                    f"{m.site}/{m.meter} at {sent.ts_us} µs stored {got}, sent "
                    f"{(sent.energy_kwh, sent.power_kw, quality)}"
                )
    c.unexpected = len(set(stored) - seen)
    got_buckets = {(b["meter_id"], b["start_us"]): b for b in buckets}
    bucket_us = s.energy_bucket_s * 1_000_000
    for i, o in oracle.items():
        mid = by_index[i]
        m = traffic.meters[i]
        total = 0.0
        for start, want in o.buckets.items():
            c.buckets += 1
            b = got_buckets.pop((mid, start), None)
            if b is None:
                c.buckets_wrong += 1
                if len(c.examples) < 6:
                    c.examples.append(
                        f"bucket {m.site}/{m.meter} {start} µs missing (oracle {want.kwh:.6f} kWh)"
                    )
                continue
            total += b["kwh"]
            c.max_kwh_diff = max(c.max_kwh_diff, abs(b["kwh"] - want.kwh))
            same = (
                _close(b["kwh"], want.kwh)
                and math.isclose(b["coverage_s"], min(want.covered_us / 1e6, s.energy_bucket_s), abs_tol=1e-6)
                and b["n"] == want.n
                and b["quality"] == o.quality(start, bucket_us)
            )
            if not same:
                c.buckets_wrong += 1
                if len(c.examples) < 6:
                    c.examples.append(
                        f"bucket {m.site}/{m.meter} {start} µs: stored kwh={b['kwh']:.6f} "
                        f"coverage={b['coverage_s']} n={b['n']} quality={b['quality']}; "
                        f"oracle kwh={want.kwh:.6f} coverage={want.covered_us / 1e6} n={want.n} "
                        f"quality={o.quality(start, bucket_us)}"
                    )
        if not _close(total, o.total_kwh) and not math.isclose(
            total, o.total_kwh, rel_tol=1e-9, abs_tol=1e-6
        ):
            c.meters_wrong += 1
    c.buckets_wrong += len(got_buckets)  # buckets the oracle has no row for
    for (mid, start), b in list(got_buckets.items())[: max(0, 6 - len(c.examples))]:
        c.examples.append(f"unexpected bucket meter_id {mid} at {start} µs ({b['kwh']:.6f} kWh)")
    return c


class Watch:
    """The worker's progress: its offsets stored in the database against the topic's ends."""

    def __init__(self, s: Settings) -> None:
        self._s = s

    async def stored(self) -> dict[int, int] | None:
        """Stored next offsets by partition; None while the database cannot be asked."""
        try:
            conn = await asyncpg.connect(self._s.migrate_database_url.get_secret_value(), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None
        try:
            rows = await conn.fetch(_SQL_OFFSETS, self._s.consumer_group, self._s.topic_readings, timeout=5)
            return {r["partition"]: r["next_offset"] for r in rows}
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return None
        finally:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                await conn.close(timeout=5)

    async def consumed(self) -> int | None:
        stored = await self.stored()
        return None if stored is None else sum(stored.values())

    async def lag(self) -> int | None:
        """Records in the topic not yet committed with their rows; None while either service is away."""
        stored = await self.stored()
        ends = await end_offsets(self._s, self._s.topic_readings, self._s.readings_partitions)
        if stored is None or ends is None:
            return None
        return sum(max(end - stored.get(p, 0), 0) for p, end in ends.items())


async def wait_until(
    check: Callable[[], Awaitable[bool]], within: float, interval: float = 0.5
) -> float | None:
    """Seconds until `check()` held, or None if it did not within `within` seconds."""
    t0 = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            return None
        await asyncio.sleep(interval)
