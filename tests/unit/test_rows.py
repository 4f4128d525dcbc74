"""ReadingRows (sort, de-duplicate) and the binary COPY encoder, without a database."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ingest.pgcopy import PG_EPOCH_US, encode_readings_copy
from ingest.writer import ReadingRows

NAN = float("nan")


def test_rows_sorted_and_last_duplicate_wins() -> None:
    rows = ReadingRows.from_columns(
        meter_id=[2, 1, 2, 1, 2],
        ts_us=[20, 10, 10, 10, 20],
        energy_kwh=[5.0, 1.0, 3.0, 2.0, 6.0],
        power_kw=[NAN, NAN, NAN, NAN, NAN],
        quality=[0, 0, 0, 1, 0],
    )
    assert rows.meter_id.tolist() == [1, 2, 2]
    assert rows.ts_us.tolist() == [10, 10, 20]
    # (1, 10) came twice: the later one (energy 2.0, quality 1) wins; so does (2, 20) → 6.0
    assert rows.energy_kwh.tolist() == [2.0, 3.0, 6.0]
    assert rows.quality.tolist() == [1, 0, 0]


@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 20), st.floats(0, 1e6)), max_size=60))
def test_rows_unique_and_complete(entries: list[tuple[int, int, float]]) -> None:
    rows = ReadingRows.from_columns(
        [m for m, _, _ in entries],
        [t for _, t, _ in entries],
        [e for _, _, e in entries],
        [NAN] * len(entries),
        [0] * len(entries),
    )
    expected: dict[tuple[int, int], float] = {}
    for m, t, e in entries:
        expected[(m, t)] = e  # last wins
    got = dict(
        zip(
            zip(rows.meter_id.tolist(), rows.ts_us.tolist(), strict=True),
            rows.energy_kwh.tolist(),
            strict=True,
        )
    )
    assert got == expected
    keys = list(zip(rows.meter_id.tolist(), rows.ts_us.tolist(), strict=True))
    assert keys == sorted(keys)


def _decode_copy(buf: bytes) -> list[tuple[object, ...]]:
    """A small reader of PostgreSQL's binary COPY format, written from the documentation."""
    assert buf[:11] == b"PGCOPY\n\xff\r\n\x00"
    pos = 19
    out = []
    while True:
        (n,) = struct.unpack_from(">h", buf, pos)
        pos += 2
        if n == -1:
            assert pos == len(buf)
            return out
        assert n == 5
        fields: list[object] = []
        for kind in ("q", "q", "d", "d", "h"):
            (length,) = struct.unpack_from(">i", buf, pos)
            pos += 4
            if length == -1:
                fields.append(None)
                continue
            assert length == struct.calcsize(">" + kind)
            fields.append(struct.unpack_from(">" + kind, buf, pos)[0])
            pos += length
        out.append(tuple(fields))


def test_copy_encoding_with_nulls() -> None:
    buf = encode_readings_copy(
        np.array([1, 2, 3, 4], dtype=np.int64),
        np.array([PG_EPOCH_US, PG_EPOCH_US + 1, 0, 1_764_000_000_000_000], dtype=np.int64),
        np.array([1.5, NAN, 2.5, NAN]),
        np.array([NAN, 3.25, 4.0, 5.0]),
        np.array([0, 1, 2, 0], dtype=np.int16),
    )
    rows = sorted(_decode_copy(buf), key=lambda r: r[0])  # type: ignore[arg-type, return-value]
    assert rows == [
        (1, 0, 1.5, None, 0),
        (2, 1, None, 3.25, 1),
        (3, -PG_EPOCH_US, 2.5, 4.0, 2),
        (4, 1_764_000_000_000_000 - PG_EPOCH_US, None, 5.0, 0),
    ]


def test_copy_encoding_empty() -> None:
    empty = np.array([], dtype=np.int64)
    buf = encode_readings_copy(empty, empty, np.array([]), np.array([]), np.array([], dtype=np.int16))
    assert _decode_copy(buf) == []
