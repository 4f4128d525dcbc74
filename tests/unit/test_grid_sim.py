"""The demo's simulated grid feed: valid records, a traced network, deterministic, with restatements."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec

from ingest.grid_sim import GridSimulator
from schemas.grid import GridDecoder, GridMix

START = datetime(2026, 11, 20, 0, 2, tzinfo=UTC)


def test_records_are_valid_ordered_and_cover_each_interval_once() -> None:
    decoder = GridDecoder(
        max_future_s=86_400, max_forecast_s=86_400, earliest=datetime(2000, 1, 1, tzinfo=UTC)
    )
    records = list(GridSimulator(START).until(START + timedelta(days=1)))
    decoded = []
    for r in records:
        mix, bad = decoder.decode(msgspec.json.encode(r), START + timedelta(days=2))
        assert bad is None and isinstance(mix, GridMix), bad
        decoded.append(mix)
    first = [m for m in decoded if m.revision == 0]
    assert len(first) == 4 * 288  # 4 regions, 00:00 to 23:55: each interval once it has ended
    assert first[0].ts_us == int(datetime(2026, 11, 20, tzinfo=UTC).timestamp() * 1e6)  # aligned to 5 min
    zj = [m for m in first if m.region == "CN-ZJ"]
    assert all(b.ts_us - a.ts_us == 300_000_000 for a, b in itertools.pairwise(zj))
    # the network: Zhejiang imports Sichuan hydro and Anhui power, exports to Shanghai
    assert set(zj[0].imports_mw) == {"CN-SC", "CN-AH"} and set(zj[0].exports_mw) == {"CN-SH"}
    # pumped storage charges at night (CST) and generates at the evening peak
    night = next(m for m in zj if datetime.fromtimestamp(m.ts_us / 1e6, UTC).hour == 18)  # 02:00 CST
    peak = next(m for m in zj if datetime.fromtimestamp(m.ts_us / 1e6, UTC).hour == 11)  # 19:00 CST
    assert night.generation_mw["hydro_storage"] < 0 < peak.generation_mw["hydro_storage"]
    assert night.generation_mw["solar"] == 0 and peak.generation_mw["solar"] == 0
    noon = next(m for m in zj if datetime.fromtimestamp(m.ts_us / 1e6, UTC).hour == 4)  # 12:00 CST
    assert noon.generation_mw["solar"] > 10_000


def test_deterministic_and_restated_now_and_then() -> None:
    a = list(GridSimulator(START, seed=3).until(START + timedelta(days=2)))
    b = list(GridSimulator(START, seed=3).until(START + timedelta(days=2)))
    assert a == b
    revised = [r for r in a if r["revision"] == 1]
    assert revised and all(r["region"] == "CN-ZJ" for r in revised)
    for r in revised:
        original = next(o for o in a if o["ts"] == r["ts"] and o["region"] == "CN-ZJ" and o["revision"] == 0)
        assert a.index(original) < a.index(r)  # a restatement follows what it restates
        assert r["generation_mw"]["coal"] > original["generation_mw"]["coal"]  # type: ignore[index, operator]
