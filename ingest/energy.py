"""In-stream interval energy: the batch stage that keeps `energy_interval` exact.

For every meter a batch touches, the stage fetches a slice of its stored readings and asks
`core.energy.recompute_windows` which buckets the batch can have changed and which readings
recompute them as the whole history would (see "Recompute windows" there: the window follows
the register chain's state, the anchor and the dips since, back to where it is known and on to
where the chain the stored buckets came from has the new chain's state again). Those buckets are
recomputed by the kernel inside the batch transaction and upserted; so the stored buckets
always equal a batch computation over the raw table, whatever order readings arrived in, and
they commit or roll back with the rows and offsets they come from.

The first slice holds the buckets from the reading before the meter's earliest batch reading
to the one after its latest, and `_CONTEXT` readings on each side: for in-order readings that is
always enough, so the fast path makes the same two queries as ever. When it is not (a dip run or
a span reaching back further, a correction whose effect runs on), the stage learns from the
stored buckets' reading counts whether the batch only added readings (then their old state is
known), and fetches that meter's slice again with `_GROWTH` times the readings on the short
side, up to `_MAX_CONTEXT`; a window still not bounded there is recomputed as a best effort and
logged. Every refused spike is flagged suspect (quality 2): the windows rely on it.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from core.energy import EnergyResult, RecomputeWindows, interval_energy, recompute_windows
from ingest import metrics
from ingest.pgcopy import Column, encode_copy
from ingest.writer import ReadingRows
from schemas.timeutil import from_epoch_us

__all__ = ["CREATE_ENERGY_STAGE", "EnergyStage"]

log = logging.getLogger(__name__)

CREATE_ENERGY_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS energy_stage
    (meter_id bigint, bucket_start timestamptz, kwh float8, coverage_s float8, n int, quality smallint)
    ON COMMIT DELETE ROWS
"""
# Per meter: the reading before the earliest new one and the one after the latest, and the meter's
# constants (once per meter, not per reading).
_SPANS = """
SELECT t.meter_id,
       (extract(epoch FROM coalesce(
           (SELECT r.ts FROM readings r WHERE r.meter_id = t.meter_id AND r.ts < t.lo
             ORDER BY r.ts DESC LIMIT 1),
           t.lo)) * 1000000)::bigint AS s0,
       (extract(epoch FROM coalesce(
           (SELECT r.ts FROM readings r WHERE r.meter_id = t.meter_id AND r.ts > t.hi ORDER BY r.ts LIMIT 1),
           t.hi)) * 1000000)::bigint AS s1,
       m.multiplier, coalesce(m.rollover_kwh, 'NaN') AS rollover, coalesce(m.max_power_kw, 'NaN') AS max_power
  FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS t(meter_id, lo, hi, k)
  JOIN meters m ON m.meter_id = t.meter_id
 ORDER BY t.k
"""
# A meter's readings in buckets [b0, b1), with `left_n` readings before b0 and `right_n` from b1 on:
# the slice `recompute_windows` decides from. The suspect ones (quality 2, mostly none) are read
# before this batch's spikes are flagged: they say which readings the stored buckets refused.
_WINDOW_READINGS = """
SELECT coalesce(array_agg(r.meter_id ORDER BY r.meter_id, r.ts), '{}') AS meter_id,
       coalesce(array_agg((extract(epoch FROM r.ts) * 1000000)::bigint ORDER BY r.meter_id, r.ts), '{}')
           AS ts_us,
       coalesce(array_agg(coalesce(r.energy_kwh, 'NaN') ORDER BY r.meter_id, r.ts), '{}') AS energy,
       coalesce(array_agg(coalesce(r.power_kw, 'NaN') ORDER BY r.meter_id, r.ts), '{}') AS power,
       coalesce(array_agg(r.meter_id ORDER BY r.meter_id, r.ts) FILTER (WHERE r.quality = 2), '{}')
           AS suspect_meter,
       coalesce(array_agg((extract(epoch FROM r.ts) * 1000000)::bigint ORDER BY r.meter_id, r.ts)
                FILTER (WHERE r.quality = 2), '{}') AS suspect_ts_us
  FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::int[])
       AS w(meter_id, b0, b1, left_n, right_n)
  JOIN LATERAL (
      SELECT * FROM readings r
       WHERE r.meter_id = w.meter_id
         AND r.ts >= coalesce((SELECT min(p.ts) FROM (SELECT ts FROM readings p
                                WHERE p.meter_id = w.meter_id AND p.ts < w.b0
                                ORDER BY p.ts DESC LIMIT w.left_n) p), w.b0)
         AND r.ts <= coalesce((SELECT max(q.ts) FROM (SELECT ts FROM readings q
                                WHERE q.meter_id = w.meter_id AND q.ts >= w.b1
                                ORDER BY q.ts LIMIT w.right_n) q), w.b1)
  ) r ON true
"""
# Readings a meter has in buckets [b0, b1) beyond those the stored buckets counted: as many as the
# batch has there when none of its readings replaced a stored one (whose old value is unknown).
_ADDED = """
SELECT (SELECT count(*) FROM readings r WHERE r.meter_id = t.meter_id AND r.ts >= t.b0 AND r.ts < t.b1)
       - (SELECT coalesce(sum(e.n), 0) FROM energy_interval e
           WHERE e.meter_id = t.meter_id AND e.bucket_start >= t.b0 AND e.bucket_start < t.b1) AS added
  FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS t(meter_id, b0, b1, k)
 ORDER BY t.k
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

_CONTEXT = 8  # readings fetched beyond a window on each side at first: more than dip_confirm
_GROWTH = 8  # a slice too short is fetched again with this many times the readings on that side
_MAX_CONTEXT = 1 << 16  # per side and meter; beyond it the window is a logged best effort
_CONSTANTS = ("multiplier", "rollover", "max_power")  # _SPANS' columns, as in _Meters
_RESET_FRACTION = 0.01  # the kernel's register rules, the same for the window and the buckets
_DIP_CONFIRM = 3


@dataclass(frozen=True, slots=True)
class _Meters:
    """The batch's meters (sorted) and what the stage knows of each."""

    meter: npt.NDArray[np.int64]
    lo: npt.NDArray[np.int64]  # the earliest and latest batch reading
    hi: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]  # batch readings
    multiplier: npt.NDArray[np.float64]
    rollover: npt.NDArray[np.float64]
    max_power: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _Slice:
    """Stored readings of some meters, column-wise, sorted by (meter, ts), with their meters' constants."""

    meter: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.int64]
    energy: npt.NDArray[np.float64]
    power: npt.NDArray[np.float64]
    multiplier: npt.NDArray[np.float64]
    rollover: npt.NDArray[np.float64]
    max_power: npt.NDArray[np.float64]

    def take(self, idx: npt.NDArray[np.int64]) -> _Slice:
        return _Slice(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list[_Slice]) -> _Slice:
        joined = _Slice(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(_Slice)))
        # parts hold disjoint meters, each sorted by ts: a stable sort by meter restores (meter, ts)
        return joined.take(np.argsort(joined.meter, kind="stable"))


class EnergyStage:
    """Recomputes the energy buckets a batch can have changed (see the module docstring).

    `context` and `max_context` bound the readings fetched beyond a window per side and meter
    (tests make them small to exercise the fetch-more path).
    """

    def __init__(
        self, *, bucket_s: int, gap_s: float, context: int = _CONTEXT, max_context: int = _MAX_CONTEXT
    ) -> None:
        self._bucket_us = bucket_s * 1_000_000
        self._bucket_s = bucket_s
        self._gap_s = gap_s
        self._context = context
        self._max_context = max(context, max_context)

    async def prepare(self, conn: asyncpg.Connection) -> None:
        await conn.execute(CREATE_ENERGY_STAGE)

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None:
        if not len(rows):
            return
        meters, lo, hi, counts = _meter_ranges(rows)
        spans = await conn.fetch(_SPANS, meters.tolist(), _ts(lo), _ts(hi))
        known = np.isin(meters, np.array([r["meter_id"] for r in spans], dtype=np.int64))
        constants = (np.array([r[c] for r in spans], dtype=np.float64) for c in _CONSTANTS)
        ms = _Meters(meters[known], lo[known], hi[known], counts[known], *constants)
        b0 = np.array([r["s0"] for r in spans], dtype=np.int64) // self._bucket_us * self._bucket_us
        b1 = np.array([r["s1"] for r in spans], dtype=np.int64) // self._bucket_us * self._bucket_us
        b1 += self._bucket_us
        left_n = np.full(len(ms.meter), self._context, dtype=np.int64)
        right_n = left_n.copy()
        # until a window needs to know, every batch reading may have replaced one of unknown value
        inserted = np.zeros(len(ms.meter), dtype=np.bool_)
        checked = inserted.copy()
        parts: list[_Slice] = []
        kept: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
        pending = np.arange(len(ms.meter))
        while len(pending):
            sl, windows = await self._windows(
                conn, rows, ms, pending, b0[pending], b1[pending], left_n[pending], right_n[pending],
                inserted[pending],
            )  # fmt: skip
            need_before, need_after = windows.need_before, windows.need_after
            grow_left = need_before & (left_n[pending] < self._max_context)
            grow_right = need_after & (right_n[pending] < self._max_context)
            retry = grow_left | grow_right | ((need_before | need_after) & ~checked[pending])
            done = ~retry
            for k in np.flatnonzero(done & (need_before | need_after)):
                log.warning(
                    "energy window of meter %d not bounded within %d readings: its buckets from %s to %s"
                    " are a best effort",
                    windows.meter[k], self._max_context,
                    from_epoch_us(int(windows.bucket_lo_us[k])), from_epoch_us(int(windows.bucket_hi_us[k])),
                )  # fmt: skip
            parts.append(sl.take(_ranges(windows.start[done], windows.stop[done])))
            kept.append((windows.meter[done], windows.bucket_lo_us[done], windows.bucket_hi_us[done]))
            if not retry.any():
                break
            again = pending[retry]
            check = again[~checked[again]]
            if len(check):
                inserted[check] = await self._inserted(conn, ms, check)
                checked[check] = True
            left_n[again[grow_left[retry]]] *= _GROWTH
            right_n[again[grow_right[retry]]] *= _GROWTH
            np.minimum(left_n, self._max_context, out=left_n)
            np.minimum(right_n, self._max_context, out=right_n)
            b0[again] = np.minimum(b0[again], windows.bucket_lo_us[retry])
            b1[again] = np.maximum(b1[again], windows.bucket_hi_us[retry])
            pending = again
        if not parts:
            return
        sl = parts[0] if len(parts) == 1 else _Slice.concat(parts)
        result = interval_energy(
            sl.meter,
            sl.ts_us,
            sl.energy,
            sl.power,
            multiplier=sl.multiplier,
            rollover_kwh=sl.rollover,
            max_power_kw=sl.max_power,
            bucket_s=self._bucket_s,
            gap_s=self._gap_s,
            reset_fraction=_RESET_FRACTION,
            dip_confirm=_DIP_CONFIRM,
        )
        window_meters, w0, w1 = (np.concatenate(c) for c in zip(*kept, strict=True))
        await self._store(conn, result, window_meters, w0, w1)
        spikes = result.spikes
        if spikes.any():
            status = await conn.execute(_FLAG_SPIKES, sl.meter[spikes].tolist(), _ts(sl.ts_us[spikes]))
            # counted when first flagged: a recomputed window meets its old spikes again
            metrics.SPIKES_REFUSED.inc(int(status.rsplit(" ", 1)[1]))

    async def _windows(
        self,
        conn: asyncpg.Connection,
        rows: ReadingRows,
        ms: _Meters,
        which: npt.NDArray[np.int64],
        b0: npt.NDArray[np.int64],
        b1: npt.NDArray[np.int64],
        left_n: npt.NDArray[np.int64],
        right_n: npt.NDArray[np.int64],
        inserted: npt.NDArray[np.bool_],
    ) -> tuple[_Slice, RecomputeWindows]:
        """The slice of meters `ms.meter[which]`, fetched with this context, and the windows it gives."""
        meters = ms.meter[which]
        w = await conn.fetchrow(
            _WINDOW_READINGS, meters.tolist(), _ts(b0), _ts(b1), left_n.tolist(), right_n.tolist()
        )
        meter = np.asarray(w["meter_id"], dtype=np.int64)
        ts = np.asarray(w["ts_us"], dtype=np.int64)
        # every meter has readings here (the batch's): the k-th run of the slice is meters[k]
        change = np.r_[False, meter[1:] != meter[:-1]]
        seg = np.cumsum(change)
        at = which[seg]
        sl = _Slice(
            meter,
            ts,
            np.asarray(w["energy"], dtype=np.float64),
            np.asarray(w["power"], dtype=np.float64),
            ms.multiplier[at],
            ms.rollover[at],
            ms.max_power[at],
        )
        # the slice holds the meter's first (last) reading if fewer readings than asked for came
        # before b0 (from b1 on)
        starts = np.flatnonzero(np.r_[True, change[1:]])
        before = np.add.reduceat((ts < b0[seg]).astype(np.int64), starts)
        after = np.add.reduceat((ts >= b1[seg]).astype(np.int64), starts)
        mine = np.isin(rows.meter_id, meters)
        windows = recompute_windows(
            meter,
            ts,
            sl.energy,
            multiplier=sl.multiplier,
            rollover_kwh=sl.rollover,
            max_power_kw=sl.max_power,
            batch_meter=rows.meter_id[mine],
            batch_ts_us=rows.ts_us[mine],
            suspect_meter=np.asarray(w["suspect_meter"], dtype=np.int64),
            suspect_ts_us=np.asarray(w["suspect_ts_us"], dtype=np.int64),
            first=before < left_n,
            last=after < right_n,
            inserted=inserted,
            bucket_s=self._bucket_s,
            reset_fraction=_RESET_FRACTION,
            dip_confirm=_DIP_CONFIRM,
        )
        return sl, windows

    async def _inserted(
        self, conn: asyncpg.Connection, ms: _Meters, which: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Per meter: none of its batch readings replaced a stored one, by the stored buckets' counts."""
        b0 = ms.lo[which] // self._bucket_us * self._bucket_us
        b1 = ms.hi[which] // self._bucket_us * self._bucket_us + self._bucket_us
        added = await conn.fetch(_ADDED, ms.meter[which].tolist(), _ts(b0), _ts(b1))
        new: npt.NDArray[np.bool_] = np.array([r["added"] for r in added], dtype=np.int64) == ms.count[which]
        return new

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
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per meter in the batch: its earliest and latest timestamp and its number of readings (rows
    are sorted by meter, ts)."""
    starts = np.flatnonzero(np.r_[True, rows.meter_id[1:] != rows.meter_id[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    return rows.meter_id[starts], rows.ts_us[starts], rows.ts_us[ends - 1], ends - starts


def _ranges(start: npt.NDArray[np.int64], stop: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The indices of every [start, stop) in turn, without a Python loop over them."""
    lengths = stop - start
    offsets = np.cumsum(lengths) - lengths
    idx: npt.NDArray[np.int64] = np.arange(int(lengths.sum()), dtype=np.int64)
    idx += np.repeat(start - offsets, lengths)
    return idx


def _ts(us: npt.NDArray[np.int64]) -> list[datetime]:
    # asyncpg binds datetimes; this runs per touched meter (or spike), not per reading
    return [from_epoch_us(int(v)) for v in us]
