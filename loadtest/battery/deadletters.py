"""The dead-letter topic read as its consumers must read it, against the poison that was sent.

The contract (the worker's headers first, each name under `wattstream.`; a reader takes the
first header of a name, so a producer's forged header never wins; the record's own headers
follow unchanged; a truncated value carries the original's length and SHA-256) is read here
from the record headers directly, not through the platform's helpers.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from loadtest.battery.kafka_io import Message
from loadtest.battery.poison import Poison

__all__ = ["DeadLetterCheck", "check_dead_letters"]

_ORIGIN = ("wattstream.origin.topic", "wattstream.origin.partition", "wattstream.origin.offset")


@dataclass
class DeadLetterCheck:
    expected: int = 0
    found: int = 0  # distinct expected origins present
    records: int = 0  # dead-letter records read (repeats included)
    truncated: int = 0  # carried cut short, with the original's length and hash
    unreadable: int = 0  # without the worker's origin headers
    unexpected: int = 0  # distinct origins nobody expected (a good message dead-lettered, a wrong origin)
    missing: Counter[str] = field(default_factory=Counter)  # by kind
    wrong_reason: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    wrong_bytes: Counter[str] = field(default_factory=Counter)
    wrong_headers: Counter[str] = field(default_factory=Counter)
    forged_first: Counter[str] = field(default_factory=Counter)  # by header name
    examples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = []
        if self.missing:
            out.append(
                f"{sum(self.missing.values()):,} of {self.expected:,} poison origins missing from the "
                f"dead-letter topic, by kind: {_counts(self.missing)}"
            )
        if self.wrong_reason:
            detail = "; ".join(f"{kind} → {_counts(got)}" for kind, got in sorted(self.wrong_reason.items()))
            out.append(f"dead letters with another reason than documented: {detail}")
        if self.unexpected:
            out.append(f"{self.unexpected:,} dead-lettered origins that were not poison")
        if self.unreadable:
            out.append(f"{self.unreadable:,} dead letters without wattstream.origin.* headers")
        if self.wrong_bytes:
            out.append(f"dead letters whose key or value is not the original's: {_counts(self.wrong_bytes)}")
        if self.wrong_headers:
            out.append(
                "dead letters whose own headers were not kept after the worker's: "
                + _counts(self.wrong_headers)
            )
        if self.forged_first:
            out.append(
                "a producer's own wattstream.* header is the first of its name on the dead letter (the "
                "worker wrote none of that name), so a reader takes it for the worker's: "
                + _counts(self.forged_first)
            )
        if out and self.examples:
            out.append("for example: " + "; ".join(self.examples[:5]))
        return out


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.most_common())


def _first(headers: Sequence[tuple[str, bytes]]) -> dict[str, bytes]:
    first: dict[str, bytes] = {}
    for name, value in headers:
        first.setdefault(name, value)
    return first


def check_dead_letters(
    records: Sequence[ConsumerRecord],
    topic: str,
    expected: dict[tuple[int, int], tuple[Message, Poison]],
) -> DeadLetterCheck:
    c = DeadLetterCheck(expected=len(expected), records=len(records))
    by_origin: dict[tuple[int, int], ConsumerRecord] = {}
    unexpected: set[tuple[str, int, int]] = set()
    for rec in records:
        h = _first(rec.headers or ())
        try:
            origin = (h[_ORIGIN[0]].decode(), int(h[_ORIGIN[1]]), int(h[_ORIGIN[2]]))
        except (KeyError, ValueError, UnicodeDecodeError):
            c.unreadable += 1
            continue
        if origin[0] != topic or origin[1:] not in expected:
            unexpected.add(origin)
            continue
        by_origin.setdefault(origin[1:], rec)  # a repeat (a crash between ack and commit) is the same
    c.unexpected = len(unexpected)
    for where, (sent, poison) in expected.items():
        rec = by_origin.get(where)
        if rec is None:
            c.missing[poison.kind] += 1
            continue
        c.found += 1
        h = _first(rec.headers or ())
        reason = h.get("wattstream.reason", b"").decode(errors="replace")
        reasons = set(h.get("wattstream.reasons", reason.encode()).decode(errors="replace").split(","))
        if reason != poison.reason or not poison.reasons <= reasons:
            got = reason + (f" ({','.join(sorted(reasons))})" if poison.reasons else "")
            c.wrong_reason[poison.kind][got or "(none)"] += 1
        problem = _bytes_problem(rec, sent, h)
        c.truncated += problem is None and rec.value != sent.value and bool(sent.value)
        if problem:
            c.wrong_bytes[poison.kind] += 1
            if len(c.examples) < 5:
                c.examples.append(f"{poison.kind} at {where}: {problem}")
        own = list(sent.headers)
        if own and rec.value == sent.value and list(rec.headers or ())[-len(own) :] != own:
            c.wrong_headers[poison.kind] += 1
            if len(c.examples) < 5:
                c.examples.append(f"{poison.kind} at {where}: headers {list(rec.headers or ())[:8]}")
        for name, value in own:  # a reader must never take the producer's header for the worker's
            if name.startswith("wattstream.") and h.get(name) == value:
                c.forged_first[name] += 1
    return c


def _bytes_problem(rec: ConsumerRecord, sent: Message, h: dict[str, bytes]) -> str | None:
    """None when the dead letter carries the original key and value, or a truncation of them that
    says the original's length and SHA-256."""
    original = sent.value
    if rec.key == sent.key and (rec.value == original or (original is None and rec.value == b"")):
        return None
    whole = original or b""
    value = rec.value or b""
    try:
        length = int(h["wattstream.origin.length"])
        sha = h["wattstream.origin.sha256"].decode()
    except (KeyError, ValueError, UnicodeDecodeError):
        if rec.key != sent.key:
            return f"key {rec.key!r} (sent {sent.key!r})"
        return f"value of {len(value)} bytes differs from the {len(whole)} sent, and no truncation headers"
    if length != len(whole) or sha != hashlib.sha256(whole).hexdigest() or not whole.startswith(value):
        return f"truncated value: length {length} (sent {len(whole)}), sha256 {sha[:12]}…"
    if rec.key is not None and sent.key is not None and not sent.key.startswith(rec.key):
        return "key is not the original's"
    return None
