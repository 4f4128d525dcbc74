"""The grid record (`wattstream.grid.v1`, keyed by region): a generation mix, or a published intensity.

A **mix** gives generation by fuel (MW, the mean over the interval starting at `ts`), with the
region's imports and exports by neighbour:

    {"region": "CN-ZJ", "ts": "2026-11-24T10:15:00+08:00", "interval_s": 300,
     "generation_mw": {"coal": 31000, "gas.ccgt": 2100, "nuclear": 9000, "battery": -40},
     "imports_mw": {"CN-SH": 1200}, "exports_mw": {}, "emissions_t_per_h": 2.9e4, "revision": 0}

A **published intensity** is for regions whose operator publishes intensity only:

    {"region": "GB", "ts": "...", "interval_s": 1800, "intensity_g_per_kwh": 182, "kind": "actual"}

Fuels are one vocabulary (`FUELS`), optionally refined by a technology after a dot
(`gas.ccgt`); negative generation is storage charging and is allowed only for storage fuels.
`emissions_t_per_h`, where the operator publishes it, is kept as the `publisher` factor set.
A later `revision` of the same (region, ts) restates the earlier one. `interval_s` defaults
to 3600 when absent. Decoding never raises: every value becomes records or `InvalidMessage`s
with reasons from `schemas.messages.REASONS` plus `GRID_REASONS`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from schemas.messages import (
    IDENTIFIER_STRICT,
    InvalidMessage,
    classify_error,
    malformed_error,
    too_deep_error,
)
from schemas.timeutil import to_epoch_us

__all__ = [
    "FUELS",
    "GRID_REASONS",
    "STORAGE_FUELS",
    "GridDecoder",
    "GridIntensity",
    "GridMix",
    "GridRecord",
    "encode_grid_record",
    "fuel_of",
]

FUELS: Final = (
    "coal",
    "gas",
    "oil",
    "nuclear",
    "hydro",
    "wind",
    "solar",
    "biomass",
    "geothermal",
    "hydro_storage",
    "battery",
    "unknown",
)
STORAGE_FUELS: Final = frozenset({"hydro_storage", "battery"})
GRID_REASONS: Final = ("unknown_fuel", "no_generation", "bad_region", "ambiguous_record")
_FUEL_RE: Final = re.compile(r"(?P<fuel>[a-z_]+)(?:\.(?P<tech>[a-z0-9_]{1,32}))?\Z")
_FUEL_SET: Final = frozenset(FUELS)

_Region = Annotated[str, msgspec.Meta(pattern=IDENTIFIER_STRICT, description="grid region id")]
_Mw = Annotated[float, msgspec.Meta(gt=-1e7, lt=1e7)]
_Flow = Annotated[float, msgspec.Meta(ge=0.0, lt=1e7)]
_Interval = Annotated[int, msgspec.Meta(ge=60, le=86_400)]


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Both record kinds in one struct: which fields are present decides the kind."""

    region: _Region
    ts: datetime | int
    interval_s: _Interval = 3600
    generation_mw: dict[str, _Mw] | None = None
    imports_mw: dict[_Region, _Flow] = {}
    exports_mw: dict[_Region, _Flow] = {}
    emissions_t_per_h: Annotated[float, msgspec.Meta(ge=0.0, lt=1e9)] | None = None
    intensity_g_per_kwh: Annotated[float, msgspec.Meta(ge=0.0, lt=1e5)] | None = None
    kind: Literal["actual", "forecast"] | None = None
    revision: Annotated[int, msgspec.Meta(ge=0, lt=2**31)] = 0


@dataclass(frozen=True, slots=True)
class GridMix:
    region: str
    ts_us: int
    interval_s: int
    generation_mw: dict[str, float]
    imports_mw: dict[str, float]
    exports_mw: dict[str, float]
    emissions_t_per_h: float | None
    revision: int


@dataclass(frozen=True, slots=True)
class GridIntensity:
    region: str
    ts_us: int
    interval_s: int
    intensity_g_per_kwh: float
    kind: Literal["actual", "forecast"]
    revision: int


GridRecord = GridMix | GridIntensity


def fuel_of(key: str) -> str | None:
    """The vocabulary fuel of a generation key (`gas.ccgt` -> `gas`), or None if it is not one."""
    m = _FUEL_RE.match(key)
    if m is None or m["fuel"] not in _FUEL_SET:
        return None
    return m["fuel"]


class GridDecoder:
    """Decodes grid record values; never raises on bad input. Times outside
    [earliest, now + max_future_s] are refused, except forecasts, which may be ahead by
    `max_forecast_s`."""

    def __init__(self, *, max_future_s: float, max_forecast_s: float, earliest: datetime) -> None:
        self._wire = msgspec.json.Decoder(_Wire)
        self._max_future_us = int(max_future_s * 1e6)
        self._max_forecast_us = int(max_forecast_s * 1e6)
        self._earliest_us = to_epoch_us(earliest)

    def decode(self, value: bytes | None, now: datetime) -> tuple[GridRecord | None, InvalidMessage | None]:
        if value is None:
            return None, InvalidMessage("not_json", "record has no value (tombstone)")
        try:
            w = self._wire.decode(value)
        except RecursionError as exc:
            return None, too_deep_error(exc)
        except msgspec.ValidationError as exc:
            return None, classify_error(exc)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            return None, malformed_error(value, exc)
        if isinstance(w.ts, int):
            ts_us = w.ts * 1000
        elif w.ts.tzinfo is None:
            return None, InvalidMessage("naive_timestamp", f"ts {w.ts.isoformat()} has no UTC offset")
        else:
            ts_us = to_epoch_us(w.ts)
        if ts_us < self._earliest_us:
            return None, InvalidMessage("ancient_timestamp", "ts is before the earliest accepted record")
        ahead = self._max_forecast_us if w.kind == "forecast" else self._max_future_us
        if ts_us > to_epoch_us(now) + ahead:
            return None, InvalidMessage("future_timestamp", f"ts is more than {ahead // 1_000_000} s ahead")
        if w.generation_mw is not None:
            if w.intensity_g_per_kwh is not None or w.kind is not None:
                return None, InvalidMessage(
                    "ambiguous_record", "a record is a mix (generation_mw) or an intensity, not both"
                )
            return self._mix(w, ts_us)
        if w.intensity_g_per_kwh is None:
            return None, InvalidMessage(
                "missing_field", "a grid record needs generation_mw or intensity_g_per_kwh"
            )
        if w.imports_mw or w.exports_mw or w.emissions_t_per_h is not None:
            return None, InvalidMessage(
                "ambiguous_record", "imports, exports and emissions belong to a mix (generation_mw)"
            )
        return (
            GridIntensity(
                w.region, ts_us, w.interval_s, w.intensity_g_per_kwh, w.kind or "actual", w.revision
            ),
            None,
        )

    @staticmethod
    def _mix(w: _Wire, ts_us: int) -> tuple[GridRecord | None, InvalidMessage | None]:
        generation = w.generation_mw or {}
        for key, mw in generation.items():
            fuel = fuel_of(key)
            if fuel is None:
                return None, InvalidMessage(
                    "unknown_fuel", f"generation_mw key {key!r} is not a fuel of {', '.join(FUELS)}"
                )
            if mw < 0 and fuel not in STORAGE_FUELS:
                return None, InvalidMessage(
                    "negative_value", f"generation_mw.{key} is negative; only storage may charge"
                )
            if not math.isfinite(mw):
                return None, InvalidMessage("non_finite_value", f"generation_mw.{key} is not finite")
        if not any(mw > 0 for mw in generation.values()):
            return None, InvalidMessage("no_generation", "generation_mw has no positive generation")
        for side in (w.imports_mw, w.exports_mw):
            if w.region in side:
                return None, InvalidMessage("bad_region", f"region {w.region} exchanges with itself")
        return (
            GridMix(
                w.region,
                ts_us,
                w.interval_s,
                dict(generation),
                dict(w.imports_mw),
                dict(w.exports_mw),
                w.emissions_t_per_h,
                w.revision,
            ),
            None,
        )


_encoder = msgspec.json.Encoder()


def encode_grid_record(record: dict[str, object]) -> bytes:
    """The wire form of a grid record given as a dict of its JSON fields."""
    return _encoder.encode(record)
