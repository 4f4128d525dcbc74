"""The reading message (`wattstream.readings.v1`): one reading, or `{"readings": [...]}`.

Decoding is strict and total: every value either becomes a `Reading` or an `InvalidMessage`
naming a reason from `REASONS`, which the ingest worker puts on the dead-letter record.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec

from schemas.timeutil import to_epoch_us
from schemas.vocabulary import ReadingQuality

__all__ = [
    "IDENTIFIER_STRICT",
    "REASONS",
    "InvalidMessage",
    "Reading",
    "ReadingBatch",
    "ReadingDecoder",
    "ValidReading",
    "classify_error",
    "encode_reading",
    "malformed_error",
    "too_deep_error",
]

IDENTIFIER: Final = r"^\w[\w.:\-]{0,63}$"
# msgspec matches with Python's `re`, where `$` also matches before a trailing newline ("a\n"
# would pass); `\Z` is the true end there, but pydantic's Rust regex (IDENTIFIER's other users)
# rejects `\Z`, so only the decoder gets this form.
IDENTIFIER_STRICT: Final = IDENTIFIER.removesuffix("$") + r"\Z"
_Id = Annotated[str, msgspec.Meta(pattern=IDENTIFIER_STRICT, description="site or meter id")]
# msgspec turns JSON numbers past float range into "Number out of range"; the upper bound
# also keeps absurd registers out (1e15 kWh is more than the world uses in a decade).
_Kwh = Annotated[float, msgspec.Meta(ge=0.0, lt=1e15)]
_Kw = Annotated[float, msgspec.Meta(ge=0.0, lt=1e12)]

REASONS: Final = (
    "not_json",
    "not_an_object",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "bad_identifier",
    "bad_timestamp",
    "naive_timestamp",
    "future_timestamp",
    "ancient_timestamp",
    "negative_value",
    "non_finite_value",
    "no_measurement",
    "invalid_value",
    "empty_batch",
    "unknown_meter",
    "too_large",
    "too_deep",
    "processing_failed",
)
Reason = str


class Reading(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One meter reading. `ts` is RFC 3339 with an offset, or epoch milliseconds."""

    site: _Id
    meter: _Id
    ts: datetime | int
    energy_kwh: _Kwh | None = None
    power_kw: _Kw | None = None
    quality: ReadingQuality = "ok"


class _StrictReading(Reading, frozen=True, forbid_unknown_fields=True):
    pass


class ReadingBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Many readings in one Kafka record; each element is validated on its own."""

    readings: list[msgspec.Raw]


@dataclass(frozen=True, slots=True)
class InvalidMessage:
    """Why a value (or one element of a batch) was refused."""

    reason: Reason
    error: str
    index: int | None = None  # element of a batch, None for a single reading


@dataclass(frozen=True, slots=True)
class ValidReading:
    """A reading that passed every check, with its time as UTC epoch microseconds."""

    site: str
    meter: str
    ts_us: int
    energy_kwh: float | None
    power_kw: float | None
    quality: str


_NON_FINITE = re.compile(rb"(?<![\w\"])-?(NaN|Infinity|inf)(?![\w\"])")


def classify_error(exc: msgspec.ValidationError) -> InvalidMessage:
    text = str(exc)
    if text.startswith("Expected `object`"):
        reason = "not_an_object"
    elif text.startswith("Object missing required field"):
        reason = "missing_field"
    elif text.startswith("Object contains unknown field"):
        reason = "unknown_field"
    elif "Number out of range" in text:
        reason = "non_finite_value"
    elif "matching regex" in text:
        reason = "bad_identifier"
    elif "RFC3339" in text:
        reason = "bad_timestamp"
    elif ">= 0.0" in text:
        reason = "negative_value"
    elif text.startswith(("Expected `float` <", "Invalid enum value")):
        reason = "invalid_value"
    else:
        reason = "wrong_type"
    return InvalidMessage(reason, text)


def too_deep_error(exc: RecursionError) -> InvalidMessage:
    """msgspec recurses once per level of nesting it builds or skips, up to Python's limit."""
    return InvalidMessage("too_deep", f"JSON nested too deep to decode: {exc}")


def malformed_error(
    raw: bytes | msgspec.Raw, exc: msgspec.DecodeError | UnicodeDecodeError
) -> InvalidMessage:
    if _NON_FINITE.search(bytes(raw)):
        return InvalidMessage("non_finite_value", f"NaN or Infinity is not a number: {exc}")
    return InvalidMessage("not_json", str(exc))


class ReadingDecoder:
    """Decodes Kafka record values into readings; never raises on bad input.

    `unknown_fields="reject"` refuses readings carrying fields the schema does not know;
    `"ignore"` drops such fields. Timestamps outside [earliest, now + max_future_s] are refused.
    """

    def __init__(
        self,
        *,
        unknown_fields: Literal["reject", "ignore"] = "reject",
        max_future_s: float = 86_400.0,
        earliest: datetime = datetime(2000, 1, 1, tzinfo=UTC),
    ) -> None:
        if earliest.tzinfo is None:
            raise ValueError("earliest must be timezone-aware")
        reading_type = _StrictReading if unknown_fields == "reject" else Reading
        self._reading = msgspec.json.Decoder(reading_type)
        self._batch = msgspec.json.Decoder(ReadingBatch)
        self._max_future_us = int(max_future_s * 1_000_000)
        self._earliest_us = to_epoch_us(earliest)

    def decode(self, value: bytes | None, now: datetime) -> tuple[list[ValidReading], list[InvalidMessage]]:
        """All readings of one record value, and what was wrong with the rest."""
        if value is None:
            return [], [InvalidMessage("not_json", "record has no value (tombstone)")]
        now_us = to_epoch_us(now)
        if b'"readings"' in value:
            try:
                batch = self._batch.decode(value)
            except RecursionError as exc:
                return [], [too_deep_error(exc)]
            except msgspec.ValidationError as exc:
                if str(exc).endswith("- at `$.readings`"):
                    # `{"readings": null}` (or a string, number, object): a batch whose list is
                    # not a list; judged as a reading it would be refused for an unknown field
                    return [], [InvalidMessage("wrong_type", f"`readings` must be a list: {exc}")]
                # JSON, but not a batch after all: judge it as a single reading below
            # msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8 in a string
            # it has to build (a key, or a str field): that is malformed JSON too.
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                # Malformed JSON: judged as a single reading, a batch with one NaN element
                # would be refused for its `readings` key (unknown_field) instead.
                return [], [malformed_error(value, exc)]
            else:
                if not batch.readings:
                    return [], [InvalidMessage("empty_batch", "`readings` is an empty list")]
                good: list[ValidReading] = []
                bad: list[InvalidMessage] = []
                for i, element in enumerate(batch.readings):
                    ok, err = self._one(element, now_us)
                    if ok is not None:
                        good.append(ok)
                    elif err is not None:
                        bad.append(InvalidMessage(err.reason, f"readings[{i}]: {err.error}", i))
                return good, bad
        ok, err = self._one(value, now_us)
        return ([ok], []) if ok is not None else ([], [err] if err is not None else [])

    def _one(
        self, raw: bytes | msgspec.Raw, now_us: int
    ) -> tuple[ValidReading | None, InvalidMessage | None]:
        try:
            r = self._reading.decode(raw)
        except RecursionError as exc:
            return None, too_deep_error(exc)
        except msgspec.ValidationError as exc:
            return None, classify_error(exc)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return None, malformed_error(raw, exc)
        if r.energy_kwh is None and r.power_kw is None:
            return None, InvalidMessage(
                "no_measurement", "at least one of energy_kwh and power_kw is required"
            )
        for name, v in (("energy_kwh", r.energy_kwh), ("power_kw", r.power_kw)):
            if v is not None and not math.isfinite(v):
                return None, InvalidMessage("non_finite_value", f"{name} is not finite")
        if isinstance(r.ts, int):
            ts_us = r.ts * 1000
        elif r.ts.tzinfo is None:
            return None, InvalidMessage("naive_timestamp", f"ts {r.ts.isoformat()} has no UTC offset")
        else:
            ts_us = to_epoch_us(r.ts)
        if ts_us > now_us + self._max_future_us:
            return None, InvalidMessage(
                "future_timestamp", f"ts is more than {self._max_future_us // 1_000_000} s ahead"
            )
        if ts_us < self._earliest_us:
            return None, InvalidMessage("ancient_timestamp", "ts is before the earliest accepted reading")
        return ValidReading(r.site, r.meter, ts_us, r.energy_kwh, r.power_kw, r.quality), None


_encoder = msgspec.json.Encoder()


def encode_reading(reading: Reading | list[Reading]) -> bytes:
    """The wire form of one reading, or of a batch when given a list."""
    if isinstance(reading, list):
        return _encoder.encode({"readings": reading})
    return _encoder.encode(reading)
