"""Source matching and bucket emissions (core.emissions) and the exchange network (core.exchanges)
against plain-Python references, without services."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.emissions import IntensitySources, Match, SourceSeries, bucket_emission
from core.errors import InvalidInput
from core.exchanges import exchanges

S = 1_000_000
BASES = ("consumption", "production", "published")


def _reference_match(
    series: list[tuple[str, str, list[tuple[int, int, float]]]], b0: int, b1: int, tolerance: int
) -> Match:
    """Interval by interval: the first source overlapping the bucket, else the nearest interval."""
    for basis, fset, intervals in series:
        weighted = covered = 0.0
        for start, length, value in intervals:
            overlap = max(0, min(start + length, b1) - max(start, b0))
            covered += overlap
            weighted += overlap * value
        if covered > 0:
            return Match(weighted / covered, basis, "measured" if covered >= b1 - b0 else "estimated", fset)
    best = None
    for basis, fset, intervals in series:
        for start, length, value in sorted(intervals):
            gap = max(start - b1, b0 - (start + length))
            if gap <= tolerance and (best is None or gap < best[0]):
                best = (gap, value, basis, fset)
    if best is None:
        return Match(None, None, "missing", None)
    return Match(best[1], f"nearest:{best[2]}", "estimated", best[3])


_interval = st.tuples(
    st.integers(0, 400).map(lambda m: m * 60 * S),  # start, on minutes over ~7 hours
    st.sampled_from([300, 900, 1800, 3600]).map(lambda s: s * S),
    st.floats(0, 1000, allow_nan=False),
)


@settings(max_examples=300)
@given(
    st.lists(st.lists(_interval, max_size=12, unique_by=lambda iv: iv[0]), min_size=3, max_size=3),
    st.integers(0, 420).map(lambda m: m * 60 * S),
    st.sampled_from([900, 1800]).map(lambda s: s * S),
    st.sampled_from([0, 600 * S, 3600 * S]),
)
def test_match_agrees_with_the_reference(
    per_source: list[list[tuple[int, int, float]]], b0: int, length: int, tolerance: int
) -> None:
    # sources' own intervals do not overlap one another in real series: keep the first of any that do
    tidy: list[list[tuple[int, int, float]]] = []
    for intervals in per_source:
        kept: list[tuple[int, int, float]] = []
        for iv in sorted(intervals):
            if not kept or iv[0] >= kept[-1][0] + kept[-1][1]:
                kept.append(iv)
        tidy.append(kept)
    series = [(basis, f"set-{basis}", iv) for basis, iv in zip(BASES, tidy, strict=True)]
    sources = IntensitySources(
        [
            SourceSeries.of(b, f, [s for s, _, _ in iv], [n // S for _, n, _ in iv], [v for _, _, v in iv])
            for b, f, iv in series
        ]
    )
    got = sources.match(b0, b0 + length, tolerance)
    want = _reference_match(series, b0, b0 + length, tolerance)
    assert (got.source, got.quality, got.factor_set) == (want.source, want.quality, want.factor_set)
    if want.g_per_kwh is None:
        assert got.g_per_kwh is None
    else:
        assert got.g_per_kwh == pytest.approx(want.g_per_kwh, rel=1e-12, abs=1e-12)


def test_preference_order_and_quality() -> None:
    consumption = SourceSeries.of("consumption", "ipcc", [0], [1800], [400.0])
    production = SourceSeries.of("production", "ipcc", [0, 900 * S], [900, 900], [100.0, 300.0])
    sources = IntensitySources([consumption, production])
    # consumption covers half the bucket [900 s, 2700 s): estimated, from consumption alone
    assert sources.match(900 * S, 2700 * S, 0) == Match(400.0, "consumption", "estimated", "ipcc")
    assert IntensitySources([production]).match(0, 1800 * S, 0) == Match(
        200.0, "production", "measured", "ipcc"
    )
    # nothing overlaps: the nearest within the tolerance, else missing
    assert sources.match(3600 * S, 4500 * S, 1800 * S) == Match(
        400.0, "nearest:consumption", "estimated", "ipcc"
    )
    assert sources.match(3600 * S, 4500 * S, 60 * S) == Match(None, None, "missing", None)
    with pytest.raises(InvalidInput):
        sources.match(10, 10, 0)
    with pytest.raises(InvalidInput):
        SourceSeries.of("production", "x", [0], [0], [1.0])


def test_bucket_emission_falls_back_and_gives_the_residual() -> None:
    measured = Match(500.0, "consumption", "measured", "ipcc")
    assert bucket_emission(2.0, measured, annual=None, annual_table=None, residual=None).co2e_kg == 1.0
    r = bucket_emission(
        2.0, measured, annual=(561.7, "cn:2022:east"), annual_table="cn", residual=(585.6, "x")
    )
    assert (r.g_per_kwh, r.residual_g_per_kwh, r.quality, r.source) == (
        500.0,
        585.6,
        "measured",
        "consumption",
    )
    missing = Match(None, None, "missing", None)
    f = bucket_emission(4.0, missing, annual=(561.7, "cn:2022:east"), annual_table="cn", residual=None)
    assert (f.g_per_kwh, f.co2e_kg, f.quality, f.source, f.factor_set) == (
        561.7,
        pytest.approx(4.0 * 0.5617),
        "fallback",
        "cn:2022:east",
        "cn",
    )
    assert f.residual_g_per_kwh == 561.7, "without a residual table, the location-based value"
    m = bucket_emission(4.0, missing, annual=None, annual_table=None, residual=None)
    assert (m.g_per_kwh, m.co2e_kg, m.quality) == (None, None, "missing")


def _reference_flows(
    regions: list[str], imports: list[dict[str, float]], exports: list[dict[str, float]]
) -> tuple[dict[tuple[str, str], float], list[str], list[list[str]]]:
    flows: dict[tuple[str, str], float] = {}
    for region, listed in zip(regions, imports, strict=True):
        for exporter, mw in listed.items():
            flows[(exporter, region)] = mw
    for region, listed in zip(regions, exports, strict=True):
        for importer, mw in listed.items():
            if importer in regions:
                flows.setdefault((region, importer), mw)
    external = list(dict.fromkeys(e for e, _ in flows if e not in regions))
    flags = [
        sorted(
            {f"neighbour_fallback:{e}" for (e, i), mw in flows.items() if i == r and e in external and mw > 0}
        )
        for r in regions
    ]
    return flows, external, flags


_names = st.sampled_from(["A", "B", "C", "D", "X", "Y"])


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(["A", "B", "C", "D"]), min_size=1, max_size=4, unique=True),
    st.data(),
)
def test_exchanges_agree_with_the_reference(regions: list[str], data: st.DataObject) -> None:
    flow = st.dictionaries(_names, st.floats(-100, 5000, allow_nan=False), max_size=4)
    imports = [data.draw(flow) for _ in regions]
    exports = [data.draw(flow) for _ in regions]
    net = exchanges(regions, imports, exports)
    flows, external, flags = _reference_flows(regions, imports, exports)
    assert net.external == external
    assert net.flags == flags
    columns = [*regions, *external]
    got = {
        (columns[j], columns[i]): float(net.flows_mw[j, i])
        for j in range(len(columns))
        for i in range(len(columns))
        if (columns[j], columns[i]) in flows
    }
    assert got == flows
    assert float(abs(net.flows_mw).sum()) == pytest.approx(sum(abs(v) for v in flows.values()))


def test_exchanges_refuse_mismatched_input() -> None:
    with pytest.raises(InvalidInput):
        exchanges(["A"], [{}], [])
    with pytest.raises(InvalidInput):
        exchanges(["A", "A"], [{}, {}], [{}, {}])
