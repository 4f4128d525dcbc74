"""The JSON text of an energy series' buckets, written by one Numba kernel.

`bucket_array_json` writes the array of `EnergyBucket` objects,

    [{"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:15:00Z","kwh":1.25,
      "coverage":1.0,"quality":"measured"},...]

byte for byte what msgspec writes for those objects (its keys in that order, no spaces), without
making a Python object per bucket: a month of quarter hours is 2,880 buckets, and building then
encoding 2,880 objects was the larger half of such an answer's CPU. The bounds are whole UTC
epoch seconds, written as RFC 3339 text with `Z` (years 1 to 9999, as Python's datetime). The
numbers are msgspec's own: it encodes each float column as one list, and the kernel copies each
number's text from there (so a float is written exactly as msgspec writes it: the shortest text
that reads back as the same double, `null` for NaN). Coverage is mostly exactly 1.0 or 0.0,
which the kernel writes itself; only the other values go through msgspec.
"""

from __future__ import annotations

from typing import Final

import msgspec
import numpy as np
from numba import njit
from numpy.typing import NDArray

from schemas.vocabulary import BUCKET_QUALITIES

__all__ = ["bucket_array_json"]


def _text(s: str) -> NDArray[np.uint8]:
    return np.frombuffer(s.encode(), dtype=np.uint8).copy()


_START: Final = _text('{"start":"')
_END: Final = _text('Z","end":"')
_KWH: Final = _text('Z","kwh":')
_COVERAGE: Final = _text(',"coverage":')
_ONE: Final = _text("1.0")
_ZERO: Final = _text("0.0")
# each quality's end of a bucket, padded to one width: (length, bytes)
_TAIL_TEXT: Final = [f',"quality":"{q}"}}' for q in BUCKET_QUALITIES]
_TAIL_LEN: Final = np.array([len(t) for t in _TAIL_TEXT], dtype=np.int64)
_TAILS: Final = np.zeros((len(_TAIL_TEXT), int(_TAIL_LEN.max())), dtype=np.uint8)
for _k, _t in enumerate(_TAIL_TEXT):
    _TAILS[_k, : len(_t)] = _text(_t)
# per bucket, everything but its two numbers: the fixed text, two bounds, the longest tail
_FIXED: Final = len(_START) + 19 + len(_END) + 19 + len(_KWH) + len(_COVERAGE) + 3 + int(_TAIL_LEN.max()) + 1

_encoder = msgspec.json.Encoder()


@njit(cache=True, inline="always")
def _put(out: NDArray[np.uint8], pos: int, text: NDArray[np.uint8]) -> int:
    for k in range(len(text)):
        out[pos + k] = text[k]
    return pos + len(text)


_PAIRS: Final = _text("".join(f"{k:02d}" for k in range(100)))  # "00" to "99"


@njit(cache=True, inline="always")
def _pair(out: NDArray[np.uint8], pos: int, value: int) -> int:
    out[pos] = _PAIRS[2 * value]
    out[pos + 1] = _PAIRS[2 * value + 1]
    return pos + 2


@njit(cache=True, inline="always")
def _date(out: NDArray[np.uint8], days: int) -> bool:
    """`YYYY-MM-DD` of a day since the epoch into out[0:10] (the civil calendar from days,
    exact); False for a year outside 1..9999."""
    z = days + 719468  # days from 0000-03-01
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    if year < 1 or year > 9999:
        return False
    _pair(out, 0, year // 100)
    _pair(out, 2, year % 100)
    out[4] = 45  # -
    _pair(out, 5, month)
    out[7] = 45
    _pair(out, 8, day)
    return True


@njit(cache=True, inline="always")
def _time(
    out: NDArray[np.uint8], pos: int, epoch_s: int, day: NDArray[np.int64], date: NDArray[np.uint8]
) -> int:
    """`YYYY-MM-DDTHH:MM:SS` of whole UTC epoch seconds; -1 for a year outside 1..9999. The
    date text is kept in `date` for the day in `day[0]`: a series' buckets share their days."""
    days = epoch_s // 86400
    if days != day[0]:
        if not _date(date, days):
            return -1
        day[0] = days
    pos = _put(out, pos, date)
    second = epoch_s - days * 86400
    out[pos] = 84  # T
    pos = _pair(out, pos + 1, second // 3600)
    out[pos] = 58  # :
    pos = _pair(out, pos + 1, second // 60 % 60)
    out[pos] = 58
    return _pair(out, pos + 1, second % 60)


@njit(cache=True, inline="always")
def _number(out: NDArray[np.uint8], pos: int, listed: NDArray[np.uint8], at: int) -> tuple[int, int]:
    """Copy the number at `at` of a JSON list's text; (new pos, where the next number starts)."""
    while listed[at] != 44 and listed[at] != 93:  # up to , or ]
        out[pos] = listed[at]
        pos += 1
        at += 1
    return pos, at + 1


@njit(cache=True)
def _write(
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    kwh_list: NDArray[np.uint8],
    coverage: NDArray[np.float64],
    coverage_list: NDArray[np.uint8],
    quality: NDArray[np.int64],
    out: NDArray[np.uint8],
) -> int:
    """The bucket array into `out`; its length, or -1 if a bound's year is outside 1..9999.
    `kwh_list` is the JSON list of every bucket's energy, `coverage_list` of the coverage
    values other than 1.0 and 0.0."""
    pos = 0
    out[pos] = 91  # [
    pos += 1
    at_kwh, at_coverage = 1, 1  # after each list's [
    day = np.full(1, np.iinfo(np.int64).min, dtype=np.int64)
    date = np.empty(10, dtype=np.uint8)
    for i in range(len(starts)):
        if i:
            out[pos] = 44  # ,
            pos += 1
        pos = _put(out, pos, _START)
        pos = _time(out, pos, starts[i], day, date)
        if pos < 0:
            return -1
        pos = _put(out, pos, _END)
        pos = _time(out, pos, ends[i], day, date)
        if pos < 0:
            return -1
        pos = _put(out, pos, _KWH)
        pos, at_kwh = _number(out, pos, kwh_list, at_kwh)
        pos = _put(out, pos, _COVERAGE)
        c = coverage[i]
        if c == 1.0:
            pos = _put(out, pos, _ONE)
        elif c == 0.0 and not np.signbit(c):
            pos = _put(out, pos, _ZERO)
        else:
            pos, at_coverage = _number(out, pos, coverage_list, at_coverage)
        q = quality[i]
        for k in range(_TAIL_LEN[q]):
            out[pos + k] = _TAILS[q, k]
        pos += _TAIL_LEN[q]
    out[pos] = 93  # ]
    return pos + 1


def bucket_array_json(
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    kwh: NDArray[np.float64],
    coverage: NDArray[np.float64],
    quality: NDArray[np.int64],
) -> bytes:
    """The JSON array of the buckets: bounds in whole UTC epoch seconds, energy, coverage, and
    quality codes (0 measured, 1 partial, 2 estimated); all one-dimensional, of one length."""
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    kwh, coverage = np.asarray(kwh, dtype=np.float64), np.asarray(coverage, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.int64)
    n = len(starts)
    if any(a.ndim != 1 or len(a) != n for a in (starts, ends, kwh, coverage, quality)):
        raise ValueError("the bucket columns must be one-dimensional and of one length")
    if n and (quality.min() < 0 or quality.max() >= len(BUCKET_QUALITIES)):
        raise ValueError(f"quality codes are 0 to {len(BUCKET_QUALITIES) - 1}")
    kwh_list = np.frombuffer(_encoder.encode(kwh.tolist()), dtype=np.uint8)
    plain = (coverage == 1.0) | ((coverage == 0.0) & ~np.signbit(coverage))
    coverage_list = np.frombuffer(_encoder.encode(coverage[~plain].tolist()), dtype=np.uint8)
    out = np.empty(2 + n * _FIXED + len(kwh_list) + len(coverage_list), dtype=np.uint8)
    length = _write(starts, ends, kwh_list, coverage, coverage_list, quality, out)
    if length < 0:
        raise ValueError("a bucket bound is outside the years 1 to 9999")
    return out[:length].tobytes()
