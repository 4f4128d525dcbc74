"""Schemathesis hooks for `test_api_schemathesis.py` (loaded by its CLI through SCHEMATHESIS_HOOKS).

- RFC 3339 instants across Python's whole range with the widest offsets, and near its ends, where
  many are valid where written but out of range in UTC (`0001-01-01T00:00:00+14:00`); near the
  ends of the range the API accepts; and within the seeded data's window;
- path parameters that name the seeded site, meter and region half of the time (given in the
  environment by the test), so generated queries reach the database instead of a 404.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from hypothesis import strategies as st

_OFFSETS = st.sampled_from(["Z", "+14:00", "-14:00", "+05:45", "-00:01", "+23:59"])
_WALL = st.datetimes(
    min_value=datetime(1, 1, 1),  # noqa: DTZ001 - Hypothesis bounds wall-clock time, naive by its API
    max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
)
# within 20 hours of Python's first and last wall-clock second: the offset leaves its range in UTC
# for most of them
_PYTHON_ENDS = st.tuples(
    st.sampled_from([(datetime(1, 1, 1), 1, "+14:00"), (datetime(9999, 12, 31, 23, 59, 59), -1, "-14:00")]),  # noqa: DTZ001
    st.integers(0, 20 * 3600),
).map(lambda t: (t[0][0] + t[0][1] * timedelta(seconds=t[1])).isoformat() + t[0][2])
_EDGES = st.sampled_from([datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)])
_WINDOW = st.integers(0, 3 * 86_400).map(lambda s: datetime(2026, 3, 31, tzinfo=UTC) + timedelta(seconds=s))

schemathesis.openapi.format(
    "date-time",
    st.one_of(
        st.tuples(_WALL, _OFFSETS).map(lambda t: t[0].isoformat() + t[1]),
        _PYTHON_ENDS,
        st.tuples(_EDGES, st.integers(-86_400, 86_400)).map(
            lambda t: (t[0] + timedelta(seconds=t[1])).isoformat().replace("+00:00", "Z")
        ),
        _WINDOW.map(lambda t: t.isoformat().replace("+00:00", "Z")),
    ),
)

_SEEDED = {
    name: os.environ[var]
    for name, var in (("site", "FUZZ_SITE"), ("meter", "FUZZ_METER"), ("region", "FUZZ_REGION"))
    if var in os.environ
}


@schemathesis.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not path_parameters:  # a route without any
        return st.just(path_parameters)
    seeded = {**path_parameters, **{k: v for k, v in _SEEDED.items() if k in path_parameters}}
    return st.sampled_from([path_parameters, seeded])
