"""The database side of a batch: raw rows, meter state and Kafka offsets in one transaction.

The per-meter last timestamp splits a batch into in-order readings, copied straight into the
`readings` hypertable, and duplicates or late readings, which go through a staging table and
an idempotent upsert. A straight COPY that still meets a conflict (the cached state was
stale) rolls back to a savepoint and the whole batch takes the upsert path: correctness never
depends on the fast path.

Offsets are fenced: the stored offset of each partition must still be the one this worker
last saw, or another consumer has taken the partition over and the transaction rolls back.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from datetime import datetime
from typing import Protocol

import asyncpg
import numpy as np
import numpy.typing as npt

from ingest.consumer import NO_STORED_OFFSET, OffsetAdvance, OffsetStore
from ingest.pgcopy import COPY_COLUMNS, encode_readings_copy
from schemas.timeutil import from_epoch_us, to_epoch_us

__all__ = [
    "NO_STORED_OFFSET",
    "BatchStage",
    "OffsetAdvance",
    "QuarantineRow",
    "ReadingRows",
    "ReadingWriter",
    "WriteResult",
]

_NO_STATE = np.iinfo(np.int64).min

CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS readings_stage
    (LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS
"""
_UPSERT_FROM_STAGE = """
INSERT INTO readings AS r (meter_id, ts, energy_kwh, power_kw, quality)
SELECT meter_id, ts, energy_kwh, power_kw, quality FROM readings_stage
ON CONFLICT (meter_id, ts) DO UPDATE
   SET energy_kwh = EXCLUDED.energy_kwh, power_kw = EXCLUDED.power_kw, quality = EXCLUDED.quality
 WHERE (r.energy_kwh, r.power_kw, r.quality)
       IS DISTINCT FROM (EXCLUDED.energy_kwh, EXCLUDED.power_kw, EXCLUDED.quality)
"""
_QUARANTINE = """
INSERT INTO quarantine
       (topic, partition, kafka_offset, site_id, meter, ts, energy_kwh, power_kw, reason, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""
_LOAD_STATE = "SELECT meter_id, last_ts FROM meter_state WHERE meter_id = ANY($1::bigint[])"
_SAVE_STATE = """
INSERT INTO meter_state AS s (meter_id, last_ts, last_energy_kwh, last_power_kw)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::float8[])
ON CONFLICT (meter_id) DO UPDATE
   SET last_ts = EXCLUDED.last_ts, last_energy_kwh = EXCLUDED.last_energy_kwh,
       last_power_kw = EXCLUDED.last_power_kw, updated_at = now()
 WHERE EXCLUDED.last_ts > s.last_ts
"""


@dataclass(frozen=True, slots=True)
class ReadingRows:
    """A batch's valid readings, column-wise: unique on (meter_id, ts), sorted by meter then time.

    NaN in `energy_kwh` / `power_kw` stands for an absent value.
    """

    meter_id: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.int64]
    energy_kwh: npt.NDArray[np.float64]
    power_kw: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return len(self.meter_id)

    def take(self, mask: npt.NDArray[np.bool_]) -> ReadingRows:
        return ReadingRows(
            self.meter_id[mask],
            self.ts_us[mask],
            self.energy_kwh[mask],
            self.power_kw[mask],
            self.quality[mask],
        )

    def copy_bytes(self) -> bytes:
        return encode_readings_copy(self.meter_id, self.ts_us, self.energy_kwh, self.power_kw, self.quality)

    @classmethod
    def from_columns(
        cls,
        meter_id: Sequence[int],
        ts_us: Sequence[int],
        energy_kwh: Sequence[float],
        power_kw: Sequence[float],
        quality: Sequence[int],
    ) -> ReadingRows:
        """Sort by (meter, ts) and keep the last of readings sharing a (meter, ts): a device's
        correction sent later in the same batch wins, as it would across batches."""
        m = np.asarray(meter_id, dtype=np.int64)
        t = np.asarray(ts_us, dtype=np.int64)
        seq = np.arange(len(m))
        order = np.lexsort((seq, t, m))
        m, t = m[order], t[order]
        last = np.ones(len(m), dtype=np.bool_)
        if len(m) > 1:
            last[:-1] = (m[1:] != m[:-1]) | (t[1:] != t[:-1])
        keep = order[last]
        return cls(
            m[last],
            t[last],
            np.asarray(energy_kwh, dtype=np.float64)[keep],
            np.asarray(power_kw, dtype=np.float64)[keep],
            np.asarray(quality, dtype=np.int16)[keep],
        )


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A valid reading the domain refused to apply, kept with where it came from and why."""

    topic: str
    partition: int
    kafka_offset: int
    site_id: str
    meter: str
    ts: datetime
    energy_kwh: float | None
    power_kw: float | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    copied: int  # in-order rows copied straight into the hypertable
    upserted: int  # duplicates, late or corrected rows that changed something
    unchanged: int  # exact duplicates of stored rows
    fell_back: bool  # the straight COPY met a conflict and the batch took the upsert path


class BatchStage(Protocol):
    """Work done inside the batch transaction after the raw rows are written: derived rows
    (interval energy, alert state) commit or roll back with the rows and offsets they came from."""

    async def prepare(self, conn: asyncpg.Connection) -> None:
        """Per-connection setup (temporary staging tables), run when the pool opens a connection."""

    async def apply(self, conn: asyncpg.Connection, rows: ReadingRows) -> None: ...


class ReadingWriter:
    """Writes batches for one consumer group and topic; holds the per-meter last timestamps."""

    def __init__(self, consumer_group: str, topic: str, stages: Sequence[BatchStage] = ()) -> None:
        self._offsets = OffsetStore(consumer_group, topic)
        self.stages = tuple(stages)
        self._last_ts: dict[int, int] = {}

    async def prepare(self, conn: asyncpg.Connection) -> None:
        await conn.execute(CREATE_STAGE)
        for stage in self.stages:
            await stage.prepare(conn)

    def forget_state(self) -> None:
        """Drop cached meter state, e.g. after a rebalance: another worker may have moved it on."""
        self._last_ts.clear()

    async def stored_offsets(self, conn: asyncpg.Connection, partitions: Sequence[int]) -> dict[int, int]:
        return await self._offsets.stored(conn, partitions)

    async def write(
        self,
        conn: asyncpg.Connection,
        rows: ReadingRows,
        offsets: Sequence[OffsetAdvance],
        quarantine: Sequence[QuarantineRow] = (),
    ) -> WriteResult:
        """Write rows, derived stages and offsets atomically. Raises FencedOffsets if another
        consumer moved any of these partitions on; nothing is written then."""
        await self.load_state(conn, rows.meter_id.tolist())
        last = np.fromiter((self._last_ts.get(int(m), _NO_STATE) for m in rows.meter_id), np.int64, len(rows))
        in_order = rows.ts_us > last
        fast, slow = rows.take(in_order), rows.take(~in_order)
        async with conn.transaction():
            await self._offsets.advance(conn, offsets)
            copied = upserted = unchanged = 0
            fell_back = False
            if len(fast):
                try:
                    async with conn.transaction():  # savepoint
                        await _copy(conn, "readings", fast)
                    copied = len(fast)
                except asyncpg.UniqueViolationError:
                    fell_back = True
                    slow = rows
            if len(slow):
                await _copy(conn, "readings_stage", slow)
                status = await conn.execute(_UPSERT_FROM_STAGE)
                upserted = int(status.rsplit(" ", 1)[1])
                unchanged = len(slow) - upserted
            if quarantine:
                await conn.executemany(_QUARANTINE, [astuple(q) for q in quarantine])
            new_last = await self._save_state(conn, rows)
            for stage in self.stages:
                await stage.apply(conn, rows)
        self._last_ts.update(new_last)
        return WriteResult(copied, upserted, unchanged, fell_back)

    def latest(self, meter_id: int) -> int | None:
        """The newest stored reading time (epoch µs) of a meter whose state is loaded; None if it has none."""
        ts = self._last_ts.get(meter_id, _NO_STATE)
        return None if ts == _NO_STATE else ts

    async def load_state(self, conn: asyncpg.Connection, meter_ids: Iterable[int]) -> None:
        """Make `latest` answer for these meters (one query for those not cached)."""
        missing = [m for m in set(meter_ids) if m not in self._last_ts]
        if not missing:
            return
        for r in await conn.fetch(_LOAD_STATE, missing):
            self._last_ts[r["meter_id"]] = to_epoch_us(r["last_ts"])
        for m in missing:
            self._last_ts.setdefault(m, _NO_STATE)

    async def _save_state(self, conn: asyncpg.Connection, rows: ReadingRows) -> dict[int, int]:
        if not len(rows):
            return {}
        # rows are sorted by (meter, ts): the last row of each meter run is its newest reading
        tail = np.ones(len(rows), dtype=np.bool_)
        tail[:-1] = rows.meter_id[1:] != rows.meter_id[:-1]
        newest = rows.take(tail)
        known = np.fromiter(
            (self._last_ts.get(int(m), _NO_STATE) for m in newest.meter_id), np.int64, len(newest)
        )
        newest = newest.take(newest.ts_us > known)
        if not len(newest):
            return {}
        await conn.execute(
            _SAVE_STATE,
            newest.meter_id.tolist(),
            [from_epoch_us(int(v)) for v in newest.ts_us],  # once per touched meter, not per row
            [None if np.isnan(v) else float(v) for v in newest.energy_kwh],
            [None if np.isnan(v) else float(v) for v in newest.power_kw],
        )
        return dict(zip(newest.meter_id.tolist(), newest.ts_us.tolist(), strict=True))


async def _copy(conn: asyncpg.Connection, table: str, rows: ReadingRows) -> None:
    await conn.copy_to_table(
        table, source=io.BytesIO(rows.copy_bytes()), columns=COPY_COLUMNS, format="binary"
    )
