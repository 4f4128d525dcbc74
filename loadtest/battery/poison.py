"""Poison: what a hostile or careless producer sends, each kind with the dead-letter reason the
contract documents for it (README "The reading message", and the dead-letter contract: the
worker's headers first, under `wattstream.`; `too_large`, `too_deep`; `{"readings": null}` is
`wrong_type`).

Every poison value names a site of its own (`<prefix>-poison`), so a poison reading that got
stored is seen as such; the records are keyed by good sites, so they share partitions (and
batches) with good traffic. `mixed_batch` is the exception: a good batch message with one bad
element appended, whose good readings must still be stored.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.battery.kafka_io import Message

__all__ = ["KINDS", "MIXED_BATCH", "Poison", "PoisonKind", "add_bad_element", "make_poison", "poison_site"]

_TS = "2026-11-02T08:00:00+08:00"
# header names a producer might send that collide with dead-letter headers, old and new
_COLLIDING = (
    "reason",
    "topic",
    "partition",
    "offset",
    "error",
    "reasons",
    "wattstream.reason",
    "wattstream.reasons",
    "wattstream.error",
    "wattstream.origin.topic",
    "wattstream.origin.partition",
    "wattstream.origin.offset",
    "wattstream.origin.length",
    "wattstream.origin.sha256",
    "wattstream.truncated",
)


@dataclass(frozen=True, slots=True)
class Poison:
    """What the dead letter of one poison record must say."""

    kind: str
    reason: str  # `wattstream.reason`
    reasons: frozenset[str] = frozenset()  # every reason, when several (`wattstream.reasons`)


@dataclass(frozen=True, slots=True)
class PoisonKind:
    name: str
    reason: str
    make: Callable[[str, random.Random, int], tuple[bytes | None, tuple[tuple[str, bytes], ...]]]
    weight: float = 1.0  # share of the poison messages, relative
    keyless: bool = False
    reasons: frozenset[str] = frozenset()
    at_topic_limit: bool = False  # sized to the readings topic's own limit, not just over ingest's


def _j(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _ok(site: str, **over: object) -> dict[str, object]:
    reading: dict[str, object] = {"site": site, "meter": "main", "ts": _TS, "energy_kwh": 12.5}
    reading.update(over)
    return {k: v for k, v in reading.items() if v is not _DROP}


_DROP = object()
_Make = Callable[[str, random.Random, int], tuple[bytes | None, tuple[tuple[str, bytes], ...]]]


def _v(fn: Callable[[str], bytes | None]) -> _Make:
    return lambda site, rng, size: (fn(site), ())


def _deep_list(depth: int) -> bytes:
    return b'{"readings":[' + b"[" * depth + b"]" * depth + b"]}"


def _deep_object(depth: int) -> bytes:
    return b'{"readings":[' + b'{"a":' * depth + b"1" + b"}" * depth + b"]}"


def _oversized_single(
    site: str, rng: random.Random, size: int
) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    head = _j(_ok(site))[:-1] + b',"note":"'
    return head + b"x" * (size - len(head) - 2) + b'"}', ()


def _oversized_batch(site: str, rng: random.Random, size: int) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    """Valid readings, far too many of them: stored, they would show as poison readings."""
    one = len(_j(_ok(site, ts=1_790_000_000_000)))
    n = size // (one + 1) + 1
    return _j({"readings": [_ok(site, ts=1_790_000_000_000 + i * 1000) for i in range(n)]}), ()


def _colliding(site: str, rng: random.Random, size: int) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    names = rng.sample(_COLLIDING, rng.randint(3, len(_COLLIDING)))
    headers = tuple((n, f"forged-{rng.randrange(10**6)}".encode()) for n in names)
    return b"\x00\xffnot json", (*headers, ("wattstream.origin.offset", b"0"))


KINDS: tuple[PoisonKind, ...] = (
    PoisonKind("garbage", "not_json", _v(lambda s: b"\x00\xffnot json at all")),
    PoisonKind("truncated", "not_json", _v(lambda s: _j(_ok(s))[:-7])),
    PoisonKind("empty_value", "not_json", _v(lambda s: b"")),
    PoisonKind("tombstone", "not_json", _v(lambda s: None)),
    PoisonKind("raw_nul", "not_json", _v(lambda s: _j(_ok(s)).replace(b'"main"', b'"ma\x00in"'))),
    PoisonKind("invalid_utf8", "not_json", _v(lambda s: _j(_ok(s)).replace(b'"main"', b'"\xff\xfe"'))),
    PoisonKind(
        "invalid_utf8_element",
        "not_json",
        _v(lambda s: _j({"readings": [_ok(s)]}).replace(b'"main"', b'"\xc3\x28"')),
    ),
    PoisonKind("array", "not_an_object", _v(lambda s: b"[1,2,3]")),
    PoisonKind("json_null", "not_an_object", _v(lambda s: b"null")),
    PoisonKind("json_string", "not_an_object", _v(lambda s: b'"a reading"')),
    PoisonKind("null_element", "not_an_object", _v(lambda s: b'{"readings":[null]}')),
    PoisonKind("missing_meter", "missing_field", _v(lambda s: _j(_ok(s, meter=_DROP)))),
    PoisonKind("missing_ts", "missing_field", _v(lambda s: _j(_ok(s, ts=_DROP)))),
    PoisonKind("unknown_field", "unknown_field", _v(lambda s: _j(_ok(s, voltage=230)))),
    PoisonKind(
        "batch_unknown_key", "unknown_field", _v(lambda s: _j({"readings": [_ok(s)], "gateway": "gw-1"}))
    ),
    PoisonKind("string_energy", "wrong_type", _v(lambda s: _j(_ok(s, energy_kwh="12.5")))),
    PoisonKind("numeric_site", "wrong_type", _v(lambda s: _j({**_ok(s), "site": 42}))),
    PoisonKind("readings_null", "wrong_type", _v(lambda s: b'{"readings":null}')),
    PoisonKind("readings_string", "wrong_type", _v(lambda s: b'{"readings":"many"}')),
    PoisonKind("readings_number", "wrong_type", _v(lambda s: b'{"readings":5}')),
    PoisonKind("readings_object", "wrong_type", _v(lambda s: _j({"readings": _ok(s)}))),
    PoisonKind("empty_batch", "empty_batch", _v(lambda s: b'{"readings":[]}')),
    PoisonKind("deep_batch", "too_deep", _v(lambda s: _deep_list(1000))),
    PoisonKind("deep_object_element", "too_deep", _v(lambda s: _deep_object(1000))),
    PoisonKind(
        "deep_field",
        "too_deep",
        _v(lambda s: _j(_ok(s))[:-1] + b',"note":' + b"[" * 1000 + b"]" * 1000 + b"}"),
    ),
    PoisonKind("oversized_single", "too_large", _oversized_single, weight=0.05),
    PoisonKind("oversized_batch", "too_large", _oversized_batch, weight=0.05),
    # as large as the readings topic takes: its dead letter cannot fit the same limit whole
    PoisonKind("topic_limit", "too_large", _oversized_single, weight=0.01, at_topic_limit=True),
    PoisonKind("nan", "non_finite_value", _v(lambda s: _j(_ok(s)).replace(b"12.5", b"NaN"))),
    PoisonKind(
        "infinity", "non_finite_value", _v(lambda s: _j(_ok(s, power_kw=1.0)).replace(b"1.0", b"Infinity"))
    ),
    PoisonKind("overflow", "non_finite_value", _v(lambda s: _j(_ok(s)).replace(b"12.5", b"1e400"))),
    PoisonKind(
        "nan_element",
        "non_finite_value",
        _v(lambda s: _j({"readings": [_ok(s)]}).replace(b"12.5", b"-Infinity")),
    ),
    PoisonKind("negative_energy", "negative_value", _v(lambda s: _j(_ok(s, energy_kwh=-5.0)))),
    PoisonKind("negative_power", "negative_value", _v(lambda s: _j(_ok(s, energy_kwh=_DROP, power_kw=-0.1)))),
    PoisonKind("naive_ts", "naive_timestamp", _v(lambda s: _j(_ok(s, ts="2026-11-02T08:00:00")))),
    PoisonKind("bad_ts_text", "bad_timestamp", _v(lambda s: _j(_ok(s, ts="yesterday at noon")))),
    PoisonKind("bad_ts_date", "bad_timestamp", _v(lambda s: _j(_ok(s, ts="2026-02-30T00:00:00Z")))),
    PoisonKind("future_ts", "future_timestamp", _v(lambda s: _j(_ok(s, ts="2999-01-01T00:00:00Z")))),
    PoisonKind("future_epoch", "future_timestamp", _v(lambda s: _j(_ok(s, ts=4_102_444_800_000)))),
    PoisonKind("ancient_ts", "ancient_timestamp", _v(lambda s: _j(_ok(s, ts="1999-12-31T23:59:59Z")))),
    PoisonKind("epoch_zero", "ancient_timestamp", _v(lambda s: _j(_ok(s, ts=0)))),
    PoisonKind("no_measurement", "no_measurement", _v(lambda s: _j(_ok(s, energy_kwh=_DROP)))),
    PoisonKind(
        "null_measurements", "no_measurement", _v(lambda s: _j(_ok(s, energy_kwh=None, power_kw=None)))
    ),
    PoisonKind("bad_quality", "invalid_value", _v(lambda s: _j(_ok(s, quality="great")))),
    PoisonKind("absurd_register", "invalid_value", _v(lambda s: _j(_ok(s, energy_kwh=1e16)))),
    PoisonKind("space_in_site", "bad_identifier", _v(lambda s: _j(_ok(s + " x")))),
    PoisonKind("newline_in_site", "bad_identifier", _v(lambda s: _j(_ok(s + "\n")))),
    PoisonKind("escaped_nul_in_site", "bad_identifier", _v(lambda s: _j(_ok(s + "\u0000")))),
    PoisonKind("long_meter", "bad_identifier", _v(lambda s: _j(_ok(s, meter="m" * 65)))),
    PoisonKind("empty_site", "bad_identifier", _v(lambda s: _j(_ok("")))),
    PoisonKind("unknown_meter", "unknown_meter", _v(lambda s: _j(_ok(s, meter="never-registered")))),
    PoisonKind("keyless", "negative_value", _v(lambda s: _j(_ok(s, power_kw=-3.0))), keyless=True),
    PoisonKind("colliding_headers", "not_json", _colliding),
    PoisonKind(
        "two_reasons",
        "negative_value",
        _v(lambda s: _j({"readings": [_ok(s, energy_kwh=-1.0), _ok(s, ts="2026-11-02T08:01:00")]})),
        reasons=frozenset({"negative_value", "naive_timestamp"}),
    ),
)
MIXED_BATCH = "mixed_batch"  # a good batch with a bad element: see add_bad_element


def poison_site(prefix: str) -> str:
    """The site every poison value names: readings stored for it are poison that got through."""
    return f"{prefix}-poison"


def add_bad_element(message: Message, site: str) -> Message:
    """A good batch message with a reading of negative energy appended (its good readings stay good)."""
    assert message.value is not None
    body = json.loads(message.value)
    body["readings"].append(_ok(site, energy_kwh=-1.0))
    return Message(message.key, _j(body), message.headers, message.readings)


def make_poison(
    prefix: str, n: int, keys: list[bytes], rng: random.Random, *, oversized_bytes: int, topic_limit: int
) -> list[tuple[Message, Poison]]:
    """`n` poison messages over every kind (weighted), in random order."""
    site = poison_site(prefix)
    total = sum(k.weight for k in KINDS)
    counts = [max(1, int(n * k.weight / total)) for k in KINDS]
    i = 0
    while sum(counts) < n:  # the rest to the light kinds, round robin
        if KINDS[i % len(KINDS)].weight >= 1:
            counts[i % len(KINDS)] += 1
        i += 1
    while sum(counts) > n:
        counts[counts.index(max(counts))] -= 1
    out: list[tuple[Message, Poison]] = []
    for kind, count in zip(KINDS, counts, strict=True):
        for _ in range(count):
            size = topic_limit - 200 if kind.at_topic_limit else oversized_bytes  # a batch of one: ~90 B more
            value, headers = kind.make(site, rng, size)
            key = None if kind.keyless else rng.choice(keys)
            out.append((Message(key, value, headers), Poison(kind.name, kind.reason, kind.reasons)))
    rng.shuffle(out)
    return out
