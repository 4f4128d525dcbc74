"""`schemas.messages.ReadingDecoder` without services: every valid form accepted with its exact
instant, every invalid kind refused with the reason the dead-letter record will carry, batches
judged element by element, and no input able to make the decoder raise."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.messages import (
    IDENTIFIER,
    REASONS,
    InvalidMessage,
    Reading,
    ReadingDecoder,
    ValidReading,
    encode_reading,
)

# Literal epochs, checked once against calendar.timegm, so the tests do not share the code
# under test's own conversion: 2026-11-24T02:15:00Z, 2026-11-24T03:00:00Z, 2000-01-01T00:00:00Z.
T_0215_S = 1_795_486_500
NOW_S = 1_795_489_200
Y2000_S = 946_684_800
US = 1_000_000

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
DECODER = ReadingDecoder()
LENIENT = ReadingDecoder(unknown_fields="ignore")


def _decode(value: bytes | None, decoder: ReadingDecoder = DECODER, now: datetime = NOW) -> Any:
    """The one outcome of a single-reading value: a ValidReading or an InvalidMessage."""
    good, bad = decoder.decode(value, now)
    assert len(good) + len(bad) == 1, (good, bad)
    return good[0] if good else bad[0]


_DROP = object()  # a field value meaning "leave the field out"


def _obj(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"site": "hz-b001", "meter": "main", "ts": T_0215_S * 1000, "energy_kwh": 1.5}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


def _msg(**fields: Any) -> bytes:
    return json.dumps(_obj(**fields)).encode()


def _valid(value: bytes, decoder: ReadingDecoder = DECODER, now: datetime = NOW) -> ValidReading:
    r = _decode(value, decoder, now)
    assert isinstance(r, ValidReading), r
    return r


def _invalid(value: bytes | None, decoder: ReadingDecoder = DECODER, now: datetime = NOW) -> InvalidMessage:
    r = _decode(value, decoder, now)
    assert isinstance(r, InvalidMessage), r
    assert r.index is None
    assert r.error
    return r


def test_literal_epochs_are_right() -> None:
    import calendar

    assert calendar.timegm((2026, 11, 24, 2, 15, 0)) == T_0215_S
    assert calendar.timegm((2026, 11, 24, 3, 0, 0)) == NOW_S
    assert calendar.timegm((2000, 1, 1, 0, 0, 0)) == Y2000_S


# --- valid single readings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "ts_us"),
    [
        pytest.param("2026-11-24T10:15:00+08:00", T_0215_S * US, id="offset+08"),
        pytest.param("2026-11-24T02:15:00Z", T_0215_S * US, id="zulu"),
        pytest.param("2026-11-24T02:15:00+00:00", T_0215_S * US, id="offset+00"),
        pytest.param("2026-11-23T20:45:00-05:30", T_0215_S * US, id="offset-05:30"),
        pytest.param("2026-11-24T10:15:00.5+08:00", T_0215_S * US + 500_000, id="fraction-1-digit"),
        pytest.param("2026-11-24T02:15:00.123456Z", T_0215_S * US + 123_456, id="fraction-6-digits"),
        pytest.param("2026-11-24T02:15:00.000001Z", T_0215_S * US + 1, id="one-microsecond"),
        pytest.param(T_0215_S * 1000, T_0215_S * US, id="epoch-ms"),
        pytest.param(T_0215_S * 1000 + 7, T_0215_S * US + 7000, id="epoch-ms-odd"),
    ],
)
def test_timestamp_forms_give_exact_epoch_microseconds(ts: object, ts_us: int) -> None:
    r = _valid(_msg(ts=ts))
    assert r.ts_us == ts_us
    assert type(r.ts_us) is int


def test_design_example_decodes_exactly() -> None:
    value = (
        b'{"site": "hz-b001", "meter": "main", "ts": "2026-11-24T10:15:00+08:00", '
        b'"energy_kwh": 123456.789, "power_kw": 42.1, "quality": "ok"}'
    )
    assert _valid(value) == ValidReading("hz-b001", "main", T_0215_S * US, 123456.789, 42.1, "ok")


@pytest.mark.parametrize(
    ("energy", "power"),
    [
        pytest.param(12.25, _DROP, id="energy-only"),
        pytest.param(_DROP, 3.5, id="power-only"),
        pytest.param(12.25, 3.5, id="both"),
        pytest.param(12.25, None, id="energy-and-null-power"),
        pytest.param(None, 3.5, id="null-energy-and-power"),
        pytest.param(0.0, _DROP, id="zero-energy"),
        pytest.param(_DROP, 0, id="zero-power-int"),
    ],
)
def test_measurements(energy: Any, power: Any) -> None:
    r = _valid(_msg(energy_kwh=energy, power_kw=power))
    expect_e = None if energy is _DROP or energy is None else float(energy)
    expect_p = None if power is _DROP or power is None else float(power)
    assert (r.energy_kwh, r.power_kw) == (expect_e, expect_p)
    for v in (r.energy_kwh, r.power_kw):
        assert v is None or type(v) is float


def test_integer_measurements_become_floats() -> None:
    r = _valid(_msg(energy_kwh=42, power_kw=7))
    assert (r.energy_kwh, r.power_kw) == (42.0, 7.0)
    assert type(r.energy_kwh) is float
    assert type(r.power_kw) is float


def test_measurements_just_below_their_bounds() -> None:
    r = _valid(_msg(energy_kwh=999_999_999_999_999.9, power_kw=999_999_999_999.9))
    assert r.energy_kwh == 999_999_999_999_999.9
    assert r.power_kw == 999_999_999_999.9


@pytest.mark.parametrize("quality", ["ok", "estimated", "suspect"])
def test_quality_values(quality: str) -> None:
    assert _valid(_msg(quality=quality)).quality == quality


def test_quality_defaults_to_ok() -> None:
    assert "quality" not in _obj()
    assert _valid(_msg()).quality == "ok"


@pytest.mark.parametrize(
    ("site", "meter"),
    [
        ("杭州-b1", "空调.1"),
        ("北京:园区_3", "照明插座"),
        ("Zürich-Ost", "Hauptzähler"),
        ("a", "m"),
        ("_x", "0"),
        ("x" * 64, "m" * 64),
        ("site.with:all-three_marks", "m"),
    ],
)
@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "utf8"])
def test_identifiers_allowed_by_the_pattern(site: str, meter: str, ensure_ascii: bool) -> None:
    value = json.dumps(_obj(site=site, meter=meter), ensure_ascii=ensure_ascii).encode()
    r = _valid(value)
    assert (r.site, r.meter) == (site, meter)


def test_whitespace_around_the_value_is_fine() -> None:
    value = b"\n  " + json.dumps(_obj(), indent=2).encode() + b" \r\n"
    assert _valid(value).ts_us == T_0215_S * US


def test_unknown_fields_accepted_when_ignored() -> None:
    value = _msg(voltage=230.0, note={"nested": [1, 2]})
    assert _invalid(value).reason == "unknown_field"
    r = _valid(value, LENIENT)
    assert r == ValidReading("hz-b001", "main", T_0215_S * US, 1.5, None, "ok")


# --- time limits ------------------------------------------------------------------------


def test_future_limit_is_inclusive_and_relative_to_now() -> None:
    at_limit = (NOW_S + 86_400) * 1000
    assert _valid(_msg(ts=at_limit)).ts_us == at_limit * 1000
    assert _invalid(_msg(ts=at_limit + 1)).reason == "future_timestamp"
    # the same message is fine once `now` has moved on
    later = NOW + timedelta(seconds=1)
    assert _valid(_msg(ts=at_limit + 1), now=later).ts_us == (at_limit + 1) * 1000


def test_earliest_limit_is_inclusive() -> None:
    assert _valid(_msg(ts="2000-01-01T00:00:00Z")).ts_us == Y2000_S * US
    assert _valid(_msg(ts="2000-01-01T08:00:00+08:00")).ts_us == Y2000_S * US
    assert _invalid(_msg(ts=Y2000_S * 1000 - 1)).reason == "ancient_timestamp"
    assert _invalid(_msg(ts="1999-12-31T23:59:59.999999Z")).reason == "ancient_timestamp"


def test_limits_are_settings() -> None:
    decoder = ReadingDecoder(max_future_s=60.0, earliest=datetime(2026, 1, 1, tzinfo=UTC))
    assert _invalid(_msg(ts=(NOW_S + 61) * 1000), decoder).reason == "future_timestamp"
    assert _valid(_msg(ts=(NOW_S + 60) * 1000), decoder).ts_us == (NOW_S + 60) * US
    assert _invalid(_msg(ts="2025-12-31T23:59:59Z"), decoder).reason == "ancient_timestamp"
    lenient = ReadingDecoder(earliest=datetime(1970, 1, 1, tzinfo=UTC))
    assert _valid(_msg(ts="1995-06-01T00:00:00+08:00"), lenient).ts_us < Y2000_S * US
    assert _valid(_msg(ts=0), lenient).ts_us == 0


def test_earliest_must_be_aware() -> None:
    with pytest.raises(ValueError, match="aware"):
        ReadingDecoder(earliest=datetime(2000, 1, 1))  # noqa: DTZ001 - the naive value is the point


# --- invalid values, one reason each ------------------------------------------------------

_NAN_BODY = b'{"site": "a", "meter": "m", "ts": 1795486500000, "energy_kwh": %s}'

INVALID: list[Any] = [
    # not JSON at all
    pytest.param(b"\x00\xffgarbage", "not_json", id="garbage-bytes"),
    pytest.param(b"", "not_json", id="empty-bytes"),
    pytest.param(
        b'{"site": "a", "meter": "m", "ts": 1795486500000, "energy_kwh": 1', "not_json", id="truncated"
    ),
    pytest.param(b'{"site": "a", "meter": "m", "ts": 17', "not_json", id="truncated-early"),
    pytest.param(_msg() + b" trailing", "not_json", id="trailing-garbage"),
    pytest.param(_msg() + _msg(), "not_json", id="two-objects"),
    pytest.param(b"\xff\xfe{}", "not_json", id="non-utf8-prefix"),
    pytest.param(
        b'{"site": "a\xff", "meter": "m", "ts": 1795486500000, "power_kw": 1}', "not_json", id="non-utf8"
    ),
    pytest.param(_msg().replace(b'"meter"', b'"m\xe9ter"'), "not_json", id="non-utf8-key"),
    pytest.param(_msg(quality="ok").replace(b'"ok"', b'"\xc3("'), "not_json", id="non-utf8-quality"),
    pytest.param(b'{"readings": [], "\xff": 1}', "not_json", id="non-utf8-batch-key"),
    pytest.param(b"{'site': 'a'}", "not_json", id="single-quotes"),
    pytest.param(None, "not_json", id="tombstone"),
    # JSON, but not an object
    pytest.param(b"[1, 2]", "not_an_object", id="array"),
    pytest.param(b"[]", "not_an_object", id="empty-array"),
    pytest.param(b"42", "not_an_object", id="number"),
    pytest.param(b"4.2", "not_an_object", id="float"),
    pytest.param(b'"a reading"', "not_an_object", id="string"),
    pytest.param(b"true", "not_an_object", id="bool"),
    pytest.param(b"null", "not_an_object", id="null"),
    pytest.param(b'[{"site": "readings"}]', "not_an_object", id="array-mentioning-readings"),
    # missing required fields
    pytest.param(_msg(site=_DROP), "missing_field", id="no-site"),
    pytest.param(_msg(meter=_DROP), "missing_field", id="no-meter"),
    pytest.param(_msg(ts=_DROP), "missing_field", id="no-ts"),
    pytest.param(b"{}", "missing_field", id="empty-object"),
    # unknown field (default decoder rejects)
    pytest.param(_msg(voltage=230), "unknown_field", id="unknown-field"),
    pytest.param(_msg(energy=1.0), "unknown_field", id="misspelt-field"),
    # wrong types
    pytest.param(_msg(ts=1795486500000.5), "wrong_type", id="ts-float"),
    pytest.param(_msg(ts=1795486500000.0), "wrong_type", id="ts-integral-float"),
    pytest.param(_msg(ts=True), "wrong_type", id="ts-bool"),
    pytest.param(_msg(ts=None), "wrong_type", id="ts-null"),
    pytest.param(_msg(ts=[2026, 11, 24]), "wrong_type", id="ts-list"),
    pytest.param(_msg(site=7), "wrong_type", id="site-number"),
    pytest.param(_msg(meter=None), "wrong_type", id="meter-null"),
    pytest.param(_msg(energy_kwh="12.5"), "wrong_type", id="energy-string"),
    pytest.param(_msg(energy_kwh=True), "wrong_type", id="energy-bool"),
    pytest.param(_msg(power_kw=[1.0]), "wrong_type", id="power-list"),
    pytest.param(_msg(quality=0), "wrong_type", id="quality-number"),
    # identifiers
    pytest.param(_msg(site="has space"), "bad_identifier", id="site-space"),
    pytest.param(_msg(site=""), "bad_identifier", id="site-empty"),
    pytest.param(_msg(site="x" * 65), "bad_identifier", id="site-65"),
    pytest.param(_msg(meter="m" * 65), "bad_identifier", id="meter-65"),
    pytest.param(_msg(meter="a/b"), "bad_identifier", id="meter-slash"),
    pytest.param(_msg(site="-leading-dash"), "bad_identifier", id="site-leading-dash"),
    pytest.param(_msg(site=".hidden"), "bad_identifier", id="site-leading-dot"),
    pytest.param(_msg(site="abc\n"), "bad_identifier", id="site-trailing-newline"),
    pytest.param(_msg(site="x" * 64 + "\n"), "bad_identifier", id="site-64-plus-newline"),
    pytest.param(_msg(meter="\nabc"), "bad_identifier", id="meter-leading-newline"),
    pytest.param(_msg(meter="a\tb"), "bad_identifier", id="meter-tab"),
    # timestamps
    pytest.param(_msg(ts="yesterday"), "bad_timestamp", id="ts-word"),
    pytest.param(_msg(ts=""), "bad_timestamp", id="ts-empty"),
    pytest.param(_msg(ts="2026-11-24"), "bad_timestamp", id="ts-date-only"),
    pytest.param(_msg(ts="2026-13-24T10:15:00+08:00"), "bad_timestamp", id="ts-month-13"),
    pytest.param(_msg(ts="2026-11-24T25:15:00Z"), "bad_timestamp", id="ts-hour-25"),
    pytest.param(_msg(ts="1795486500000"), "bad_timestamp", id="ts-epoch-as-string"),
    pytest.param(_msg(ts="24/11/2026 10:15"), "bad_timestamp", id="ts-local-format"),
    pytest.param(_msg(ts="2026-11-24T10:15:00"), "naive_timestamp", id="ts-naive"),
    pytest.param(_msg(ts="2026-11-24T10:15:00.250"), "naive_timestamp", id="ts-naive-fraction"),
    pytest.param(_msg(ts="2026-11-26T10:15:00+08:00"), "future_timestamp", id="ts-2-days-ahead"),
    pytest.param(_msg(ts=(NOW_S + 86_401) * 1000), "future_timestamp", id="epoch-ms-ahead"),
    pytest.param(_msg(ts=2**63), "future_timestamp", id="epoch-ms-past-int64"),
    pytest.param(_msg(ts="9999-12-31T23:59:59Z"), "future_timestamp", id="ts-year-9999"),
    pytest.param(_msg(ts="1999-12-31T23:59:59Z"), "ancient_timestamp", id="ts-1999"),
    pytest.param(_msg(ts="1970-01-01T00:00:00Z"), "ancient_timestamp", id="ts-epoch"),
    pytest.param(_msg(ts=-1000), "ancient_timestamp", id="epoch-negative"),
    pytest.param(_msg(ts=0), "ancient_timestamp", id="epoch-zero"),
    pytest.param(_msg(ts=T_0215_S), "ancient_timestamp", id="epoch-seconds-not-ms"),
    # values
    pytest.param(_msg(energy_kwh=-0.1), "negative_value", id="energy-negative"),
    pytest.param(_msg(power_kw=-3.0), "negative_value", id="power-negative"),
    pytest.param(_msg(energy_kwh=-1), "negative_value", id="energy-negative-int"),
    pytest.param(_NAN_BODY % b"NaN", "non_finite_value", id="NaN"),
    pytest.param(_NAN_BODY % b"Infinity", "non_finite_value", id="Infinity"),
    pytest.param(_NAN_BODY % b"-Infinity", "non_finite_value", id="-Infinity"),
    pytest.param(_NAN_BODY % b"inf", "non_finite_value", id="inf"),
    pytest.param(_NAN_BODY % b"1e999", "non_finite_value", id="1e999"),
    pytest.param(_NAN_BODY % b"-1e999", "non_finite_value", id="-1e999"),
    pytest.param(
        _NAN_BODY.replace(b"energy_kwh", b"power_kw") % b"1e400", "non_finite_value", id="power-1e400"
    ),
    pytest.param(_msg(energy_kwh=_DROP), "no_measurement", id="no-measurement"),
    pytest.param(_msg(energy_kwh=None, power_kw=None), "no_measurement", id="null-measurements"),
    pytest.param(_msg(quality="great"), "invalid_value", id="quality-unknown"),
    pytest.param(_msg(quality="OK"), "invalid_value", id="quality-case"),
    pytest.param(_msg(quality=""), "invalid_value", id="quality-empty"),
    pytest.param(_msg(energy_kwh=1e15), "invalid_value", id="energy-1e15"),
    pytest.param(_msg(energy_kwh=3e20), "invalid_value", id="energy-3e20"),
    pytest.param(_msg(power_kw=1e12), "invalid_value", id="power-1e12"),
    # batches
    pytest.param(b'{"readings": []}', "empty_batch", id="empty-batch"),
    pytest.param(b'{ "readings" : [ ] }', "empty_batch", id="empty-batch-spaced"),
    pytest.param(b'{"readings": null}', "wrong_type", id="batch-null"),
    pytest.param(b'{"readings": {"site": "a"}}', "wrong_type", id="batch-object"),
    pytest.param(b'{"readings": [' + b"[" * 3000 + b"]" * 3000 + b"]}", "too_deep", id="batch-deep"),
]


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_invalid_values_name_their_reason(value: bytes | None, reason: str) -> None:
    r = _invalid(value)
    assert r.reason == reason, r.error
    assert r.reason in REASONS


def test_every_reason_the_decoder_can_give_is_exercised() -> None:
    """The table above covers every reason except the worker's own: `unknown_meter`, and the
    screen before decoding (`too_large`; `too_deep` at a fixed depth) and the last-resort guard
    (`processing_failed`), tested in tests/integration/test_poison.py."""
    produced = {_invalid(p.values[0]).reason for p in INVALID}
    assert produced == set(REASONS) - {"unknown_meter", "too_large", "processing_failed"}


def test_tombstone_says_so() -> None:
    assert "tombstone" in _invalid(None).error


def test_unknown_field_error_names_the_field() -> None:
    assert "voltage" in _invalid(_msg(voltage=230)).error


def test_missing_field_error_names_the_field() -> None:
    assert "meter" in _invalid(_msg(meter=_DROP)).error


def test_lenient_decoder_still_refuses_everything_else() -> None:
    assert _invalid(_msg(site=_DROP, extra=1), LENIENT).reason == "missing_field"
    assert _invalid(_msg(energy_kwh=-1, extra=1), LENIENT).reason == "negative_value"
    assert _invalid(_msg(energy_kwh=_DROP, extra=1), LENIENT).reason == "no_measurement"


# --- batches ---------------------------------------------------------------------------


def _batch(*elements: Any) -> bytes:
    return json.dumps({"readings": list(elements)}).encode()


def test_batch_all_good_in_order() -> None:
    elements = [_obj(ts=(T_0215_S + 60 * i) * 1000, energy_kwh=100.0 + i) for i in range(5)]
    good, bad = DECODER.decode(_batch(*elements), NOW)
    assert bad == []
    assert good == [
        ValidReading("hz-b001", "main", (T_0215_S + 60 * i) * US, 100.0 + i, None, "ok") for i in range(5)
    ]


def test_batch_mixed_returns_good_and_names_bad_by_index() -> None:
    elements = [
        _obj(ts="2026-11-24T10:15:00+08:00"),  # 0 good
        _obj(site=_DROP),  # 1 missing_field
        _obj(ts=(T_0215_S + 60) * 1000, power_kw=2.0),  # 2 good
        _obj(power_kw=-1),  # 3 negative_value
        [1, 2],  # 4 not_an_object
        _obj(ts="2026-11-24T10:15:00"),  # 5 naive_timestamp
        _obj(meter="空调.2", energy_kwh=_DROP, power_kw=9.5, quality="suspect"),  # 6 good
        _obj(voltage=1),  # 7 unknown_field
    ]
    good, bad = DECODER.decode(_batch(*elements), NOW)
    assert good == [
        ValidReading("hz-b001", "main", T_0215_S * US, 1.5, None, "ok"),
        ValidReading("hz-b001", "main", (T_0215_S + 60) * US, 1.5, 2.0, "ok"),
        ValidReading("hz-b001", "空调.2", T_0215_S * US, None, 9.5, "suspect"),
    ]
    assert [(b.index, b.reason) for b in bad] == [
        (1, "missing_field"),
        (3, "negative_value"),
        (4, "not_an_object"),
        (5, "naive_timestamp"),
        (7, "unknown_field"),
    ]
    for b in bad:
        assert b.error.startswith(f"readings[{b.index}]: ")


def test_batch_elements_follow_the_unknown_fields_setting() -> None:
    value = _batch(_obj(voltage=1), _obj())
    good, bad = LENIENT.decode(value, NOW)
    assert (len(good), bad) == (2, [])
    good, bad = DECODER.decode(value, NOW)
    assert len(good) == 1
    assert [(b.index, b.reason) for b in bad] == [(0, "unknown_field")]


def test_batch_of_only_bad_elements() -> None:
    good, bad = DECODER.decode(_batch(1, "x", None, {}), NOW)
    assert good == []
    assert [(b.index, b.reason) for b in bad] == [
        (0, "not_an_object"),
        (1, "not_an_object"),
        (2, "not_an_object"),
        (3, "missing_field"),
    ]


def test_empty_batch() -> None:
    good, bad = DECODER.decode(b'{"readings": []}', NOW)
    assert good == []
    assert [(b.reason, b.index) for b in bad] == [("empty_batch", None)]


@pytest.mark.parametrize("field", ["site", "meter"])
def test_an_identifier_named_readings_is_still_a_single_reading(field: str) -> None:
    r = _valid(_msg(**{field: "readings"}))
    assert getattr(r, field) == "readings"


def test_a_bad_single_reading_named_readings_keeps_its_own_reason() -> None:
    assert _invalid(_msg(site="readings", energy_kwh=-1)).reason == "negative_value"
    assert _invalid(_msg(site="readings", ts="2026-11-24T10:15:00")).reason == "naive_timestamp"


def test_malformed_batch_is_not_json_for_the_whole_record() -> None:
    value = b'{"readings": [' + json.dumps(_obj()).encode() + b", {"
    assert _invalid(value).reason == "not_json"


def test_batch_with_a_nan_element_is_refused_as_non_finite() -> None:
    # NaN is not JSON, so the batch cannot be split into elements; the reason must still say why
    # (judged as one reading it would have been "unknown field `readings`").
    value = b'{"readings": [' + json.dumps(_obj()).encode() + b", " + _NAN_BODY % b"NaN" + b"]}"
    assert _invalid(value).reason == "non_finite_value"
    assert _invalid(value, LENIENT).reason == "non_finite_value"


def test_batch_with_a_non_utf8_element_keeps_the_rest() -> None:
    value = _batch(_obj(), _obj(meter="MARK")).replace(b"MARK", b"\xffm")
    good, bad = DECODER.decode(value, NOW)
    assert [g.meter for g in good] == ["main"]
    assert [(b.index, b.reason) for b in bad] == [(1, "not_json")]


def test_batch_with_out_of_range_element_keeps_the_rest() -> None:
    value = b'{"readings": [' + json.dumps(_obj()).encode() + b", " + _NAN_BODY % b"1e999" + b"]}"
    good, bad = DECODER.decode(value, NOW)
    assert [g.ts_us for g in good] == [T_0215_S * US]
    assert [(b.index, b.reason) for b in bad] == [(1, "non_finite_value")]


# --- properties ------------------------------------------------------------------------

# No per-example deadline: the machine is shared, and a slow example is not a wrong one.
_PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_outcome(value: bytes, decoder: ReadingDecoder = DECODER) -> tuple[list[Any], list[Any]]:
    good, bad = decoder.decode(value, NOW)
    assert good or bad
    assert all(type(g) is ValidReading for g in good)
    assert all(type(b) is InvalidMessage for b in bad)
    for b in bad:
        assert b.reason in REASONS
        assert b.reason != "unknown_meter"  # the worker's reason, not the decoder's
    indices = [b.index for b in bad]
    if indices and indices[0] is None:  # a refusal of the whole record stands alone
        assert (good, indices) == ([], [None])
    else:  # elements of a batch, in order
        assert indices == sorted(indices)
    return good, bad


@settings(_PROPERTY, max_examples=400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    _check_outcome(value)
    _check_outcome(value, LENIENT)


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70)
)
_json = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
_fields = st.sampled_from(["site", "meter", "ts", "energy_kwh", "power_kw", "quality", "readings", "x"])


@settings(_PROPERTY, max_examples=400)
@given(st.dictionaries(_fields, _json, max_size=7), st.booleans())
def test_arbitrary_json_objects_are_judged_never_as_not_json(obj: dict[str, Any], batch: bool) -> None:
    value = json.dumps({"readings": [obj]} if batch else obj).encode()
    _, bad = _check_outcome(value)
    assert all(b.reason != "not_json" for b in bad)
    _check_outcome(value, LENIENT)


@settings(_PROPERTY, max_examples=200)
@given(_json.filter(lambda v: not isinstance(v, dict)))
def test_json_that_is_not_an_object_is_not_an_object(value: Any) -> None:
    bad = _invalid(json.dumps(value).encode())
    assert bad.reason == "not_an_object"


@settings(_PROPERTY, max_examples=300)
@given(st.data())
def test_mutated_valid_messages_never_raise(data: st.DataObject) -> None:
    value = bytearray(_msg(power_kw=2.0, quality="estimated"))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(value) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            value[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del value[i:]
            if not value:
                break
        else:
            value[i:i] = data.draw(st.sampled_from([b"NaN", b"-", b'"', b"}", b"\\", b"readings", b"\xff"]))
    _check_outcome(bytes(value))


# Identifiers by the pattern itself (Python semantics, as msgspec matches them); the anchors
# are implied by fullmatch.
_ids = st.from_regex(IDENTIFIER.strip("^$"), fullmatch=True)
_offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
_zones = st.sampled_from([UTC, timezone(timedelta(hours=8))]) | _offsets | st.timezones()
_aware = st.datetimes(
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001 - hypothesis wants naive bounds, then adds the zone
    max_value=datetime(2026, 11, 24),  # noqa: DTZ001
    timezones=_zones,
    allow_imaginary=False,
)
_epoch_ms = st.integers(min_value=Y2000_S * 1000, max_value=(NOW_S + 86_400) * 1000)
_kwh = st.none() | st.floats(min_value=0.0, max_value=1e15, exclude_max=True)
_kw = st.none() | st.floats(min_value=0.0, max_value=1e12, exclude_max=True)
_readings = st.builds(
    Reading,
    site=_ids,
    meter=_ids,
    ts=_aware | _epoch_ms,
    energy_kwh=_kwh,
    power_kw=_kw,
    quality=st.sampled_from(["ok", "estimated", "suspect"]),
).filter(lambda r: r.energy_kwh is not None or r.power_kw is not None)


def _exact_us(ts: datetime | int) -> int:
    """Epoch microseconds by integer arithmetic on the UTC fields (no float, no timeutil)."""
    if isinstance(ts, int):
        return ts * 1000
    offset = ts.utcoffset()
    assert offset is not None
    days = ts.toordinal() - date(1970, 1, 1).toordinal()
    local_us = ((days * 24 + ts.hour) * 60 + ts.minute) * 60 * US + ts.second * US + ts.microsecond
    return local_us - (offset.days * 86_400 + offset.seconds) * US - offset.microseconds


def _expected(r: Reading) -> ValidReading:
    return ValidReading(r.site, r.meter, _exact_us(r.ts), r.energy_kwh, r.power_kw, r.quality)


def test_exact_us_oracle() -> None:
    tz8 = timezone(timedelta(hours=8))
    assert _exact_us(datetime(2026, 11, 24, 10, 15, tzinfo=tz8)) == T_0215_S * US
    assert _exact_us(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == -1
    assert _exact_us(T_0215_S * 1000) == T_0215_S * US


@settings(_PROPERTY, max_examples=300)
@given(_readings)
def test_valid_readings_decode_exactly(reading: Reading) -> None:
    r = _valid(encode_reading(reading))
    assert r == _expected(reading)
    assert _valid(encode_reading(reading), LENIENT) == r


_CORRUPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("missing_field", {"site": _DROP}),
    ("missing_field", {"ts": _DROP}),
    ("negative_value", {"energy_kwh": -1.0}),
    ("negative_value", {"power_kw": -0.5}),
    ("bad_identifier", {"meter": "two words"}),
    ("bad_timestamp", {"ts": "not a time"}),
    ("naive_timestamp", {"ts": "2026-01-01T00:00:00"}),
    ("future_timestamp", {"ts": (NOW_S + 2 * 86_400) * 1000}),
    ("ancient_timestamp", {"ts": -1}),
    ("no_measurement", {"energy_kwh": None, "power_kw": None}),
    ("invalid_value", {"quality": "bad"}),
    ("unknown_field", {"extra": 1}),
    ("wrong_type", {"ts": 1.5}),
    ("non_finite_value", {"energy_kwh": "<huge>"}),  # written as 1e999, see below
]


@settings(_PROPERTY, max_examples=150)
@given(st.lists(_readings, min_size=1, max_size=25), st.data())
def test_batch_with_a_corrupted_subset(readings: list[Reading], data: st.DataObject) -> None:
    n = len(readings)
    corrupt = data.draw(st.sets(st.integers(0, n - 1)), label="corrupted indices")
    kinds = {i: data.draw(st.sampled_from(_CORRUPTIONS), label=f"corruption {i}") for i in sorted(corrupt)}
    elements: list[Any] = []
    for i, r in enumerate(readings):
        element = msgspec.to_builtins(r)
        if i in kinds:
            element.update(kinds[i][1])
            element = {k: v for k, v in element.items() if v is not _DROP}
        elements.append(element)
    # `<` is in no identifier, so the marker cannot be anything else
    value = json.dumps({"readings": elements}).replace('"<huge>"', "1e999").encode()
    good, bad = DECODER.decode(value, NOW)
    assert len(good) == n - len(corrupt)
    assert len(bad) == len(corrupt)
    assert good == [_expected(r) for i, r in enumerate(readings) if i not in corrupt]
    assert [(b.index, b.reason) for b in bad] == [(i, kinds[i][0]) for i in sorted(corrupt)]


@settings(_PROPERTY, max_examples=100)
@given(st.lists(_readings, min_size=1, max_size=20))
def test_encoded_batches_decode_exactly(readings: list[Reading]) -> None:
    good, bad = DECODER.decode(encode_reading(readings), NOW)
    assert bad == []
    assert good == [_expected(r) for r in readings]


# --- encode_reading ---------------------------------------------------------------------


def test_encode_single_reading_wire_form() -> None:
    r = Reading(
        site="hz-b001",
        meter="main",
        ts=datetime(2026, 11, 24, 10, 15, tzinfo=timezone(timedelta(hours=8))),
        energy_kwh=123456.789,
        quality="estimated",
    )
    assert json.loads(encode_reading(r)) == {
        "site": "hz-b001",
        "meter": "main",
        "ts": "2026-11-24T10:15:00+08:00",
        "energy_kwh": 123456.789,
        "power_kw": None,
        "quality": "estimated",
    }
    assert msgspec.json.decode(encode_reading(r), type=Reading) == r
    assert _valid(encode_reading(r)) == ValidReading(
        "hz-b001", "main", T_0215_S * US, 123456.789, None, "estimated"
    )


def test_encode_list_is_a_batch() -> None:
    a = Reading(site="a", meter="m", ts=T_0215_S * 1000, energy_kwh=2.0)
    b = Reading(site="杭州", meter="空调", ts=datetime(2026, 11, 24, 2, 16, tzinfo=UTC), power_kw=0.25)
    wire = json.loads(encode_reading([a, b]))
    assert list(wire) == ["readings"]
    assert [e["site"] for e in wire["readings"]] == ["a", "杭州"]
    assert msgspec.json.decode(encode_reading([a, b]), type=dict[str, list[Reading]]) == {"readings": [a, b]}
    good, bad = DECODER.decode(encode_reading([a, b]), NOW)
    assert bad == []
    assert good == [
        ValidReading("a", "m", T_0215_S * US, 2.0, None, "ok"),
        ValidReading("杭州", "空调", (T_0215_S + 60) * US, None, 0.25, "ok"),
    ]


def test_encode_empty_list_is_an_empty_batch() -> None:
    assert json.loads(encode_reading([])) == {"readings": []}
    assert _invalid(encode_reading([])).reason == "empty_batch"
