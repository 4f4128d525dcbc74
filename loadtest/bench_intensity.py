"""Grid intensity benchmark: the Numba core against a NumPy reference, on the same data, same run.

Production-based intensity and shares for `regions` regions × `days` of 5-minute intervals
(1,000 × 365 by default: 105 million region-intervals), each with 10 generation columns
(coal, gas.ccgt, gas.ocgt, nuclear, hydro, wind, solar, biomass, battery, unknown; battery
charging and discharging, missing values). Regions are processed in chunks so memory stays
bounded; the data of a chunk is built once and given to both implementations, and only the
computation is timed. The NumPy reference is vectorised (no Python loop per row) and its
results are compared with the kernel's on every chunk.

Flow tracing (consumption-based) is timed on networks of `component` regions with random
exchanges, one system per timestamp, against `numpy.linalg.solve` on the same systems.

    python -m loadtest.bench_intensity --regions 1000 --days 365
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from core.intensity import (
    CLASS_FOSSIL,
    CLASS_NUCLEAR,
    CLASS_RENEWABLE,
    CLASS_STORAGE,
    CLASS_UNKNOWN,
    consumption_intensity,
    production_intensity,
)

__all__ = ["IntensityBench", "main", "report", "run"]

_CLASSES = np.array(
    [CLASS_FOSSIL, CLASS_FOSSIL, CLASS_FOSSIL, CLASS_NUCLEAR, CLASS_RENEWABLE, CLASS_RENEWABLE,
     CLASS_RENEWABLE, CLASS_RENEWABLE, CLASS_STORAGE, CLASS_UNKNOWN],
    dtype=np.int8,
)  # fmt: skip
_FACTORS = np.array([820, 490, 650, 12, 24, 11, 45, 230, np.nan, 700], dtype=np.float64)
_STEPS_PER_DAY = 288


@dataclass
class IntensityBench:
    region_intervals: int
    kernel_s: float
    numpy_s: float
    kernel_rows_per_s: float
    numpy_rows_per_s: float
    ratio: float  # kernel speed / NumPy speed
    max_abs_diff: float
    tracing_systems: int
    tracing_regions: int
    tracing_kernel_s: float
    tracing_numpy_s: float
    tracing_ratio: float


def _chunk(rng: np.random.Generator, rows: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    mw = rng.gamma(2.0, 400.0, (rows, len(_CLASSES)))
    mw[:, 8] = rng.normal(0.0, 80.0, rows)  # battery: charging (negative) and discharging
    mw[rng.random((rows, len(_CLASSES))) < 0.01] = np.nan  # missing values
    factor = np.broadcast_to(_FACTORS, mw.shape).copy()
    return mw, factor


def _numpy_reference(mw: NDArray[np.float64], factor: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vectorised: the same rules as the kernel (see core.intensity), column-wise."""
    pos = np.where(mw > 0, mw, 0.0)  # NaN and charging count as 0
    storage = _CLASSES == CLASS_STORAGE
    counts = pos * ~(storage & np.isnan(factor))  # storage without a factor is left out
    den = counts.sum(axis=1)
    num = np.nansum(counts * factor, axis=1)
    primary = pos[:, ~storage].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.empty((len(mw), 4))
        out[:, 0] = num / den
        out[:, 1] = pos[:, _CLASSES == CLASS_FOSSIL].sum(axis=1) / primary
        out[:, 2] = pos[:, _CLASSES == CLASS_RENEWABLE].sum(axis=1) / primary
        out[:, 3] = (
            pos[:, _CLASSES == CLASS_RENEWABLE].sum(axis=1) + pos[:, _CLASSES == CLASS_NUCLEAR].sum(axis=1)
        ) / primary
    return out


def _tracing(rng: np.random.Generator, systems: int, n: int) -> tuple[float, float]:
    p = rng.uniform(100, 5000, (systems, n))
    c = rng.uniform(0, 900, (systems, n))
    flows = rng.uniform(0, 500, (systems, n, n)) * (rng.random((systems, n, n)) < 3 / n)
    for t in range(systems):
        np.fill_diagonal(flows[t], 0)
    consumption_intensity(p[:1], c[:1], flows[:1])  # compile outside the timing
    t0 = time.perf_counter()
    got = consumption_intensity(p, c, flows)
    kernel_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    inflow = flows.sum(axis=1)
    a = np.zeros((systems, n, n))
    idx = np.arange(n)
    a[:, idx, idx] = p + inflow
    a -= np.transpose(flows, (0, 2, 1))
    want = np.linalg.solve(a, (c * p)[..., None])[..., 0]
    numpy_s = time.perf_counter() - t0
    if not np.allclose(got, want, rtol=1e-9):
        raise AssertionError("flow tracing differs from numpy.linalg.solve")
    return kernel_s, numpy_s


def run(
    regions: int = 1000, days: int = 365, chunk_regions: int = 25, seed: int = 1, component: int = 50
) -> IntensityBench:
    rng = np.random.default_rng(seed)
    steps = days * _STEPS_PER_DAY
    mw, factor = _chunk(rng, 1000)
    production_intensity(mw, factor, _CLASSES)  # compile outside the timing
    kernel_s = numpy_s = diff = 0.0
    done = 0
    for first in range(0, regions, chunk_regions):
        rows = min(chunk_regions, regions - first) * steps
        mw, factor = _chunk(rng, rows)
        t0 = time.perf_counter()
        got = production_intensity(mw, factor, _CLASSES)
        kernel_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        want = _numpy_reference(mw, factor)
        numpy_s += time.perf_counter() - t0
        for col, values in enumerate(
            (got.intensity, got.fossil_share, got.renewable_share, got.nonfossil_share)
        ):
            both = np.isfinite(values) & np.isfinite(want[:, col])
            if not np.array_equal(np.isfinite(values), np.isfinite(want[:, col])):
                raise AssertionError("kernel and NumPy disagree on which rows have a value")
            diff = max(diff, float(np.max(np.abs(values[both] - want[both, col]), initial=0.0)))
        done += rows
        print(f"  {done:,} region-intervals ({first + chunk_regions}/{regions} regions)", flush=True)
    systems = _STEPS_PER_DAY * max(regions // component, 1)
    tracing_kernel_s, tracing_numpy_s = _tracing(rng, systems, component)
    return IntensityBench(
        region_intervals=done,
        kernel_s=kernel_s,
        numpy_s=numpy_s,
        kernel_rows_per_s=done / kernel_s,
        numpy_rows_per_s=done / numpy_s,
        ratio=numpy_s / kernel_s,
        max_abs_diff=diff,
        tracing_systems=systems,
        tracing_regions=component,
        tracing_kernel_s=tracing_kernel_s,
        tracing_numpy_s=tracing_numpy_s,
        tracing_ratio=tracing_numpy_s / tracing_kernel_s,
    )


def report(b: IntensityBench) -> str:
    return (
        f"intensity: {b.region_intervals:,} region-intervals; kernel {b.kernel_rows_per_s:,.0f} rows/s, "
        f"NumPy reference {b.numpy_rows_per_s:,.0f} rows/s: ratio {b.ratio:.2f}× "
        f"(max |difference| {b.max_abs_diff:.2e})\n"
        f"flow tracing: {b.tracing_systems:,} systems of {b.tracing_regions} regions; "
        f"kernel {b.tracing_kernel_s:.2f} s, numpy.linalg.solve {b.tracing_numpy_s:.2f} s: "
        f"ratio {b.tracing_ratio:.2f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regions", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args()
    result = run(args.regions, args.days)
    print(report(result))
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
