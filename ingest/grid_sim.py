"""A simulated grid feed for the demo fleet's region: Zhejiang (CN-ZJ) and the grids it trades with.

Generation follows the hour of day in China Standard Time: solar by a daylight curve, pumped
storage charging at night and generating at the evening peak, gas peaking, coal following the
residual load, nuclear flat; Zhejiang imports Sichuan hydro over the UHV lines (CN-SC) and
Anhui coal power (CN-AH) and exports to Shanghai (CN-SH), whose mixes are simulated too, so
consumption-based intensity is traced through a real network. Values are deterministic in
(region, interval): a restarted simulator republishes the same records, and a few intervals
(1 in 97) are later restated with a `revision` 1, as operators do. The capacities are
illustrative, of the order of these provinces' grids, not published figures.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

from ingest.feeds.common import mix_record

__all__ = ["GridSimulator"]

_CST: Final = timedelta(hours=8)
_REVISED_EVERY: Final = 97


def _sun(hour: float) -> float:
    """0 at night, 1 at solar noon (about 12:00 CST), smooth between 06:00 and 18:00."""
    return float(max(0.0, math.sin(math.pi * (hour - 6.0) / 12.0)) ** 1.5)


def _load(hour: float) -> float:
    """Relative demand: night trough, morning rise, afternoon and evening peaks."""
    return (
        0.72 + 0.18 * math.exp(-(((hour - 10.5) / 2.5) ** 2)) + 0.22 * math.exp(-(((hour - 19.5) / 2.0) ** 2))
    )


class GridSimulator:
    """Mix records for every `interval_s` step, in order, up to a given time."""

    def __init__(self, start: datetime, *, interval_s: int = 300, seed: int = 0) -> None:
        step = interval_s
        epoch = int(start.astimezone(UTC).timestamp())
        self._next = datetime.fromtimestamp(epoch - epoch % step, UTC)
        self._interval = timedelta(seconds=interval_s)
        self._seed = seed
        self._pending_revisions: list[dict[str, object]] = []

    def _rng(self, region: str, ts: datetime, salt: int = 0) -> random.Random:
        return random.Random(f"{self._seed}:{region}:{int(ts.timestamp())}:{salt}")  # noqa: S311 - simulation

    def _records(self, ts: datetime, revision: int = 0) -> list[dict[str, object]]:
        hour = ((ts + _CST).hour + (ts + _CST).minute / 60) % 24
        sun, load = _sun(hour), _load(hour)
        out = []
        for region in ("CN-SC", "CN-AH", "CN-SH", "CN-ZJ"):
            r = self._rng(region, ts, revision)
            breeze = 0.25 + 0.2 * math.sin(ts.timestamp() / 40_000 + len(region)) + 0.05 * r.random()
            if region == "CN-SC":
                gen = {"hydro": 52_000 * (0.9 + 0.1 * r.random()), "coal": 6_000 * load,
                       "wind": 3_000 * breeze, "solar": 5_000 * sun, "gas": 800}  # fmt: skip
                imports: dict[str, float] = {}
                exports = {"CN-ZJ": 7_200.0}
            elif region == "CN-AH":
                gen = {"coal": 38_000 * load - 6_000 * sun, "solar": 14_000 * sun, "wind": 5_000 * breeze,
                       "hydro": 900, "biomass": 1_400}  # fmt: skip
                imports, exports = {}, {"CN-ZJ": 3_500 * load}
            elif region == "CN-SH":
                gen = {"coal.ultra_supercritical": 11_000 * load, "gas.ccgt": 4_500 * load,
                       "solar": 1_800 * sun, "wind": 1_000 * breeze}  # fmt: skip
                imports, exports = {"CN-ZJ": 1_500.0}, {}
            else:
                storage = -2_400.0 if hour < 6 else (2_800.0 if 18 <= hour < 21 else 0.0)
                gen = {
                    "coal": max(8_000.0, 36_000 * load - 12_000 * sun + (2_000 if storage < 0 else 0)),
                    "gas.ccgt": 2_000 + 2_500 * max(load - 0.85, 0) / 0.25,
                    "nuclear": 9_100.0,
                    "hydro": 1_600 + 400 * r.random(),
                    "wind": 3_500 * breeze,
                    "solar": 21_000 * sun * (0.85 + 0.15 * r.random()),
                    "hydro_storage": storage,
                    "battery": 600.0 if 18 <= hour < 21 else (-400.0 if 11 <= hour < 14 else 0.0),
                }
                if revision:
                    gen["coal"] *= 1.04  # the operator's settled figure
                imports = {"CN-SC": 7_200.0, "CN-AH": 3_500 * load}
                exports = {"CN-SH": 1_500.0}
            out.append(
                mix_record(
                    region,
                    ts,
                    int(self._interval.total_seconds()),
                    {k: round(v, 1) for k, v in gen.items()},
                    imports,
                    exports,
                    revision=revision,
                )
            )
        return out

    def until(self, now: datetime) -> Iterator[dict[str, object]]:
        """Every record whose interval has ended by `now`, in order, with due restatements."""
        while self._next + self._interval <= now:
            ts = self._next
            yield from self._pending_revisions
            self._pending_revisions = []
            yield from self._records(ts)
            if int(ts.timestamp()) // int(self._interval.total_seconds()) % _REVISED_EVERY == 0:
                self._pending_revisions = [r for r in self._records(ts, 1) if r["region"] == "CN-ZJ"]
            self._next = ts + self._interval
