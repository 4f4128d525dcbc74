"""The energy series as the API shapes it from the database's arrays, against a plain
per-bucket reading of the same rows: bounds as RFC 3339 text, coverage, quality, totals."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pytest

from api.routers.energy import _encoder, _shaped
from schemas.api import EnergySeries

T0 = int(datetime(2026, 3, 28, tzinfo=UTC).timestamp())


def _reference(row: dict[str, Any], meters: int) -> list[dict[str, Any]]:
    out = []
    ends = row["ends"] or [s + 900 for s in row["starts"]]
    for s, e, k, c, w in zip(row["starts"], ends, row["kwh"], row["coverage_s"], row["worst"], strict=True):
        length = (e - s) * meters
        coverage = min(c / length, 1.0) if length else 0.0
        quality = "estimated" if w == 2 else ("measured" if coverage >= 1.0 - 1e-9 else "partial")
        start = datetime.fromtimestamp(s, UTC)
        end = datetime.fromtimestamp(e, UTC)
        out.append({"start": start, "end": end, "kwh": k, "coverage": coverage, "quality": quality})
    return out


@pytest.mark.parametrize("gaps", [False, True])
@pytest.mark.parametrize("quarters", [True, False])
@pytest.mark.parametrize("meters", [1, 3])
def test_shaped_series_equals_a_per_bucket_reading(quarters: bool, meters: int, gaps: bool) -> None:
    rng = random.Random(meters * 2 + quarters)
    n = 500
    if quarters:
        starts = [T0 + 900 * k for k in range(n)]
        ends = None
    else:  # local days around a DST change: 24, 23 and 25 hours long
        lengths = [rng.choice((23, 24, 25)) * 3600 for _ in range(n)]
        starts = [T0 + sum(lengths[:k]) for k in range(n)]
        ends = [s + d for s, d in zip(starts, lengths, strict=True)]
    if gaps:  # buckets with no data are absent, not zero
        kept = sorted(rng.sample(range(n), n * 3 // 4))
        starts = [starts[k] for k in kept]
        ends = None if ends is None else [ends[k] for k in kept]
        n = len(kept)
    spans = ends or [s + 900 for s in starts]
    row = {
        "starts": starts,
        "ends": ends,
        "kwh": [rng.uniform(0, 50) for _ in range(n)],
        "coverage_s": [
            (e - s) * meters * rng.choice((1.0, 1.0, 0.5, 0.0, 1.2))
            for s, e in zip(starts, spans, strict=True)
        ],
        "worst": [rng.choice((0, 0, 1, 2)) for _ in range(n)],
    }
    series = _shaped(_packed(row, meters), "15min" if quarters else "day", meter="main")  # type: ignore[arg-type]
    # what a client reads: the JSON, validated by the documented model
    body = _encoder.encode(series)
    decoded = EnergySeries.model_validate_json(body)
    expected = _reference(row, meters)
    assert [b.model_dump() for b in decoded.buckets] == expected
    # byte for byte what msgspec writes for the buckets as objects; CSV rows say the same
    assert body == msgspec.json.encode(series | {"buckets": expected})
    assert list(series["buckets"].rows()) == [tuple(b.values()) for b in msgspec.json.decode(body)["buckets"]]
    assert decoded.total_kwh == pytest.approx(sum(row["kwh"]))
    assert decoded.coverage == pytest.approx(
        sum(row["coverage_s"]) / sum((e - s) * meters for s, e in zip(starts, spans, strict=True))
    )
    text = msgspec.json.decode(body)["buckets"][0]["start"]
    assert text == msgspec.json.encode(datetime.fromtimestamp(starts[0], UTC)).decode().strip('"')


def _sent(values: list[Any], item: str) -> bytes:
    """A one-dimensional array as PostgreSQL's `array_send` writes it."""
    header = np.array([1, 0, 0, len(values), 1], dtype=">i4").tobytes()  # ndim, flags, type, size, lbound
    elements = np.zeros(len(values), dtype=[("size", ">i4"), ("value", item)])
    elements["size"], elements["value"] = np.dtype(item).itemsize, values
    return header + elements.tobytes()


def _packed(row: dict[str, Any], meters: int = 1) -> dict[str, Any]:
    """The row as the database sends it: bounds as binary timestamps (µs since 2000-01-01)."""

    def stamps(seconds: list[int]) -> bytes:
        return _sent([(s - 946_684_800) * 1_000_000 for s in seconds], ">i8")

    return {
        "site_id": "s1",
        "timezone": "Europe/London",
        "meters": meters,
        "starts": stamps(row["starts"]),
        "ends": None if row["ends"] is None else stamps(row["ends"]),
        "kwh": _sent(row["kwh"], ">f8"),
        # as the statement sends them: an estimated bucket's seconds negated (-0.0 for none)
        "signed_coverage_s": _sent(
            [-abs(c) if w == 2 else abs(c) for c, w in zip(row["coverage_s"], row["worst"], strict=True)],
            ">f8",
        ),
    }


def test_an_empty_series() -> None:
    row = {"site_id": "s1", "timezone": "Asia/Shanghai", "meters": 0}
    row |= dict.fromkeys(("starts", "ends", "kwh", "signed_coverage_s"))
    series = _shaped(row, "hour")  # type: ignore[arg-type]
    assert len(series["buckets"]) == 0 and series["total_kwh"] == 0 and series["coverage"] == 0.0
    assert msgspec.json.decode(_encoder.encode(series))["buckets"] == []
