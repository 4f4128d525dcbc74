"""The exchange network at one timestamp, as flow tracing (`core.intensity`) takes it.

Each region's record lists its imports by neighbour, and may list its exports. A flow j -> i is
taken from the importer's record; where the importer does not list that neighbour, from the
exporter's record (an exporter's view fills what importers leave out, never overrides it). A
neighbour with no record at the timestamp is *external*: it gets a column of its own after the
known regions, in order of first mention, and every known region importing from it (a positive
flow) is flagged `neighbour_fallback:<region>`, since its consumption intensity then rests on
a fallback value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.errors import InvalidInput

__all__ = ["Exchanges", "exchanges"]


@dataclass(frozen=True, slots=True)
class Exchanges:
    flows_mw: NDArray[np.float64]  # (known + external, known + external): [j, i] is MW from j to i
    external: list[str]  # neighbours without a record, in their column order
    flags: list[list[str]]  # per known region, sorted


def exchanges(
    regions: Sequence[str],
    imports: Sequence[Mapping[str, float]],
    exports: Sequence[Mapping[str, float]],
) -> Exchanges:
    """The flows between `regions` (each with its imports and exports by neighbour) and the
    neighbours they name (see the module docstring)."""
    if not len(regions) == len(imports) == len(exports):
        raise InvalidInput("regions, imports and exports must have the same length")
    index = {r: i for i, r in enumerate(regions)}
    if len(index) != len(regions):
        raise InvalidInput("regions must be distinct")
    flows: dict[tuple[str, int], float] = {}
    for i, listed in enumerate(imports):
        for exporter, mw in listed.items():
            flows[(exporter, i)] = float(mw)
    for j, listed in enumerate(exports):
        for importer_region, mw in listed.items():
            importer = index.get(importer_region)
            if importer is not None and (regions[j], importer) not in flows:
                flows[(regions[j], importer)] = float(mw)
    external: list[str] = []
    for exporter, _ in flows:
        if exporter not in index and exporter not in external:
            external.append(exporter)
    column = index | {r: len(regions) + k for k, r in enumerate(external)}
    size = len(regions) + len(external)
    matrix = np.zeros((size, size), dtype=np.float64)
    flags: list[set[str]] = [set() for _ in regions]
    for (exporter, i), mw in flows.items():
        matrix[column[exporter], i] = mw
        if exporter not in index and mw > 0:
            flags[i].add(f"neighbour_fallback:{exporter}")
    return Exchanges(matrix, external, [sorted(f) for f in flags])
