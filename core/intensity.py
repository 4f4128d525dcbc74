"""Grid carbon intensity from generation mixes: production-based, shares, and flow tracing.

**Production-based intensity** of one interval is Σ(MW × factor) / Σ(MW) over the columns that
count as generation, in gCO2(eq)/kWh when factors are (1 t/MWh = 1000 g/kWh; MW cancel):

- a column's MW ≤ 0 never counts: negative generation is storage charging, not generation;
- a **storage** column (battery, pumped hydro) discharging counts only where the factor set
  gives it a factor (Electricity Maps' zone files do, from the charging mix); where its
  factor is NaN, discharge is re-delivery of energy at the mix's own intensity, so it is left
  out of both sums and the intensity is that of the primary generation;
- any other column must have a finite factor (the caller falls a technology back to its fuel
  and a fuel to `unknown`); a NaN factor there is an error.

**Shares** are of primary generation (storage excluded): fossil (coal, gas, oil), renewable
(hydro, wind, solar, biomass, geothermal) and non-fossil = renewable + nuclear. Unknown
generation is in the denominator and in neither, so fossil + non-fossil + unknown = 1.

**Consumption-based intensity** follows power through the exchange network (flow tracing:
every region is a perfectly mixed pool). For region i at one timestamp, with production P_i
at production intensity c_i and imports F_ji from each neighbour j:

    x_i (P_i + Σ_j F_ji) = c_i P_i + Σ_j F_ji x_j

one linear equation per region; exports leave at x_i and do not change it. A neighbour whose
mix is not known at that timestamp is *external*: its x_j is a fixed fallback value given by
the caller (and the caller flags the result). The system is row diagonally dominant
(strictly where P_i > 0), so Gaussian elimination needs no pivoting. A region with neither
production nor imports has no consumption intensity (NaN).

Kernels are private `@njit(cache=True)` functions; the public functions validate and convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numba import njit
from numpy.typing import ArrayLike, NDArray

from core.errors import InvalidInput

__all__ = [
    "CLASS_FOSSIL",
    "CLASS_NUCLEAR",
    "CLASS_RENEWABLE",
    "CLASS_STORAGE",
    "CLASS_UNKNOWN",
    "FUEL_CLASS",
    "ProductionIntensity",
    "Window",
    "consumption_intensity",
    "lowest_window",
    "production_intensity",
]

CLASS_FOSSIL: Final = 0
CLASS_RENEWABLE: Final = 1
CLASS_NUCLEAR: Final = 2
CLASS_STORAGE: Final = 3
CLASS_UNKNOWN: Final = 4

FUEL_CLASS: Final[dict[str, int]] = {
    "coal": CLASS_FOSSIL,
    "gas": CLASS_FOSSIL,
    "oil": CLASS_FOSSIL,
    "nuclear": CLASS_NUCLEAR,
    "hydro": CLASS_RENEWABLE,
    "wind": CLASS_RENEWABLE,
    "solar": CLASS_RENEWABLE,
    "biomass": CLASS_RENEWABLE,
    "geothermal": CLASS_RENEWABLE,
    "hydro_storage": CLASS_STORAGE,
    "battery": CLASS_STORAGE,
    "unknown": CLASS_UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class ProductionIntensity:
    """Per interval: intensity (NaN where nothing counts), the MW it was computed over, shares."""

    intensity: NDArray[np.float64]
    generation_mw: NDArray[
        np.float64
    ]  # the denominator: primary generation + storage discharge with a factor
    fossil_share: NDArray[np.float64]
    renewable_share: NDArray[np.float64]
    nonfossil_share: NDArray[np.float64]


@njit(cache=True)
def _production(
    mw: NDArray[np.float64], factor: NDArray[np.float64], cls: NDArray[np.int8], out: NDArray[np.float64]
) -> int:
    """out[:, 0..4] = intensity, denominator MW, fossil, renewable, non-fossil share.
    Returns the first row with a NaN factor on a non-storage column that generates, or -1."""
    n, k = mw.shape
    for t in range(n):
        num = 0.0
        den = 0.0
        primary = 0.0
        fossil = 0.0
        renewable = 0.0
        nuclear = 0.0
        for j in range(k):
            p = mw[t, j]
            if not p > 0.0:  # also skips NaN (absent)
                continue
            f = factor[t, j]
            c = cls[j]
            if c == 3:  # storage discharge
                if f == f:
                    num += p * f
                    den += p
                continue
            if f != f:
                return t
            num += p * f
            den += p
            primary += p
            if c == 0:
                fossil += p
            elif c == 1:
                renewable += p
            elif c == 2:
                nuclear += p
        out[t, 0] = num / den if den > 0.0 else np.nan
        out[t, 1] = den
        if primary > 0.0:
            out[t, 2] = fossil / primary
            out[t, 3] = renewable / primary
            out[t, 4] = (renewable + nuclear) / primary
        else:
            out[t, 2] = np.nan
            out[t, 3] = np.nan
            out[t, 4] = np.nan
    return -1


def production_intensity(mw: ArrayLike, factor: ArrayLike, fuel_class: ArrayLike) -> ProductionIntensity:
    """`mw` and `factor` are (intervals × columns); `fuel_class` gives each column's class
    (`CLASS_*`). NaN MW is an absent value. See the module docstring for the rules."""
    m = np.ascontiguousarray(mw, dtype=np.float64)
    f = np.ascontiguousarray(factor, dtype=np.float64)
    c = np.ascontiguousarray(fuel_class, dtype=np.int8)
    if m.ndim != 2 or f.shape != m.shape or c.shape != (m.shape[1],):
        raise InvalidInput(f"shapes differ: mw {m.shape}, factor {f.shape}, fuel_class {c.shape}")
    if c.size and (c.min() < CLASS_FOSSIL or c.max() > CLASS_UNKNOWN):
        raise InvalidInput("fuel_class holds a value that is not a CLASS_*")
    if np.any(f < 0):
        raise InvalidInput("factors must not be negative")
    out = np.empty((m.shape[0], 5), dtype=np.float64)
    bad = _production(m, f, c, out)
    if bad >= 0:
        raise InvalidInput(f"interval {bad}: a generating non-storage column has no factor")
    return ProductionIntensity(out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4])


@njit(cache=True)
def _trace(
    production: NDArray[np.float64],
    intensity: NDArray[np.float64],
    flows: NDArray[np.float64],
    external: NDArray[np.float64],
    out: NDArray[np.float64],
) -> None:
    """One system per timestamp t: regions 0..n-1 internal; flows[t, j, i] is MW from j into i,
    j < n internal, j >= n external with fixed intensity external[t, j - n]."""
    steps, n = production.shape
    total = flows.shape[1]
    a = np.empty((n, n), dtype=np.float64)
    b = np.empty(n, dtype=np.float64)
    alive = np.empty(n, dtype=np.bool_)
    for t in range(steps):
        for i in range(n):
            p = production[t, i] if production[t, i] > 0.0 else 0.0
            inflow = 0.0
            for j in range(total):
                if j != i and flows[t, j, i] > 0.0:
                    inflow += flows[t, j, i]
            alive[i] = p + inflow > 0.0
            for j in range(n):
                a[i, j] = 0.0
            if not alive[i]:
                a[i, i] = 1.0  # x_i = NaN afterwards; keep the system regular
                b[i] = 0.0
                continue
            a[i, i] = p + inflow
            b[i] = intensity[t, i] * p if p > 0.0 else 0.0
            for j in range(total):
                if j == i or not flows[t, j, i] > 0.0:
                    continue
                if j < n:
                    a[i, j] -= flows[t, j, i]
                else:
                    b[i] += flows[t, j, i] * external[t, j - n]
        # a dead region exports nothing (it has no power), so its column holds no inflow to others
        for col in range(n):  # forward elimination, no pivoting: rows are diagonally dominant
            d = a[col, col]
            for r in range(col + 1, n):
                m = a[r, col]
                if m != 0.0:
                    m /= d
                    for c in range(col, n):
                        a[r, c] -= m * a[col, c]
                    b[r] -= m * b[col]
        for i in range(n - 1, -1, -1):
            s = b[i]
            for c in range(i + 1, n):
                s -= a[i, c] * out[t, c]
            out[t, i] = s / a[i, i]
        for i in range(n):
            if not alive[i]:
                out[t, i] = np.nan


def consumption_intensity(
    production_mw: ArrayLike,
    production_intensity: ArrayLike,
    flows_mw: ArrayLike,
    external_intensity: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Consumption-based intensity of `n` internal regions at each of `steps` timestamps.

    `production_mw`, `production_intensity`: (steps × n). `flows_mw`: (steps × (n+e) × n+e) with
    `flows_mw[t, j, i]` the MW flowing from region j into region i (only inflows to internal
    regions are read); regions n..n+e-1 are external, with fixed intensities
    `external_intensity` (steps × e). Returns (steps × n), NaN where a region has no power.
    """
    p = np.ascontiguousarray(production_mw, dtype=np.float64)
    c = np.ascontiguousarray(production_intensity, dtype=np.float64)
    fl = np.ascontiguousarray(flows_mw, dtype=np.float64)
    if p.ndim != 2 or c.shape != p.shape:
        raise InvalidInput(f"shapes differ: production_mw {p.shape}, production_intensity {c.shape}")
    steps, n = p.shape
    if fl.ndim != 3 or fl.shape[0] != steps or fl.shape[1] != fl.shape[2] or fl.shape[1] < n:
        raise InvalidInput(f"flows_mw must be (steps, n+e, n+e) with n={n}; got {fl.shape}")
    e = fl.shape[1] - n
    ext: Any = (
        np.zeros((steps, 0), dtype=np.float64)
        if external_intensity is None
        else np.ascontiguousarray(external_intensity, dtype=np.float64)
    )
    if ext.shape != (steps, e):
        raise InvalidInput(f"external_intensity must be ({steps}, {e}); got {ext.shape}")
    if np.any(fl < 0) or np.any(p < 0):
        raise InvalidInput("flows and production must not be negative")
    # an internal region that produces and feeds another needs a known production intensity
    feeds = (fl[:, :n, :n] > 0).any(axis=2) & (p > 0) & np.isnan(c)
    if np.any(feeds):
        raise InvalidInput(
            f"step {int(np.argwhere(feeds)[0, 0])}: a producing region has no production intensity"
        )
    if e and np.any(np.isnan(ext[(fl[:, n:, :n] > 0).any(axis=2)])):
        raise InvalidInput("an external region that exports has no fallback intensity")
    out = np.empty((steps, n), dtype=np.float64)
    _trace(p, np.nan_to_num(c, nan=0.0), fl, np.nan_to_num(ext, nan=0.0), out)
    out[(p > 0) & np.isnan(c)] = np.nan  # production of unknown intensity: so is what it feeds
    return out


@dataclass(frozen=True, slots=True)
class Window:
    start_us: int
    end_us: int
    mean: float  # time-weighted mean intensity over the window
    horizon_mean: float  # over every covered step of the horizon, for comparison


def lowest_window(
    start_us: ArrayLike, end_us: ArrayLike, value: ArrayLike, duration_s: int, step_s: int
) -> Window | None:
    """The `duration_s` window with the lowest mean intensity, starting on a `step_s` grid
    aligned to the first interval, over intervals [start, end) with values; a window must lie
    wholly inside covered time (a gap is never assumed clean). None if no window fits."""
    s = np.asarray(start_us, dtype=np.int64)
    e = np.asarray(end_us, dtype=np.int64)
    v = np.asarray(value, dtype=np.float64)
    if not (s.shape == e.shape == v.shape) or s.ndim != 1:
        raise InvalidInput("start_us, end_us and value must be 1-D and equally long")
    if duration_s <= 0 or step_s <= 0 or duration_s % step_s:
        raise InvalidInput("duration_s must be a positive multiple of step_s")
    if not len(s):
        return None
    step = step_s * 1_000_000
    t0 = int(s.min())
    n = int((int(e.max()) - t0) // step)
    grid = np.full(n, np.nan)
    for a, b, x in sorted(zip(s.tolist(), e.tolist(), v.tolist(), strict=True)):
        i0, i1 = (a - t0 + step - 1) // step, (b - t0) // step  # steps wholly inside [a, b)
        if np.isfinite(x):
            grid[max(i0, 0) : min(i1, n)] = x
    k = duration_s // step_s
    if n < k:
        return None
    valid = np.isfinite(grid)
    filled = np.where(valid, grid, 0.0)
    sums = np.convolve(filled, np.ones(k), "valid")
    complete = np.convolve(valid.astype(np.int64), np.ones(k, dtype=np.int64), "valid") == k
    if not complete.any():
        return None
    means = np.where(complete, sums / k, np.inf)
    best = int(np.argmin(means))
    return Window(t0 + best * step, t0 + (best + k) * step, float(means[best]), float(grid[valid].mean()))
