"""The writer against the real database: fast path, upsert path, fencing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ingest.errors import FencedOffsets
from ingest.writer import CREATE_STAGE, NO_STORED_OFFSET, OffsetAdvance, ReadingRows, ReadingWriter
from runtime.dberrors import is_transient_db_error
from schemas.settings import Settings

pytestmark = pytest.mark.integration

NAN = float("nan")
H = 3_600_000_000  # an hour in µs
T0 = 1_764_000_000_000_000


@pytest.fixture
async def conn(settings: Settings) -> asyncpg.Connection:
    c = await asyncpg.connect(settings.database_url.get_secret_value())
    await c.execute(CREATE_STAGE)
    yield c
    await c.close()


async def _meter(settings: Settings, site: str, meter: str) -> int:
    c = await asyncpg.connect(settings.migrate_database_url.get_secret_value())
    try:
        await c.execute("INSERT INTO sites (site_id) VALUES ($1) ON CONFLICT DO NOTHING", site)
        return int(
            await c.fetchval(
                "INSERT INTO meters (site_id, meter) VALUES ($1, $2) RETURNING meter_id", site, meter
            )
        )
    finally:
        await c.close()


def _rows(meter: int, hours: list[int], energy: list[float]) -> ReadingRows:
    n = len(hours)
    return ReadingRows.from_columns([meter] * n, [T0 + h * H for h in hours], energy, [NAN] * n, [0] * n)


async def test_in_order_then_late_duplicate_and_correction(
    settings: Settings, conn: asyncpg.Connection
) -> None:
    meter = await _meter(settings, "w-site1", "main")
    writer = ReadingWriter("w-group", "w-topic")
    r1 = await writer.write(
        conn, _rows(meter, [0, 1, 2, 3], [10, 11, 12, 13]), [OffsetAdvance(0, NO_STORED_OFFSET, 4)]
    )
    assert (r1.copied, r1.upserted, r1.unchanged, r1.fell_back) == (4, 0, 0, False)
    # hour 1 again unchanged (duplicate), hour 2 corrected, hour -1 late, hour 4 new
    r2 = await writer.write(conn, _rows(meter, [1, 2, -1, 4], [11, 12.5, 9, 14]), [OffsetAdvance(0, 4, 8)])
    assert (r2.copied, r2.upserted, r2.unchanged) == (1, 2, 1)
    got = await conn.fetch("SELECT energy_kwh FROM readings WHERE meter_id = $1 ORDER BY ts", meter)
    assert [r["energy_kwh"] for r in got] == [9, 10, 11, 12.5, 13, 14]
    last = await conn.fetchval("SELECT last_ts FROM meter_state WHERE meter_id = $1", meter)
    assert int(last.timestamp() * 1_000_000) == T0 + 4 * H


async def test_stale_state_falls_back_to_upsert(settings: Settings, conn: asyncpg.Connection) -> None:
    meter = await _meter(settings, "w-site2", "main")
    stale = ReadingWriter("w-group2", "w-topic")
    await stale.write(conn, _rows(meter, [0], [1]), [OffsetAdvance(0, NO_STORED_OFFSET, 1)])
    # another writer moves the meter on behind the first one's back (its cache now says hour 0)
    other = ReadingWriter("w-group2b", "w-topic")
    await other.write(conn, _rows(meter, [1, 2], [2, 3]), [OffsetAdvance(0, NO_STORED_OFFSET, 2)])
    # hour 1 looks new to the stale writer: the straight COPY conflicts and the upsert takes over
    result = await stale.write(conn, _rows(meter, [1, 3], [2, 4]), [OffsetAdvance(0, 1, 3)])
    assert result.fell_back
    assert (result.copied, result.upserted, result.unchanged) == (0, 1, 1)
    got = await conn.fetch("SELECT energy_kwh FROM readings WHERE meter_id = $1 ORDER BY ts", meter)
    assert [r["energy_kwh"] for r in got] == [1, 2, 3, 4]


async def test_fenced_offsets_write_nothing(settings: Settings, conn: asyncpg.Connection) -> None:
    meter = await _meter(settings, "w-site3", "main")
    a = ReadingWriter("w-group3", "w-topic")
    b = ReadingWriter("w-group3", "w-topic")
    await a.write(conn, _rows(meter, [0], [1]), [OffsetAdvance(5, NO_STORED_OFFSET, 10)])
    # b still thinks partition 5 has no stored offset: a zombie that must not write
    with pytest.raises(FencedOffsets):
        await b.write(conn, _rows(meter, [1], [2]), [OffsetAdvance(5, NO_STORED_OFFSET, 11)])
    with pytest.raises(FencedOffsets):
        await b.write(conn, _rows(meter, [1], [2]), [OffsetAdvance(5, 7, 11)])
    assert await conn.fetchval("SELECT count(*) FROM readings WHERE meter_id = $1", meter) == 1
    assert await b.stored_offsets(conn, [5]) == {5: 10}


async def test_a_connection_the_server_ended_is_a_transient_error(settings: Settings) -> None:
    """A database restart ends every connection, idle ones in a pool too. Whatever asyncpg raises
    on such a connection's next use (the closed connection, or its "cannot switch to state"
    internal error when it has read the server's FATAL but not the closed socket) must count as
    "the database is away", so ingest holds its batch instead of crashing."""
    url = settings.migrate_database_url.get_secret_value()
    admin = await asyncpg.connect(url)
    seen: set[str] = set()
    try:
        for attempt in range(1000):  # about half of them meet the internal error here
            conn = await asyncpg.connect(url)
            try:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                await asyncio.sleep((0, 0.0002, 0.0005, 0.001, 0.002)[attempt % 5])
                async with conn.transaction():
                    await conn.execute("SELECT 1")
            except Exception as exc:
                if not is_transient_db_error(exc):
                    raise
                seen.add(type(exc).__name__)
            finally:
                conn.terminate()
            if "InternalClientError" in seen and len(seen) > 1:
                break
    finally:
        await admin.close()
    assert "InternalClientError" in seen, seen
