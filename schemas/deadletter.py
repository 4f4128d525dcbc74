"""The dead-letter record (`wattstream.deadletter.v1`): the original key and value, and why.

Its headers are the worker's first, every name under the reserved prefix `wattstream.`, then the
record's own headers exactly as they came, in their order. A producer may send headers with any
names, ours included; a reader takes the first header of a name and so always gets the worker's
(`read_dead_letter`). The worker's headers:

| header | value |
|---|---|
| `wattstream.reason` | the first reason (`schemas.messages.REASONS`, plus the grid's) |
| `wattstream.reasons` | every reason, comma-separated, sorted; only when there are several |
| `wattstream.error` | what was wrong, for people (at most 4,000 bytes) |
| `wattstream.origin.topic`, `.partition`, `.offset` | where the record was read: de-duplicate on these |
| `wattstream.origin.length`, `.sha256` | the original value's length and SHA-256 (hex), when truncated |
| `wattstream.truncated` | `true` when the value (and perhaps key and headers) is cut short |

A dead letter that would not fit the dead-letter topic's `max.message.bytes` carries the first
`WATTSTREAM_DEADLETTER_TRUNCATE_BYTES` of its value (64 KiB by default) and at most 1 KiB of its
key, and its own headers are left off if they still do not fit; the whole record is kept in the
database table `dead_letter_records` first, keyed by the same origin.
"""

from __future__ import annotations

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
    truncated_from: tuple[int, str] | None = None,
) -> list[Header]:
    """The worker's headers of one dead letter; `truncated_from` is the original value's
    (length, sha256 hex) when the value carried is cut short."""
    if not reasons:
        raise ValueError("a dead letter needs at least one reason")
    headers: list[Header] = [
        (REASON, reasons[0].encode()),
        (ERROR, error.encode(errors="replace")[:MAX_ERROR_BYTES]),
        (ORIGIN_TOPIC, topic.encode()),
        (ORIGIN_PARTITION, str(partition).encode()),
        (ORIGIN_OFFSET, str(offset).encode()),
    ]
    if len(set(reasons)) > 1:
        headers.append((REASONS, ",".join(sorted(set(reasons))).encode()))
    if truncated_from is not None:
        length, sha256 = truncated_from
        headers += [
            (TRUNCATED, b"true"),
            (ORIGIN_LENGTH, str(length).encode()),
            (ORIGIN_SHA256, sha256.encode()),
        ]
    return headers


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
    length: int | None  # the original value's length, when truncated
    sha256: str | None

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
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a wattstream dead letter: {exc}") from exc
    reasons = tuple(first[REASONS].decode().split(",")) if REASONS in first else (reason,)
    truncated = first.get(TRUNCATED) == b"true"
    return DeadLetter(
        reason=reason,
        reasons=reasons,
        error=first.get(ERROR, b"").decode(errors="replace"),
        topic=origin[0],
        partition=origin[1],
        offset=origin[2],
        truncated=truncated,
        length=int(first[ORIGIN_LENGTH]) if truncated and ORIGIN_LENGTH in first else None,
        sha256=first[ORIGIN_SHA256].decode() if truncated and ORIGIN_SHA256 in first else None,
    )
