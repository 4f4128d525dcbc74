"""PostgreSQL binary COPY, built column-wise with NumPy.

One COPY per batch is the hot path; building the buffer with NumPy instead of a Python loop
over tuples keeps the encoder out of the profile. Rows whose NULL pattern differs have
different lengths in the binary format, so each pattern of the nullable columns gets its own
fixed-layout record array; COPY does not care about row order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["COPY_COLUMNS", "PG_EPOCH_US", "Column", "encode_copy", "encode_readings_copy"]

COPY_COLUMNS = ("meter_id", "ts", "energy_kwh", "power_kw", "quality")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)

Kind = Literal["int8", "int4", "int2", "float8", "timestamptz"]
_WIRE = {"int8": ">i8", "int4": ">i4", "int2": ">i2", "float8": ">f8", "timestamptz": ">i8"}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: `timestamptz` values are UTC epoch µs; NaN in a nullable float8 is NULL."""

    values: npt.NDArray[np.generic]
    kind: Kind
    nullable: bool = False


def encode_copy(columns: Sequence[Column]) -> bytes:
    """The binary COPY stream of these columns (all of one length)."""
    n_rows = len(columns[0].values)
    nullable = [i for i, c in enumerate(columns) if c.nullable]
    present = {i: ~np.isnan(columns[i].values.astype(np.float64)) for i in nullable}
    parts = [_HEADER]
    for pattern in itertools.product((True, False), repeat=len(nullable)):
        sel = np.ones(n_rows, dtype=np.bool_)
        for i, want in zip(nullable, pattern, strict=True):
            sel &= present[i] == want
        n = int(sel.sum())
        if n == 0:
            continue
        has = dict(zip(nullable, pattern, strict=True))
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for i, c in enumerate(columns):
            fields.append((f"l{i}", ">i4"))
            if has.get(i, True):
                fields.append((f"v{i}", _WIRE[c.kind]))
        rec = np.empty(n, dtype=np.dtype(fields))
        rec["n"] = len(columns)
        for i, c in enumerate(columns):
            if not has.get(i, True):
                rec[f"l{i}"] = -1
                continue
            rec[f"l{i}"] = np.dtype(_WIRE[c.kind]).itemsize
            v = c.values[sel]
            rec[f"v{i}"] = v - PG_EPOCH_US if c.kind == "timestamptz" else v
        parts.append(rec.tobytes())
    parts.append(_TRAILER)
    return b"".join(parts)


def encode_readings_copy(
    meter_id: npt.NDArray[np.int64],
    ts_us: npt.NDArray[np.int64],
    energy: npt.NDArray[np.float64],
    power: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int16],
) -> bytes:
    """The binary COPY stream for reading rows (COPY_COLUMNS). NaN in `energy` / `power` means NULL."""
    return encode_copy(
        [
            Column(meter_id, "int8"),
            Column(ts_us, "timestamptz"),
            Column(energy, "float8", nullable=True),
            Column(power, "float8", nullable=True),
            Column(quality, "int2"),
        ]
    )
