"""Factor sets as data: built-ins, Electricity Maps files as they are, China's annual grid factors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.factors import FactorLibrary, FactorSetError

FACTORS = Path(__file__).resolve().parents[3] / "shared" / "data" / "factors"


def _us(*ymd: int) -> int:
    return int(datetime(*ymd, tzinfo=UTC).timestamp() * 1_000_000)


@pytest.fixture(scope="module")
def em() -> FactorLibrary:
    return FactorLibrary.load(sorted(FACTORS.glob("electricitymaps_*.yaml")))


def test_builtin_sets_carry_provenance_and_the_ipcc_medians() -> None:
    lib = FactorLibrary.load()
    life = lib.get("ipcc2014-lifecycle")
    want = {"coal": 820, "gas": 490, "oil": 650, "biomass": 230, "solar": 45, "geothermal": 38}
    want |= {"hydro": 24, "nuclear": 12, "wind": 11, "unknown": 700}
    t = _us(2025, 1, 1)
    assert {k: life.value(k, t) for k in want} == want
    assert life.source and life.licence and life.unit == "gCO2eq/kWh" and life.year == 2014
    direct = lib.get("ipcc2014-direct")
    assert (direct.value("coal", t), direct.value("gas", t), direct.value("wind", t)) == (760, 370, 0)


def test_technology_falls_back_to_fuel_then_unknown_and_storage_stays_nan() -> None:
    life = FactorLibrary.load().get("ipcc2014-lifecycle")
    t = _us(2025, 1, 1)
    assert life.value("gas.ocgt", t) == 490
    assert math.isnan(life.value("battery", t)) and math.isnan(life.value("hydro_storage.pumped", t))


def test_em_zone_overrides_defaults_with_time_varying_values(em: FactorLibrary) -> None:
    ny = em.select("US-NY-NYIS", "direct")
    assert ny.name == "em-US-NY-NYIS-direct" and ny.region == "US-NY-NYIS"
    assert ny.value("gas", _us(2020, 6, 1)) == 412.68  # eGrid 2020
    assert ny.value("gas", _us(2025, 6, 1)) == 417.21  # the latest datetime on or before (eGrid 2023)
    assert ny.value("gas", _us(2010, 1, 1)) == 412.68  # before the first step: the first value
    assert ny.value("wind", _us(2025, 6, 1)) == 0  # not in the zone: from the defaults
    sa = em.select("AU-SA", "lifecycle")
    assert sa.value("battery", _us(2025, 7, 23)) == 112.17  # the zone's own battery discharge
    assert sa.value("gas.ccgt", _us(2025, 7, 23)) == 490
    assert em.select("AU-SA", "lifecycle").value("hydro_storage", _us(2025, 7, 23)) == 362.9  # EM default
    assert "Electricity Maps zone AU-SA" in sa.source


def test_regions_without_a_zone_get_the_default_and_choices_override(em: FactorLibrary) -> None:
    assert em.select("CN-ZJ", "lifecycle").name == "ipcc2014-lifecycle"
    lib = FactorLibrary.load(
        sorted(FACTORS.glob("electricitymaps_*.yaml")), {"AU-SA:lifecycle": "em-defaults-lifecycle"}
    )
    assert lib.select("AU-SA", "lifecycle").name == "em-defaults-lifecycle"
    with pytest.raises(FactorSetError, match="unknown set"):
        FactorLibrary.load((), {"AU-SA:lifecycle": "nope"})


def test_matrix_resolves_many_times_at_once(em: FactorLibrary) -> None:
    ny = em.select("US-NY-NYIS", "lifecycle")
    ts = np.array([_us(2019, 1, 1), _us(2021, 6, 1), _us(2024, 1, 1)], dtype=np.int64)
    m = ny.matrix(["coal", "wind", "battery"], ts)
    assert m.shape == (3, 3)
    assert m[0, 0] == ny.value("coal", _us(2020, 1, 1)) == 1155.03  # before the first step
    assert m[1, 0] == ny.value("coal", _us(2021, 1, 1)) and m[2, 0] == 1079.19


def test_china_annual_grid_factors() -> None:
    cn = FactorLibrary.load().annual_for("CN-ZJ")
    assert cn is not None
    assert cn.average("CN-ZJ", 2026) == (pytest.approx(561.7), "cn-mee-grid:2022:east")
    assert cn.average("CN-SC", 2022) == (pytest.approx(226.8), "cn-mee-grid:2022:southwest")
    assert cn.average("CN-GD", 2022)[0] == pytest.approx(386.9)
    assert cn.average("CN", 2021) == (pytest.approx(556.8), "cn-mee-grid:2021:national")
    assert cn.average("CN-ZJ", 2021) == (pytest.approx(561.7), "cn-mee-grid:2022:east")  # earliest after
    assert cn.residual("CN-ZJ", 2023) == (
        pytest.approx(585.6),
        "cn-mee-grid:2022:national_excl_market_nonfossil",
    )
    assert FactorLibrary.load().annual_for("GB") is None


def test_bad_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nscope: lifecycle\nunit: gCO2/kWh\nsource: s\nfactors: {coal: 1}\n")
    with pytest.raises(FactorSetError, match="licence"):
        FactorLibrary.load([bad])
    bad.write_text("name: x\nscope: lifecycle\nunit: lb/kWh\nsource: s\nlicence: l\nfactors: {}\n")
    with pytest.raises(FactorSetError, match="unit"):
        FactorLibrary.load([bad])
    bad.write_text("name: x\nscope: lifecycle\nunit: tCO2/MWh\nsource: s\nlicence: l\nfactors: {coal: -1}\n")
    with pytest.raises(FactorSetError, match="negative"):
        FactorLibrary.load([bad])
    ok = tmp_path / "ok.yaml"
    ok.write_text("name: mine\nscope: direct\nunit: tCO2/MWh\nsource: s\nlicence: l\nfactors: {coal: 0.9}\n")
    assert FactorLibrary.load([ok]).get("mine").value("coal", 0) == 900  # t/MWh -> g/kWh
