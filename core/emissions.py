"""A site bucket's emissions from the intensity intervals of its region: which source, how good.

`IntensitySources` holds one region's intensity intervals by source, in preference order
(consumption-based, production-based, the operator's published values). For a bucket
[b0, b1), `match` takes the first source with any interval overlapping the bucket and returns
the overlap-weighted mean: `measured` when the overlaps cover the whole bucket, `estimated`
when they cover part of it. With no overlap in any source, the nearest interval of any source
within the tolerance is used (`nearest:<basis>`, `estimated`); else nothing (`missing`).

`bucket_emission` turns a bucket's energy and its match into the stored figures, falling back
to the region's official annual grid factor (`fallback`) where nothing matched, and giving
the residual factor for market-based emissions (the official residual factor where a table has
one, else the location-based intensity, as the GHG Protocol's Scope 2 guidance allows where no
residual mix is published).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from core.errors import InvalidInput
from schemas.vocabulary import EmissionQuality

__all__ = [
    "MAX_INTERVAL_US",
    "BucketEmission",
    "IntensitySources",
    "Match",
    "SourceSeries",
    "bucket_emission",
]

MAX_INTERVAL_US: Final = 86_400 * 1_000_000  # the longest interval a grid record may have


@dataclass(frozen=True, slots=True)
class SourceSeries:
    """One source's intervals: [start, end) in epoch µs, sorted by start, with g/kWh."""

    basis: str
    factor_set: str
    start_us: NDArray[np.int64]
    end_us: NDArray[np.int64]
    g_per_kwh: NDArray[np.float64]

    @classmethod
    def of(
        cls,
        basis: str,
        factor_set: str,
        start_us: Sequence[int],
        interval_s: Sequence[int],
        g_per_kwh: Sequence[float],
    ) -> SourceSeries:
        start = np.asarray(start_us, dtype=np.int64)
        order = np.argsort(start, kind="stable")
        length = np.asarray(interval_s, dtype=np.int64)[order] * 1_000_000
        if len(length) and (length.min() <= 0 or length.max() > MAX_INTERVAL_US):
            raise InvalidInput(f"intervals must be 1 s to {MAX_INTERVAL_US // 1_000_000} s long")
        start = start[order]
        return cls(basis, factor_set, start, start + length, np.asarray(g_per_kwh, dtype=np.float64)[order])


@dataclass(frozen=True, slots=True)
class Match:
    g_per_kwh: float | None
    source: str | None  # the basis, or nearest:<basis>
    quality: EmissionQuality
    factor_set: str | None


_MISSING: Final = Match(None, None, "missing", None)


class IntensitySources:
    """One region's intensity intervals near some buckets, by source, in preference order."""

    def __init__(self, series: Sequence[SourceSeries]) -> None:
        self._series = [s for s in series if len(s.start_us)]

    def match(self, b0: int, b1: int, tolerance_us: int) -> Match:
        """The intensity of the bucket [b0, b1) (see the module docstring)."""
        if b1 <= b0:
            raise InvalidInput(f"empty bucket [{b0}, {b1})")
        for s in self._series:
            # sorted by start, no interval longer than a day: those starting in [b0 - a day, b1)
            # are the only ones that can overlap the bucket
            hi = int(np.searchsorted(s.start_us, b1, side="left"))
            lo = int(np.searchsorted(s.start_us, b0 - MAX_INTERVAL_US, side="left"))
            overlap = np.clip(np.minimum(s.end_us[lo:hi], b1) - np.maximum(s.start_us[lo:hi], b0), 0, None)
            covered = int(overlap.sum())
            if covered > 0:
                mean = float((overlap * s.g_per_kwh[lo:hi]).sum() / covered)
                return Match(mean, s.basis, "measured" if covered >= b1 - b0 else "estimated", s.factor_set)
        best: tuple[int, float, str, str] | None = None
        for s in self._series:
            k0 = int(np.searchsorted(s.start_us, b0, side="left"))
            for k in (k0 - 1, k0):  # the nearest before and after the bucket
                if 0 <= k < len(s.start_us):
                    gap = int(max(s.start_us[k] - b1, b0 - s.end_us[k]))
                    if gap <= tolerance_us and (best is None or gap < best[0]):
                        best = (gap, float(s.g_per_kwh[k]), s.basis, s.factor_set)
        if best is not None:
            return Match(best[1], f"nearest:{best[2]}", "estimated", best[3])
        return _MISSING


@dataclass(frozen=True, slots=True)
class BucketEmission:
    g_per_kwh: float | None
    co2e_kg: float | None
    residual_g_per_kwh: float | None
    factor_set: str | None
    source: str | None
    quality: EmissionQuality


def bucket_emission(
    kwh: float,
    match: Match,
    *,
    annual: tuple[float, str] | None,
    annual_table: str | None,
    residual: tuple[float, str] | None,
) -> BucketEmission:
    """A bucket's emissions from its match; `annual` is the region's official (g/kWh, source)
    for the bucket's year and `residual` its residual factor, where a table covers them."""
    value, source, quality, used = match.g_per_kwh, match.source, match.quality, match.factor_set
    if value is None and annual is not None:
        value, source, quality, used = annual[0], annual[1], "fallback", annual_table
    residual_value = residual[0] if residual is not None else value
    if value is None:
        return BucketEmission(None, None, residual_value, used, source, "missing")
    return BucketEmission(value, kwh * value / 1000.0, residual_value, used, source, quality)
