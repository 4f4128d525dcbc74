"""The bounds on what a client sends, without a server: instants valid where written but out of
range in UTC, cursors past any instant, page sizes past any page, key ids that are no key's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from api.auth import KeyStore
from api.errors import Unauthorized
from api.params import MAX_PAGE, EpochCursor, PageLimit
from schemas.bounds import EARLIEST, LATEST, Instant
from schemas.timeutil import from_epoch_us, to_epoch_us

_INSTANT = TypeAdapter(Instant)
_CURSOR = TypeAdapter(EpochCursor)
_LIMIT = TypeAdapter(PageLimit)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC: Python cannot hold it
        "9999-12-31T23:59:59-14:00",  # year 10000 in UTC
        "0001-01-01T00:00:00Z",
        "1899-12-31T23:59:59.999999Z",
        "1900-01-01T13:59:59+14:00",
        "9000-01-01T00:00:00Z",
        "8999-12-31T23:00:00-01:00",
        "-9999999999999",  # epoch milliseconds to pydantic: 1653
    ],
)
def test_instants_out_of_range_in_utc_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="1900-01-01T00:00:00Z"):
        _INSTANT.validate_python(text)


@pytest.mark.parametrize(
    "text",
    [
        "1900-01-01T00:00:00Z",
        "1900-01-01T14:00:00+14:00",
        "8999-12-31T23:59:59.999999Z",
        "8999-12-31T09:59:59-14:00",
    ],
)
def test_the_ends_of_the_range_are_accepted_and_kept_as_written(text: str) -> None:
    ts = _INSTANT.validate_python(text)
    assert EARLIEST <= ts < LATEST and ts.isoformat().replace("+00:00", "Z") == text


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        _INSTANT.validate_python("2026-04-01T00:00:00")


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - Hypothesis bounds the wall-clock time, naive
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([timezone(timedelta(hours=h)) for h in (-14, -1, 0, 5, 14)]),
    )
)
def test_an_accepted_instant_holds_the_arithmetic_done_on_it(ts: datetime) -> None:
    """What the API computes from an instant (a 72-hour horizon, days shifted back, a local month's
    bucket and its end) stays a datetime; what it refuses is outside the range."""
    try:
        accepted = _INSTANT.validate_python(ts.isoformat())
    except ValidationError:
        assert not EARLIEST <= ts < LATEST
        return
    utc = accepted.astimezone(UTC)
    for shifted in (utc + timedelta(hours=72), utc - timedelta(days=3), utc - timedelta(days=31)):
        assert shifted.astimezone(timezone(timedelta(hours=14))).year >= 1
        assert from_epoch_us(to_epoch_us(shifted)) == shifted


@pytest.mark.parametrize(
    "cursor",
    ["9999999999999999999", "-9999999999999999999", "99999999999999999999", "--1", "1e5", "", "١٢٣", "1\n"],
)
def test_cursors_past_any_instant_or_not_numbers_are_refused(cursor: str) -> None:
    with pytest.raises(ValidationError):
        _CURSOR.validate_python(cursor)


def test_a_cursor_is_any_instant_in_range_as_epoch_microseconds() -> None:
    for ts in (EARLIEST, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), LATEST - timedelta(microseconds=1)):
        text = str(to_epoch_us(ts))
        assert _CURSOR.validate_python(text) == text
        assert from_epoch_us(int(text) + 1) > ts  # the next page's lower bound: no OverflowError
    with pytest.raises(ValidationError):
        _CURSOR.validate_python(str(to_epoch_us(LATEST)))


@pytest.mark.parametrize("limit", ["0", "-1", str(MAX_PAGE + 1), "9" * 40, "9" * 5000, "1e3", "NaN"])
def test_page_sizes_past_any_page_are_refused(limit: str) -> None:
    with pytest.raises(ValidationError):
        _LIMIT.validate_python(limit)


class _NoDatabase:
    def acquire(self) -> None:
        raise AssertionError("a key id that no key has went to the database")


@pytest.mark.parametrize(
    "token",
    ["ws_\x00_secret", "ws_" + "a" * 8000 + "_secret", "ws_ZZ_secret", "ws_é_secret", "ws__secret", "ws_0a_"],
)
async def test_a_malformed_key_id_is_no_key_without_a_lookup(token: str) -> None:
    with pytest.raises(Unauthorized):
        await KeyStore(_NoDatabase(), 60.0).authenticate(token)
