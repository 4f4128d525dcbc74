"""In-stream interval energy: the batch stage that keeps `energy_interval` exact.

For every meter a batch touches, the buckets whose energy can have changed are those from the
reading before the batch's earliest reading of that meter to the reading after its latest
(a late reading changes the interval on both sides of it). Those buckets are recomputed from
the raw readings, by the core kernel, inside the batch transaction, and upserted; so the
stored buckets always equal a batch computation over the raw table, whatever order readings
arrived in, and they commit or roll back with the rows and offsets they come from.
"""

from __future__ import annotations

import io
from datetime import datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from core.energy import EnergyResult, interval_energy
from ingest import metrics
from ingest.pgcopy import Column, encode_copy
from ingest.writer import ReadingRows
from schemas.timeutil import from_epoch_us

__all__ = ["CREATE_ENERGY_STAGE", "EnergyStage"]

CREATE_ENERGY_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS energy_stage
    (meter_id bigint, bucket_start timestamptz, kwh float8, coverage_s float8, n int, quality smallint)
    ON COMMIT DELETE ROWS
"""
# The span a meter's new readings reach: from the reading before the earliest to the one after the latest.
_SPANS = """
SELECT t.meter_id,
       (extract(epoch FROM coalesce(
           (SELECT r.ts FROM readings r WHERE r.meter_id = t.meter_id AND r.ts < t.lo
             ORDER BY r.ts DESC LIMIT 1),
           t.lo)) * 1000000)::bigint AS s0,
       (extract(epoch FROM coalesce(
           (SELECT r.ts FROM readings r WHERE r.meter_id = t.meter_id AND r.ts > t.hi ORDER BY r.ts LIMIT 1),
           t.hi)) * 1000000)::bigint AS s1
  FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS t(meter_id, lo, hi)
"""
# Every reading that contributes to buckets [b0, b1): those inside, one after, and enough before for
# the kernel's register baseline (a run of dips or a refused spike just before b0 is seen as such).
_WINDOW_READINGS = """
SELECT coalesce(array_agg(r.meter_id ORDER BY r.meter_id, r.ts), '{}') AS meter_id,
       coalesce(array_agg((extract(epoch FROM r.ts) * 1000000)::bigint ORDER BY r.meter_id, r.ts), '{}')
           AS ts_us,
       coalesce(array_agg(coalesce(r.energy_kwh, 'NaN') ORDER BY r.meter_id, r.ts), '{}') AS energy,
       coalesce(array_agg(coalesce(r.power_kw, 'NaN') ORDER BY r.meter_id, r.ts), '{}') AS power,
       coalesce(array_agg(m.multiplier ORDER BY r.meter_id, r.ts), '{}') AS multiplier,
       coalesce(array_agg(coalesce(m.rollover_kwh, 'NaN') ORDER BY r.meter_id, r.ts), '{}') AS rollover,
       coalesce(array_agg(coalesce(m.max_power_kw, 'NaN') ORDER BY r.meter_id, r.ts), '{}') AS max_power
  FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS w(meter_id, b0, b1)
  JOIN meters m ON m.meter_id = w.meter_id
  JOIN LATERAL (
      SELECT * FROM readings r
       WHERE r.meter_id = w.meter_id
         AND r.ts >= coalesce((SELECT min(p.ts) FROM (SELECT ts FROM readings p
                                WHERE p.meter_id = w.meter_id AND p.ts < w.b0
                                ORDER BY p.ts DESC LIMIT $4) p), w.b0)
         AND r.ts <= coalesce((SELECT q.ts FROM readings q WHERE q.meter_id = w.meter_id AND q.ts >= w.b1
                                ORDER BY q.ts LIMIT 1), w.b1)
  ) r ON true
"""
_UPSERT = """
INSERT INTO energy_interval AS e (meter_id, bucket_start, kwh, coverage_s, n, quality)
SELECT meter_id, bucket_start, kwh, coverage_s, n, quality FROM energy_stage
ON CONFLICT (meter_id, bucket_start) DO UPDATE
   SET kwh = EXCLUDED.kwh, coverage_s = EXCLUDED.coverage_s, n = EXCLUDED.n, quality = EXCLUDED.quality,
       computed_at = now()
 WHERE (e.kwh, e.coverage_s, e.n, e.quality)
       IS DISTINCT FROM (EXCLUDED.kwh, EXCLUDED.coverage_s, EXCLUDED.n, EXCLUDED.quality)
"""
_FLAG_SPIKES = """
UPDATE readings r SET quality = 2
  FROM unnest($1::bigint[], $2::timestamptz[]) AS s(meter_id, ts)
 WHERE r.meter_id = s.meter_id AND r.ts = s.ts AND r.quality <> 2
"""


_LEFT_CONTEXT = 8  # readings before a window: more than the kernel's dip_confirm run


class EnergyStage:
    """Recomputes the energy buckets a batch can have changed (see the module docstring)."""

    def __init__(self, *, bucket_s: int, gap_s: float) -> None:
        self._bucket_us = bucket_s * 1_000_000
        self._bucket_s = bucket_s
        self._gap_s = gap_s

    async def prepare(self, conn: asyncpg.Connection) -> None:
        await conn.execute(CREATE_ENERGY_STAGE)

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if not len(rows):
            return
        meters, lo, hi = _meter_ranges(rows)
        spans = await conn.fetch(_SPANS, meters.tolist(), _ts(lo), _ts(hi))
        s0 = np.array([r["s0"] for r in spans], dtype=np.int64)
        s1 = np.array([r["s1"] for r in spans], dtype=np.int64)
        window_meters = np.array([r["meter_id"] for r in spans], dtype=np.int64)
        b0 = s0 // self._bucket_us * self._bucket_us
        b1 = s1 // self._bucket_us * self._bucket_us + self._bucket_us
        w = await conn.fetchrow(_WINDOW_READINGS, window_meters.tolist(), _ts(b0), _ts(b1), _LEFT_CONTEXT)
        result = interval_energy(
            np.asarray(w["meter_id"], dtype=np.int64),
            np.asarray(w["ts_us"], dtype=np.int64),
            np.asarray(w["energy"], dtype=np.float64),
            np.asarray(w["power"], dtype=np.float64),
            multiplier=np.asarray(w["multiplier"], dtype=np.float64),
            rollover_kwh=np.asarray(w["rollover"], dtype=np.float64),
            max_power_kw=np.asarray(w["max_power"], dtype=np.float64),
            bucket_s=self._bucket_s,
            gap_s=self._gap_s,
        )
        await self._store(conn, result, window_meters, b0, b1)
        spikes = result.spikes
        if spikes.any():
            ts = np.asarray(w["ts_us"], dtype=np.int64)[spikes]
            status = await conn.execute(
                _FLAG_SPIKES, np.asarray(w["meter_id"], dtype=np.int64)[spikes].tolist(), _ts(ts)
            )
            # counted when first flagged: a recomputed window meets its old spikes again
            metrics.SPIKES_REFUSED.inc(int(status.rsplit(" ", 1)[1]))

    async def _store(
        self,
        conn: asyncpg.Connection,
        result: EnergyResult,
        meters: npt.NDArray[np.int64],
        b0: npt.NDArray[np.int64],
        b1: npt.NDArray[np.int64],
    ) -> None:
        b = result.buckets
        if not len(b.meter):
            return
        # keep only buckets inside each meter's window: the edges outside saw only part of their intervals
        order = np.argsort(meters)
        idx = order[np.searchsorted(meters, b.meter, sorter=order)]
        keep = (b.bucket_start_us >= b0[idx]) & (b.bucket_start_us < b1[idx])
        payload = encode_copy(
            [
                Column(b.meter[keep], "int8"),
                Column(b.bucket_start_us[keep], "timestamptz"),
                Column(b.kwh[keep], "float8"),
                Column(b.coverage_s[keep], "float8"),
                Column(b.n[keep], "int4"),
                Column(b.quality[keep].astype(np.int16), "int2"),
            ]
        )
        await conn.copy_to_table(
            "energy_stage",
            source=io.BytesIO(payload),
            columns=("meter_id", "bucket_start", "kwh", "coverage_s", "n", "quality"),
            format="binary",
        )
        await conn.execute(_UPSERT)


def _meter_ranges(
    rows: ReadingRows,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per meter in the batch: its earliest and latest timestamp (rows are sorted by meter, ts)."""
    starts = np.flatnonzero(np.r_[True, rows.meter_id[1:] != rows.meter_id[:-1]])
    ends = np.r_[starts[1:], len(rows)] - 1
    return rows.meter_id[starts], rows.ts_us[starts], rows.ts_us[ends]


def _ts(us: npt.NDArray[np.int64]) -> list[datetime]:
    # asyncpg binds datetimes; this runs per touched meter (or spike), not per reading
    return [from_epoch_us(int(v)) for v in us]
