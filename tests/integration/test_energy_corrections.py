"""Corrections and late readings against the real TimescaleDB: the writer and the energy stage, batch
by batch as the worker calls them, leave exactly the buckets a batch computation over the raw
table gives, after every batch; and every reading that computation refuses as a spike is flagged.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest
from energy_streams import MIN_US, T0, MeterSpec, Plan, Sent, plans
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from core.energy import interval_energy
from ingest.energy import EnergyStage
from ingest.writer import NO_STORED_OFFSET, OffsetAdvance, ReadingRows, ReadingWriter
from schemas.settings import Settings

pytestmark = pytest.mark.integration

NAN = float("nan")
_SITES = itertools.count()


@dataclass
class _Feed:
    """One meter fleet's batches through a writer with the energy stage, offsets fenced as the worker's."""

    conn: asyncpg.Connection
    writer: ReadingWriter
    meter_ids: list[int]
    offset: int = NO_STORED_OFFSET

    async def send(self, batch: tuple[Sent, ...] | list[Sent]) -> None:
        rows = ReadingRows.from_columns(
            [self.meter_ids[s.meter] for s in batch],
            [s.ts_us for s in batch],
            [NAN if s.energy is None else s.energy for s in batch],
            [NAN if s.power is None else s.power for s in batch],
            [s.quality for s in batch],
        )
        nxt = max(self.offset, 0) + len(batch)
        await self.writer.write(self.conn, rows, [OffsetAdvance(0, self.offset, nxt)])
        self.offset = nxt


async def _fleet(owner: asyncpg.Connection, app: asyncpg.Connection, plan: Plan, stage: EnergyStage) -> _Feed:
    site = f"corr-{next(_SITES)}"
    await owner.execute("INSERT INTO sites (site_id) VALUES ($1)", site)
    ids = [
        await owner.fetchval(
            """INSERT INTO meters (site_id, meter, multiplier, rollover_kwh, max_power_kw)
               VALUES ($1, $2, $3, $4, $5) RETURNING meter_id""",
            site, f"m{k}", spec.multiplier, spec.rollover, spec.max_power,
        )
        for k, spec in enumerate(plan.meters)
    ]  # fmt: skip
    writer = ReadingWriter(f"{site}-group", "corrections", [stage])
    await writer.prepare(app)
    return _Feed(app, writer, ids)


async def _streamed_equals_batch(
    conn: asyncpg.Connection, meter_ids: list[int], bucket_s: int, gap_s: float
) -> None:
    raw = await conn.fetch(
        """SELECT r.meter_id, (extract(epoch FROM r.ts) * 1000000)::bigint AS ts, r.energy_kwh, r.power_kw,
                  r.quality, m.multiplier, m.rollover_kwh, m.max_power_kw
             FROM readings r JOIN meters m USING (meter_id)
            WHERE r.meter_id = ANY($1::bigint[]) ORDER BY r.meter_id, r.ts""",
        meter_ids,
    )
    stored = await conn.fetch(
        """SELECT meter_id, (extract(epoch FROM bucket_start) * 1000000)::bigint AS b,
                  kwh, coverage_s, n, quality
             FROM energy_interval WHERE meter_id = ANY($1::bigint[]) ORDER BY meter_id, bucket_start""",
        meter_ids,
    )

    def col(name: str) -> np.ndarray:
        return np.array([NAN if r[name] is None else r[name] for r in raw], dtype=np.float64)

    oracle = interval_energy(
        np.array([r["meter_id"] for r in raw], dtype=np.int64),
        np.array([r["ts"] for r in raw], dtype=np.int64),
        col("energy_kwh"),
        col("power_kw"),
        multiplier=col("multiplier"),
        rollover_kwh=col("rollover_kwh"),
        max_power_kw=col("max_power_kw"),
        bucket_s=bucket_s,
        gap_s=gap_s,
    )
    b = oracle.buckets
    assert [(r["meter_id"], r["b"]) for r in stored] == list(
        zip(b.meter.tolist(), b.bucket_start_us.tolist(), strict=True)
    )
    assert [r["kwh"] for r in stored] == pytest.approx(b.kwh.tolist(), rel=1e-9, abs=1e-9)
    assert [r["coverage_s"] for r in stored] == pytest.approx(b.coverage_s.tolist(), abs=1e-9)
    assert [r["n"] for r in stored] == b.n.tolist()
    assert [r["quality"] for r in stored] == b.quality.tolist()
    flagged = np.array([r["quality"] == 2 for r in raw], dtype=np.bool_)
    assert not (oracle.spikes & ~flagged).any(), "every refused spike is flagged suspect"


def _minute(m: float) -> datetime:
    return datetime.fromtimestamp((T0 + m * MIN_US) / 1e6, tz=UTC)


async def test_issue_15_a_correction_alone_recomputes_the_dip_run(settings: Settings) -> None:
    """14:13 sent as 1101 makes 102, 103 and 104 dips (the third a confirmed new baseline, so the
    14:15 bucket is estimated); 14:13 = 101, sent alone once that is stored, must reach it."""
    owner = await asyncpg.connect(settings.migrate_database_url.get_secret_value())
    app = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        plan = Plan((MeterSpec(1.0, None, None),), ())
        feed = await _fleet(owner, app, plan, EnergyStage(bucket_s=900, gap_s=3600.0))
        points = [(12, 100.0), (13, 1101.0), (14, 102.0), (16, 103.0), (17, 104.0), (18, 105.0)]
        await feed.send([Sent(0, T0 + m * MIN_US, e, None) for m, e in points])
        await feed.send([Sent(0, T0 + 13 * MIN_US, 101.0, None)])
        rows = await app.fetch(
            "SELECT bucket_start, kwh, quality FROM energy_interval WHERE meter_id = $1 ORDER BY 1",
            feed.meter_ids[0],
        )
        assert [(r["bucket_start"], r["quality"]) for r in rows] == [(_minute(0), 1), (_minute(15), 1)]
        assert [r["kwh"] for r in rows] == pytest.approx([2.5, 2.5])  # was 1.0 kWh, estimated, at 14:15
        await _streamed_equals_batch(app, feed.meter_ids, 900, 3600.0)
    finally:
        await app.close()
        await owner.close()


def _run_property(s: Settings, examples: int) -> None:
    """Hypothesis drives the property in this thread, on an event loop and connections of its own."""
    loop = asyncio.new_event_loop()
    owner = loop.run_until_complete(asyncpg.connect(s.migrate_database_url.get_secret_value()))
    app = loop.run_until_complete(asyncpg.connect(s.database_url.get_secret_value()))

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @seed(15)  # the same cases on every run: CI is not where a new one should turn up
    @given(
        plans(),
        st.sampled_from([60, 300, 900]),
        st.sampled_from([600.0, 3600.0]),
        st.sampled_from([1, 2, 8]),
    )
    def streamed_equals_batch(plan: Plan, bucket_s: int, gap_s: float, context: int) -> None:
        async def run() -> None:
            # a context of one reading makes most windows fetch more: that path is what is tested
            stage = EnergyStage(bucket_s=bucket_s, gap_s=gap_s, context=context)
            feed = await _fleet(owner, app, plan, stage)
            for batch in plan.batches:
                await feed.send(batch)
                await _streamed_equals_batch(app, feed.meter_ids, bucket_s, gap_s)

        loop.run_until_complete(run())

    try:
        streamed_equals_batch()
    finally:
        loop.run_until_complete(app.close())
        loop.run_until_complete(owner.close())
        loop.close()


async def test_streamed_buckets_equal_the_batch_computation(settings: Settings) -> None:
    """Meters with dips, resets, spikes and rollovers; readings corrected alone, late, after the dip
    run their wrong value caused, duplicated, late by a few places; in batches of 1 to 8."""
    await asyncio.to_thread(_run_property, settings, 40)
