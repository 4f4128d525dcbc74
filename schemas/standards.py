"""Cited thresholds of standards, kept as data.

GB 40879-2021 《数据中心能效限定值及能效等级》 (Maximum allowable values of energy efficiency
and energy efficiency grades for data centers), SAMR/SAC, in force 2022-11-01: a data centre's
PUE grades it 1 (≤ 1.20), 2 (≤ 1.30) or 3 (≤ 1.50); grade 3 is the limit value.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PUE_GRADES", "PUE_STANDARD", "pue_grade"]

PUE_STANDARD: Final = "GB 40879-2021"
PUE_GRADES: Final[tuple[tuple[int, float], ...]] = ((1, 1.20), (2, 1.30), (3, 1.50))


def pue_grade(pue: float | None) -> int | None:
    """1, 2 or 3; None above the limit value (or without a PUE)."""
    if pue is None:
        return None
    return next((grade for grade, limit in PUE_GRADES if pue <= limit), None)
