"""`core.jsontext.bucket_array_json` against the plain way: msgspec encoding one object per bucket
(datetimes and floats as msgspec writes them). Byte for byte, over calendar edges (leap days,
centuries, years 1 and 9999, before 1970), every kind of float and coverage, and gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.jsontext import bucket_array_json
from schemas.vocabulary import BUCKET_QUALITIES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())
_LAST = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds())


def _reference(
    starts: list[int], ends: list[int], kwh: list[float], coverage: list[float], quality: list[int]
) -> bytes:
    return msgspec.json.encode(
        [
            {
                "start": _EPOCH + timedelta(seconds=s),
                "end": _EPOCH + timedelta(seconds=e),
                "kwh": k,
                "coverage": c,
                "quality": BUCKET_QUALITIES[q],
            }
            for s, e, k, c, q in zip(starts, ends, kwh, coverage, quality, strict=True)
        ]
    )


def _check(
    starts: list[int], ends: list[int], kwh: list[float], coverage: list[float], quality: list[int]
) -> None:
    got = bucket_array_json(
        np.array(starts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
        np.array(kwh, dtype=np.float64),
        np.array(coverage, dtype=np.float64),
        np.array(quality, dtype=np.int64),
    )
    assert got == _reference(starts, ends, kwh, coverage, quality)


def _at(*args: int) -> int:
    return int((datetime(*args, tzinfo=UTC) - _EPOCH).total_seconds())  # type: ignore[misc]


def test_calendar_edges_and_every_kind_of_number() -> None:
    moments = [
        _FIRST,
        _at(1, 3, 1),
        _at(1582, 10, 15, 12, 30, 45),
        _at(1900, 2, 28, 23, 59, 59),
        _at(1900, 3, 1),
        _at(1969, 12, 31, 23, 59, 59),
        0,
        _at(2000, 2, 29, 0, 15),
        _at(2024, 2, 29, 23, 45),
        _at(2026, 3, 29, 1, 0),
        _at(2100, 3, 1),
        _LAST - 1,
    ]
    kwh = [
        0.1,
        1 / 3,
        1e-7,
        1e22,
        -0.0,
        0.0,
        float("nan"),
        float("inf"),
        5e-324,
        1.7976931348623157e308,
        12.0,
        2.5,
    ]
    coverage = [1.0, 0.0, -0.0, 0.5, 1 / 3, 1e-9, float("nan"), 0.999999999, 1.0, 0.0, 0.25, 1.0]
    quality = [0, 1, 2] * 4
    _check(moments, [m + 1 for m in moments], kwh, coverage, quality)


def test_a_gapless_month_of_quarter_hours() -> None:
    rng = np.random.default_rng(7)
    starts = [_at(2026, 1, 1) + 900 * k for k in range(2880)]
    kwh = rng.uniform(0, 50, 2880).tolist()
    coverage = rng.choice([1.0, 1.0, 1.0, 0.5, 0.0, 0.75], 2880).tolist()
    _check(starts, [s + 900 for s in starts], kwh, coverage, rng.integers(0, 3, 2880).tolist())


_floats = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(_FIRST, _LAST),
            st.integers(0, 400 * 86400),
            _floats,
            st.one_of(st.sampled_from([1.0, 0.0, -0.0]), _floats),
            st.integers(0, 2),
        ),
        max_size=40,
    )
)
def test_any_buckets(buckets: list[tuple[int, int, float, float, int]]) -> None:
    starts = [b[0] for b in buckets]
    ends = [min(b[0] + b[1], _LAST) for b in buckets]
    _check(starts, ends, [b[2] for b in buckets], [b[3] for b in buckets], [b[4] for b in buckets])


def test_none() -> None:
    empty: Any = np.empty(0)
    assert bucket_array_json(empty, empty, empty, empty, empty) == b"[]"


@pytest.mark.parametrize("bound", [_FIRST - 1, _LAST + 1])
def test_a_year_outside_1_to_9999_is_refused(bound: int) -> None:
    one = np.ones(1)
    with pytest.raises(ValueError, match="years 1 to 9999"):
        bucket_array_json(np.array([bound]), np.array([0]), one, one, np.zeros(1))


def test_columns_that_do_not_match_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        bucket_array_json(np.zeros(2), np.zeros(1), np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="quality codes"):
        bucket_array_json(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.array([3]))
