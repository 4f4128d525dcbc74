"""The dead-letter record (`wattstream.deadletter.v1`): the original key and value, and why.

Its headers are the worker's first, every name under the reserved prefix `wattstream.`, then the
record's own headers exactly as they came, in their order. A producer may send headers with any
names, ours included; a reader takes the first header of a name and so always gets the worker's
(`read_dead_letter`). The worker's headers:

| header | value |
|---|---|
| `wattstream.reason` | the first reason (`schemas.messages.REASONS`, plus the grid's) |
| `wattstream.reasons` | every reason, comma-separated, sorted |
| `wattstream.error` | what was wrong, for people (at most 4,000 bytes) |
| `wattstream.origin.topic`, `.partition`, `.offset` | where the record was read: de-duplicate on these |
| `wattstream.origin.length`, `.sha256` | the original value's length, SHA-256 (hex; empty: a tombstone) |
| `wattstream.truncated` | `true` when any of the value, key or own headers is cut short, else `false` |

Every one of them is on every dead letter, so none can be stood in for by a producer's header of
the same name (a header the worker wrote only sometimes would leave a forged one first).

A dead letter that would not fit the dead-letter topic's `max.message.bytes` is cut to fit: at
most 1 KiB of its key, its own headers left off if they do not fit, and as much of its value as
the room left allows, at most `WATTSTREAM_DEADLETTER_TRUNCATE_BYTES` (64 KiB by default); the
whole record is kept in the database table `dead_letter_records` first, keyed by the same origin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ERROR",
    "MAX_ERROR_BYTES",
    "ORIGIN_LENGTH",
    "ORIGIN_OFFSET",
    "ORIGIN_PARTITION",
    "ORIGIN_SHA256",
    "ORIGIN_TOPIC",
    "PREFIX",
    "REASON",
    "REASONS",
    "TRUNCATED",
    "DeadLetter",
    "dead_letter_headers",
    "read_dead_letter",
]

PREFIX: Final = "wattstream."
REASON: Final = "wattstream.reason"
REASONS: Final = "wattstream.reasons"
ERROR: Final = "wattstream.error"
ORIGIN_TOPIC: Final = "wattstream.origin.topic"
ORIGIN_PARTITION: Final = "wattstream.origin.partition"
ORIGIN_OFFSET: Final = "wattstream.origin.offset"
ORIGIN_LENGTH: Final = "wattstream.origin.length"
ORIGIN_SHA256: Final = "wattstream.origin.sha256"
TRUNCATED: Final = "wattstream.truncated"
MAX_ERROR_BYTES: Final = 4000

Header = tuple[str, bytes]


def dead_letter_headers(
    *,
    reasons: Sequence[str],
    error: str,
    topic: str,
    partition: int,
    offset: int,
    value: bytes | None,
    truncated: bool = False,
) -> list[Header]:
    """The worker's headers of one dead letter of the record value `value` (the original, whole)."""
    if not reasons:
        raise ValueError("a dead letter needs at least one reason")
    return [
        (REASON, reasons[0].encode()),
        (REASONS, ",".join(sorted(set(reasons))).encode()),
        (ERROR, error.encode(errors="replace")[:MAX_ERROR_BYTES]),
        (ORIGIN_TOPIC, topic.encode()),
        (ORIGIN_PARTITION, str(partition).encode()),
        (ORIGIN_OFFSET, str(offset).encode()),
        (ORIGIN_LENGTH, str(len(value or b"")).encode()),
        (ORIGIN_SHA256, b"" if value is None else hashlib.sha256(value).hexdigest().encode()),
        (TRUNCATED, b"true" if truncated else b"false"),
    ]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a dead letter's headers say, read as a consumer of the topic should."""

    reason: str
    reasons: tuple[str, ...]
    error: str
    topic: str
    partition: int
    offset: int
    truncated: bool
    length: int  # the original value's length
    sha256: str | None  # its SHA-256 (hex); None for a tombstone

    @property
    def origin(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset


def read_dead_letter(headers: Sequence[Header] | None) -> DeadLetter:
    """The worker's headers of a dead letter (the first of each name). Raises ValueError when
    they are missing: the record did not come from a wattstream worker."""
    first: dict[str, bytes] = {}
    for name, value in headers or ():
        first.setdefault(name, value)
    try:
        reason = first[REASON].decode()
        origin = (
            first[ORIGIN_TOPIC].decode(),
            int(first[ORIGIN_PARTITION]),
            int(first[ORIGIN_OFFSET]),
        )
        reasons = tuple(first[REASONS].decode().split(","))
        length = int(first[ORIGIN_LENGTH])
        sha256 = first[ORIGIN_SHA256].decode() or None
        truncated = {b"true": True, b"false": False}[first[TRUNCATED]]
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a wattstream dead letter: {exc}") from exc
    return DeadLetter(
        reason=reason,
        reasons=reasons,
        error=first.get(ERROR, b"").decode(errors="replace"),
        topic=origin[0],
        partition=origin[1],
        offset=origin[2],
        truncated=truncated,
        length=length,
        sha256=sha256,
    )
