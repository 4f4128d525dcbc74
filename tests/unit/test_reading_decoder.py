"""The reading message's validation, without services: every valid form accepted exactly, every
invalid kind refused with its reason, and no input able to make the decoder raise."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.messages import REASONS, InvalidMessage, Reading, ReadingDecoder, ValidReading, encode_reading
from schemas.timeutil import to_epoch_us

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DECODER = ReadingDecoder()


def _one(value: bytes | None, decoder: ReadingDecoder = DECODER) -> ValidReading | InvalidMessage:
    good, bad = decoder.decode(value, NOW)
    assert len(good) + len(bad) == 1
    return good[0] if good else bad[0]


def _enc(**fields: object) -> bytes:
    return json.dumps({"site": "hz-b001", "meter": "main", "energy_kwh": 1.0, **fields}).encode()


@pytest.mark.parametrize(
    ("ts", "expected_utc"),
    [
        ("2026-11-24T10:15:00+08:00", datetime(2026, 11, 24, 2, 15, tzinfo=UTC)),
        ("2026-11-24T02:15:00Z", datetime(2026, 11, 24, 2, 15, tzinfo=UTC)),
        ("2026-11-24T02:15:00.123456+00:00", datetime(2026, 11, 24, 2, 15, 0, 123456, tzinfo=UTC)),
        ("2026-11-23T21:15:00-05:00", datetime(2026, 11, 24, 2, 15, tzinfo=UTC)),
        (1795486500000, datetime(2026, 11, 24, 2, 15, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(ts: object, expected_utc: datetime) -> None:
    r = _one(_enc(ts=ts))
    assert isinstance(r, ValidReading)
    assert r.ts_us == to_epoch_us(expected_utc)


def test_fields_carried_exactly() -> None:
    r = _one(_enc(ts="2026-11-24T10:15:00+08:00", energy_kwh=123456.789, power_kw=42.1, quality="estimated"))
    assert r == ValidReading(
        "hz-b001",
        "main",
        to_epoch_us(datetime(2026, 11, 24, 2, 15, tzinfo=UTC)),
        123456.789,
        42.1,
        "estimated",
    )


def test_power_only_and_unicode_ids() -> None:
    value = json.dumps({"site": "杭州-b1", "meter": "空调.1", "ts": 1795486500000, "power_kw": 3.5}).encode()
    r = _one(value)
    assert isinstance(r, ValidReading)
    assert (r.site, r.meter, r.energy_kwh, r.power_kw, r.quality) == ("杭州-b1", "空调.1", None, 3.5, "ok")


INVALID = [
    (b"\x00\xffgarbage", "not_json"),
    (b'{"site": "a", "meter": "m", "ts": 1', "not_json"),
    (b"\xff\xfe{}", "not_json"),
    (b"[1, 2]", "not_an_object"),
    (b"42", "not_an_object"),
    (b'"a reading"', "not_an_object"),
    (b'{"meter": "m", "ts": 1795486500000, "energy_kwh": 1}', "missing_field"),
    (b'{"site": "a", "ts": 1795486500000, "energy_kwh": 1}', "missing_field"),
    (b'{"site": "a", "meter": "m", "energy_kwh": 1}', "missing_field"),
    (_enc(ts=1795486500000, voltage=230), "unknown_field"),
    (_enc(ts=1795486500000.5), "wrong_type"),
    (_enc(ts=True), "wrong_type"),
    (json.dumps({"site": 7, "meter": "m", "ts": 1795486500000, "energy_kwh": 1}).encode(), "wrong_type"),
    (_enc(ts=1795486500000, energy_kwh="12.5"), "wrong_type"),
    (
        json.dumps({"site": "has space", "meter": "m", "ts": 1795486500000, "power_kw": 1}).encode(),
        "bad_identifier",
    ),
    (json.dumps({"site": "", "meter": "m", "ts": 1795486500000, "power_kw": 1}).encode(), "bad_identifier"),
    (
        json.dumps({"site": "x" * 65, "meter": "m", "ts": 1795486500000, "power_kw": 1}).encode(),
        "bad_identifier",
    ),
    (
        json.dumps({"site": "a\n", "meter": "m", "ts": 1795486500000, "power_kw": 1}).encode(),
        "bad_identifier",
    ),
    (
        b'{"readings": [{"site": "a", "meter": "m", "ts": 1795486500000, "power_kw": NaN}]}',
        "non_finite_value",
    ),
    (_enc(ts="yesterday"), "bad_timestamp"),
    (_enc(ts="2026-11-24T10:15:00"), "naive_timestamp"),
    (_enc(ts="2026-11-26T10:15:00+08:00"), "future_timestamp"),
    (_enc(ts="1999-12-31T23:59:59Z"), "ancient_timestamp"),
    (_enc(ts=-1000), "ancient_timestamp"),
    (_enc(ts=1795486500000, energy_kwh=-0.1), "negative_value"),
    (_enc(ts=1795486500000, power_kw=-3.0), "negative_value"),
    (_enc(ts=1795486500000).replace(b"1.0", b"NaN"), "non_finite_value"),
    (_enc(ts=1795486500000).replace(b"1.0", b"Infinity"), "non_finite_value"),
    (_enc(ts=1795486500000).replace(b"1.0", b"-Infinity"), "non_finite_value"),
    (_enc(ts=1795486500000).replace(b"1.0", b"1e999"), "non_finite_value"),
    (json.dumps({"site": "a", "meter": "m", "ts": 1795486500000}).encode(), "no_measurement"),
    (_enc(ts=1795486500000, quality="great"), "invalid_value"),
    (_enc(ts=1795486500000, energy_kwh=1e15), "invalid_value"),
    (b'{"readings": []}', "empty_batch"),
    (None, "not_json"),
    # a batch whose list is not a list is a batch of the wrong type, not a reading with an
    # unknown field `readings`
    (b'{"readings": null}', "wrong_type"),
    (b'{"readings": "[]"}', "wrong_type"),
    (b'{"readings": 3}', "wrong_type"),
    (b'{"readings": {"site": "a"}}', "wrong_type"),
    # nested past what msgspec can recurse through: refused, never raised (the worker screens
    # such values at a fixed depth first; this is the decoder's own guarantee wherever it runs)
    (b'{"readings":[' + b"[" * 5000 + b"]" * 5000 + b"]}", "too_deep"),
    (b'{"readings":[{"site":' + b"[" * 5000 + b"]" * 5000 + b"}]}", "too_deep"),
]


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_invalid_messages_name_their_reason(value: bytes | None, reason: str) -> None:
    r = _one(value)
    assert isinstance(r, InvalidMessage)
    assert r.reason == reason, r.error
    assert r.reason in REASONS


def test_unknown_fields_ignored_when_configured() -> None:
    r = _one(_enc(ts=1795486500000, voltage=230), ReadingDecoder(unknown_fields="ignore"))
    assert isinstance(r, ValidReading)


def test_future_and_earliest_limits_are_settings() -> None:
    lenient = ReadingDecoder(max_future_s=7 * 86_400, earliest=datetime(1990, 1, 1, tzinfo=UTC))
    assert isinstance(_one(_enc(ts="2026-11-26T10:15:00+08:00"), lenient), ValidReading)
    assert isinstance(_one(_enc(ts="1995-01-01T00:00:00Z"), lenient), ValidReading)
    with pytest.raises(ValueError, match="aware"):
        ReadingDecoder(earliest=datetime(2000, 1, 1))  # noqa: DTZ001 - the point of the test


def test_batch_keeps_good_readings_and_names_bad_elements() -> None:
    good = {"site": "a", "meter": "m", "ts": 1795486500000, "energy_kwh": 1.0}
    value = json.dumps(
        {"readings": [good, {"site": "a"}, {**good, "ts": 1795486560000}, {**good, "power_kw": -1}]}
    )
    ok, bad = DECODER.decode(value.encode(), NOW)
    assert [r.ts_us for r in ok] == [1795486500000000, 1795486560000000]
    assert [(b.index, b.reason) for b in bad] == [(1, "missing_field"), (3, "negative_value")]
    assert bad[0].error.startswith("readings[1]")


def test_a_site_named_readings_is_still_a_single_reading() -> None:
    r = _one(json.dumps({"site": "readings", "meter": "m", "ts": 1795486500000, "power_kw": 1}).encode())
    assert isinstance(r, ValidReading)
    assert r.site == "readings"


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    good, bad = DECODER.decode(value, NOW)
    assert all(isinstance(g, ValidReading) for g in good)
    assert all(b.reason in REASONS for b in bad)
    assert good or bad


_ids = st.from_regex(r"\A[a-z0-9][a-z0-9.:\-]{0,20}\Z")
_times = st.datetimes(
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001 - hypothesis takes naive bounds and adds the zones
    max_value=datetime(2026, 11, 24),  # noqa: DTZ001
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
    ),
)
_values = st.none() | st.floats(min_value=0, max_value=1e11, allow_nan=False)
_readings = st.builds(
    Reading,
    site=_ids,
    meter=_ids,
    ts=_times,
    energy_kwh=_values,
    power_kw=_values,
    quality=st.sampled_from(["ok", "estimated", "suspect"]),
).filter(lambda r: r.energy_kwh is not None or r.power_kw is not None)


@settings(max_examples=200)
@given(_readings)
def test_valid_readings_round_trip_exactly(reading: Reading) -> None:
    r = _one(encode_reading(reading))
    assert isinstance(r, ValidReading)
    assert isinstance(reading.ts, datetime)
    assert r.ts_us == to_epoch_us(reading.ts)
    assert (r.site, r.meter, r.energy_kwh, r.power_kw, r.quality) == (
        reading.site,
        reading.meter,
        reading.energy_kwh,
        reading.power_kw,
        reading.quality,
    )


@settings(max_examples=100)
@given(st.lists(_readings, min_size=1, max_size=30), st.data())
def test_batch_with_corrupted_elements(readings: list[Reading], data: st.DataObject) -> None:
    corrupt = data.draw(st.sets(st.integers(0, len(readings) - 1)))
    elements = [
        {"site": r.site} if i in corrupt else msgspec.json.decode(encode_reading(r))
        for i, r in enumerate(readings)
    ]
    good, bad = DECODER.decode(json.dumps({"readings": elements}).encode(), NOW)
    assert len(good) == len(readings) - len(corrupt)
    assert {b.index for b in bad} == corrupt
    assert all(b.reason == "missing_field" for b in bad)


def test_encode_reading_single_and_batch() -> None:
    r = Reading(site="a", meter="m", ts=1795486500000, energy_kwh=2.0)
    assert json.loads(encode_reading(r))["site"] == "a"
    assert len(json.loads(encode_reading([r, r]))["readings"]) == 2
