"""Dead-letter records without a broker: the worker's headers come first under their own prefix,
a producer's look-alike headers cannot stand in for them, and a dead letter that would not fit
its topic is cut to fit with the original's length and hash."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord

from ingest.consumer import fit_dead_letter
from schemas.deadletter import PREFIX, dead_letter_headers, read_dead_letter
from schemas.messages import InvalidMessage

WHY = [InvalidMessage("not_json", "expected a value")]


def _record(
    value: bytes | None, key: bytes | None = b"site-1", headers: list[tuple[str, bytes]] | None = None
) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t.readings",
        partition=4,
        offset=1234,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=tuple(headers or ()),
    )


def _size(out: object) -> int:
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(out.key, out.value, out.headers))  # type: ignore[attr-defined]


def test_headers_name_the_origin_under_the_prefix() -> None:
    out = fit_dead_letter(_record(b"nope"), WHY, max_bytes=1 << 20, truncate_to=1024)
    assert not out.truncated
    assert (out.key, out.value) == (b"site-1", b"nope")
    assert all(name.startswith(PREFIX) for name, _ in out.headers)
    d = read_dead_letter(out.headers)
    assert (d.reason, d.reasons, d.origin, d.truncated) == (
        "not_json",
        ("not_json",),
        ("t.readings", 4, 1234),
        False,
    )
    assert d.error == "expected a value"


def test_forged_headers_are_kept_but_cannot_pose_as_the_workers() -> None:
    forged = [
        ("reason", b"ok"),
        ("topic", b"elsewhere"),
        ("partition", b"0"),
        ("offset", b"1"),
        ("wattstream.reason", b"forged"),
        ("wattstream.origin.offset", b"999999"),
        ("trace", b"\x00\xff"),
    ]
    out = fit_dead_letter(_record(b"x", headers=forged), WHY, max_bytes=1 << 20, truncate_to=1024)
    # the record's own headers follow the worker's, unchanged and in their order
    assert out.headers[-len(forged) :] == forged
    d = read_dead_letter(out.headers)
    assert (d.reason, d.origin) == ("not_json", ("t.readings", 4, 1234))


def test_a_producer_cannot_forge_even_the_headers_that_say_least() -> None:
    # the worker writes every one of its headers on every dead letter: none is left for a
    # producer's look-alike to stand in for
    forged = [
        ("wattstream.reasons", b"forged"),
        ("wattstream.truncated", b"true"),
        ("wattstream.origin.length", b"1"),
        ("wattstream.origin.sha256", b"00"),
    ]
    out = fit_dead_letter(_record(b"\x00bad", headers=forged), WHY, max_bytes=1 << 20, truncate_to=1024)
    d = read_dead_letter(out.headers)
    assert (d.reasons, d.truncated, d.length, d.sha256) == (
        ("not_json",),
        False,
        4,
        hashlib.sha256(b"\x00bad").hexdigest(),
    )
    assert out.headers[-len(forged) :] == forged


def test_several_reasons() -> None:
    why = [InvalidMessage("negative_value", "a", 0), InvalidMessage("bad_timestamp", "b", 3)]
    d = read_dead_letter(fit_dead_letter(_record(b"x"), why, max_bytes=1 << 20, truncate_to=64).headers)
    assert d.reason == "negative_value"
    assert d.reasons == ("bad_timestamp", "negative_value")
    assert d.error == "a; b"


def test_a_dead_letter_too_large_for_its_topic_is_cut_to_fit() -> None:
    value = bytes(range(256)) * 6000  # 1.5 MB
    own = [("trace", b"t" * 100)]
    out = fit_dead_letter(
        _record(value, key=b"k" * 5000, headers=own), WHY, max_bytes=1 << 20, truncate_to=65536
    )
    assert out.truncated
    assert out.value == value[:65536]
    assert out.key == b"k" * 1024
    assert out.headers[-1] == own[0]
    assert _size(out) <= 1 << 20
    d = read_dead_letter(out.headers)
    assert (d.truncated, d.length, d.sha256) == (True, len(value), hashlib.sha256(value).hexdigest())


def test_own_headers_left_off_when_they_alone_do_not_fit() -> None:
    own = [(f"h{i}", b"v" * 10_000) for i in range(20)]  # 200 KB of headers
    out = fit_dead_letter(_record(b"x" * 10, headers=own), WHY, max_bytes=100_000, truncate_to=1024)
    assert out.truncated
    assert all(name.startswith(PREFIX) for name, _ in out.headers)
    assert _size(out) <= 100_000


def test_a_tombstone_dead_letter() -> None:
    out = fit_dead_letter(_record(None, key=None), WHY, max_bytes=1 << 20, truncate_to=1024)
    assert (out.key, out.value, out.truncated) == (None, None, False)
    d = read_dead_letter(out.headers)
    assert (d.length, d.sha256) == (0, None)


def test_a_record_without_our_headers_is_not_a_dead_letter() -> None:
    with pytest.raises(ValueError, match="not a wattstream dead letter"):
        read_dead_letter([("reason", b"x"), ("topic", b"t"), ("partition", b"1"), ("offset", b"2")])
    with pytest.raises(ValueError, match="not a wattstream dead letter"):
        read_dead_letter(None)


def test_error_text_is_bounded() -> None:
    headers = dead_letter_headers(
        reasons=["not_json"], error="é" * 10_000, topic="t", partition=0, offset=0, value=b""
    )
    assert len(dict(headers)["wattstream.error"]) == 4000
    assert read_dead_letter(headers).error.startswith("é")


@pytest.mark.parametrize("max_bytes", [6_000, 20_000, 65_536])
def test_a_cut_dead_letter_always_fits_even_a_small_topic(max_bytes: int) -> None:
    # a dead-letter topic smaller than the truncation size: the value gets what room is left
    own = [("trace", b"t" * 3000)]
    value = b"v" * 200_000
    why = [InvalidMessage("too_large", "e" * 5000)]
    out = fit_dead_letter(
        _record(value, key=b"k" * 4000, headers=own), why, max_bytes=max_bytes, truncate_to=65536
    )
    assert out.truncated
    assert _size(out) <= max_bytes
    assert out.value == value[: len(out.value or b"")]
    assert read_dead_letter(out.headers).length == len(value)
