"""What every grid feed adapter shares: record builders and the result type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingest.replay import SkipReport

__all__ = ["FeedResult", "generation_from", "intensity_record", "mix_record", "number", "text_of"]


@dataclass
class FeedResult:
    """Grid records (wire dicts, oldest first) and what was left out of the source, by reason."""

    records: list[dict[str, object]] = field(default_factory=list)
    report: SkipReport = field(default_factory=SkipReport)


def _ts(ts: datetime) -> str:
    if ts.tzinfo is None:
        raise ValueError("grid record times must be timezone-aware")
    return ts.astimezone(UTC).isoformat()


def mix_record(
    region: str,
    ts: datetime,
    interval_s: int,
    generation_mw: Mapping[str, float],
    imports_mw: Mapping[str, float] | None = None,
    exports_mw: Mapping[str, float] | None = None,
    emissions_t_per_h: float | None = None,
    revision: int = 0,
) -> dict[str, object]:
    """A generation-mix record; `ts` is the start of the interval the MW values average over."""
    record: dict[str, object] = {
        "region": region,
        "ts": _ts(ts),
        "interval_s": interval_s,
        "generation_mw": dict(generation_mw),
        "imports_mw": dict(imports_mw or {}),
        "exports_mw": dict(exports_mw or {}),
        "revision": revision,
    }
    if emissions_t_per_h is not None:
        record["emissions_t_per_h"] = emissions_t_per_h
    return record


def intensity_record(
    region: str, ts: datetime, interval_s: int, intensity_g_per_kwh: float, kind: str = "actual"
) -> dict[str, object]:
    """A published-intensity record for the interval starting at `ts`."""
    return {
        "region": region,
        "ts": _ts(ts),
        "interval_s": interval_s,
        "intensity_g_per_kwh": intensity_g_per_kwh,
        "kind": kind,
    }


def number(value: object) -> float | None:
    """A finite number from a JSON or CSV value (numbers as strings too); None if absent or not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = (
            float(str(value).strip().replace(",", "")) if not isinstance(value, int | float) else float(value)
        )
    except ValueError:
        return None
    return result if result == result and abs(result) != float("inf") else None


def text_of(source: Path | str) -> str:
    """A file's text (BOM removed), or the text itself."""
    return (
        source.read_text(encoding="utf-8-sig") if isinstance(source, Path) else source.removeprefix("\ufeff")
    )


def generation_from(
    row: Mapping[str, object], fields: Mapping[str, str], result: FeedResult, where: str
) -> dict[str, float]:
    """Generation MW by wattstream fuel key from a source row's fields (`fields`: source field ->
    key); absent values are skipped, non-numbers counted, negatives clipped to 0 and counted
    (the callers' fields are not storage)."""
    generation: dict[str, float] = {}
    for name, key in fields.items():
        mw = number(row.get(name))
        if mw is None:
            if row.get(name) is not None:
                result.report.skip("not_a_number", 0, f"{where} {name}={row.get(name)!r}")
            continue
        if mw < 0:
            result.report.skip("negative_generation_clipped", 0, f"{where} {name} {mw}")
            mw = 0.0
        generation[key] = mw
    return generation
