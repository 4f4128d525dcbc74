"""Emission factor sets as data: loading, provenance, and selection per region and date.

Two kinds of data, each file carrying its source, year, unit and licence:

- a **per-fuel factor set** (`FactorSet`): a factor for each fuel, optionally per technology
  (`gas.ccgt`), each constant or a step function of time (`[{datetime, value, source}, ...]`,
  the value of the latest `datetime` at or before the time asked, the first before that).
  Lookup falls a technology back to its fuel and a fuel with no factor to `unknown`; storage
  without a factor stays NaN (its discharge takes the mix's intensity, see `core.intensity`).
  Built in: `ipcc2014-lifecycle`, `ipcc2014-direct` (`schemas/factors/`). The **Electricity
  Maps** formats are read as they are: `config/defaults.yaml` becomes `em-defaults-<scope>`,
  and a zone file `config/zones/<ZONE>.yaml` becomes `em-<ZONE>-<scope>`, its modes overriding
  the defaults (the loaded EM defaults, else the built-in set of that scope).
- an **annual grid-average table** (`AnnualGridFactors`): official average factors per year and
  grid, with a region-to-grid mapping; China's MEE/NBS factors (`cn-mee-grid`) are built in.
  They are the fallback where no time-matched intensity exists, and the residual factor for
  market-based emissions.

`FactorLibrary.select(region, scope)` picks a region's per-fuel set: an explicit choice from
the settings, else the region's own zone set if one was loaded, else the scope's default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import yaml
from numpy.typing import NDArray

from core.errors import CoreError, InvalidInput

__all__ = [
    "AnnualGridFactors",
    "FactorLibrary",
    "FactorSet",
    "FactorSetError",
    "Scope",
]

Scope = Literal["lifecycle", "direct"]
SCOPES: Final[tuple[Scope, ...]] = ("lifecycle", "direct")
_STORAGE: Final = frozenset({"battery", "hydro_storage"})
# Electricity Maps production modes -> wattstream fuels; charge modes are not generation
_EM_MODES: Final[dict[str, str | None]] = {
    "biomass": "biomass",
    "coal": "coal",
    "gas": "gas",
    "geothermal": "geothermal",
    "hydro": "hydro",
    "nuclear": "nuclear",
    "oil": "oil",
    "solar": "solar",
    "wind": "wind",
    "unknown": "unknown",
    "battery discharge": "battery",
    "hydro discharge": "hydro_storage",
    "battery charge": None,
    "hydro charge": None,
}
_G_PER: Final[dict[str, float]] = {"g": 1.0, "kg": 1000.0, "t": 1_000_000.0}
_UNIT: Final = re.compile(r"(?P<mass>g|kg|t)CO2(?P<eq>eq|e)?/(?P<energy>kWh|MWh)\Z")


class FactorSetError(CoreError):
    """A factor file that cannot be read as any known format."""


def _epoch_us(when: Any) -> int:
    if isinstance(when, datetime):
        aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    elif isinstance(when, date):
        aware = datetime(when.year, when.month, when.day, tzinfo=UTC)
    else:
        text = str(when)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1_000_000)


def _to_g_per_kwh(unit: str) -> float:
    m = _UNIT.match(unit.replace(" ", ""))
    if m is None:
        raise FactorSetError(f"unit {unit!r} is not <g|kg|t>CO2[eq]/<kWh|MWh>")
    return _G_PER[m["mass"]] / (1000.0 if m["energy"] == "MWh" else 1.0)


def _steps(spec: Any, scale: float, where: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """A constant, `{value[, datetime]}`, or a list of `{datetime, value}` as sorted steps."""
    items = spec if isinstance(spec, list) else [spec]
    points: list[tuple[int, float]] = []
    for item in items:
        if isinstance(item, int | float) and not isinstance(item, bool):
            points.append((np.iinfo(np.int64).min, float(item)))
        elif isinstance(item, Mapping) and isinstance(item.get("value"), int | float):
            start = _epoch_us(item["datetime"]) if "datetime" in item else np.iinfo(np.int64).min
            points.append((start, float(item["value"])))
        else:
            raise FactorSetError(f"{where}: {item!r} is not a number or {{datetime, value}}")
    points.sort()
    values = np.round(np.array([v for _, v in points], dtype=np.float64) * scale, 9)
    if np.any(~np.isfinite(values)) or np.any(values < 0):
        raise FactorSetError(f"{where}: factors must be finite and not negative")
    return np.array([t for t, _ in points], dtype=np.int64), values


@dataclass(frozen=True)
class FactorSet:
    """Per-fuel factors in gCO2(eq)/kWh, with provenance; see the module docstring."""

    name: str
    scope: Scope
    unit: str  # as published; values are held in g/kWh
    source: str
    licence: str
    year: int | None = None
    region: str | None = None  # a zone's own set
    steps: Mapping[str, tuple[NDArray[np.int64], NDArray[np.float64]]] = field(default_factory=dict)

    def _lookup(self, key: str) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
        fuel = key.split(".", 1)[0]
        for k in (key, fuel):
            if k in self.steps:
                return self.steps[k]
        if fuel in _STORAGE:
            return None
        return self.steps.get("unknown")

    def matrix(self, keys: Sequence[str], ts_us: NDArray[np.int64]) -> NDArray[np.float64]:
        """Factors (len(ts_us) × len(keys)) in g/kWh; NaN for storage without a factor."""
        out = np.full((len(ts_us), len(keys)), np.nan, dtype=np.float64)
        for j, key in enumerate(keys):
            found = self._lookup(key)
            if found is None:
                continue
            starts, values = found
            idx = np.searchsorted(starts, ts_us, side="right") - 1
            out[:, j] = values[np.clip(idx, 0, len(values) - 1)]
        return out

    def value(self, key: str, ts_us: int) -> float:
        return float(self.matrix([key], np.array([ts_us], dtype=np.int64))[0, 0])


@dataclass(frozen=True)
class AnnualGridFactors:
    """Official annual average grid factors (g/kWh) per year and grid, with provenance."""

    name: str
    scope: Scope
    unit: str
    source: str
    licence: str
    values: Mapping[int, Mapping[str, float]]
    grids: Mapping[str, str]  # region -> grid name
    prefix: str  # regions this table covers, e.g. "CN" covers CN and CN-*
    residual_key: str | None = None

    def covers(self, region: str) -> bool:
        return region == self.prefix or region.startswith(self.prefix + "-")

    def _year(self, year: int, key: str) -> int | None:
        years = sorted(y for y, v in self.values.items() if key in v)
        if not years:
            return None
        before = [y for y in years if y <= year]
        return before[-1] if before else years[0]

    def average(self, region: str, year: int) -> tuple[float, str] | None:
        """(g/kWh, "<table>:<year>:<grid>") for a region's grid in a year, national if unmapped."""
        if not self.covers(region):
            return None
        for key in (self.grids.get(region), "national"):
            if key is None:
                continue
            y = self._year(year, key)
            if y is not None:
                return self.values[y][key], f"{self.name}:{y}:{key}"
        return None

    def residual(self, region: str, year: int) -> tuple[float, str] | None:
        """The factor for energy no green certificate covers (market-based), if the table has one."""
        if self.residual_key is None or not self.covers(region):
            return None
        y = self._year(year, self.residual_key)
        if y is None:
            return None
        return self.values[y][self.residual_key], f"{self.name}:{y}:{self.residual_key}"


def _scope(value: Any, where: str) -> Scope:
    if value not in SCOPES:
        raise FactorSetError(f"{where}: scope must be one of {SCOPES}, not {value!r}")
    return value  # type: ignore[no-any-return]


def _own_format(doc: Mapping[str, Any], where: str) -> FactorSet | AnnualGridFactors:
    for key in ("name", "scope", "unit", "source", "licence"):
        if key not in doc:
            raise FactorSetError(f"{where}: missing {key!r} (every factor file states its provenance)")
    scale = _to_g_per_kwh(str(doc["unit"]))
    if doc.get("kind") == "annual_grid_average":
        grids = {str(k): str(v) for k, v in (doc.get("grids") or {}).items()}
        prefixes = {r.split("-", 1)[0] for r in grids}
        if len(prefixes) != 1:
            raise FactorSetError(f"{where}: the grids of one table must share a country prefix")
        return AnnualGridFactors(
            name=str(doc["name"]),
            scope=_scope(doc["scope"], where),
            unit=str(doc["unit"]),
            source=str(doc["source"]).strip(),
            licence=str(doc["licence"]),
            values={
                int(y): {str(k): round(float(v) * scale, 9) for k, v in row.items()}
                for y, row in (doc.get("values") or {}).items()
            },
            grids=grids,
            prefix=prefixes.pop(),
            residual_key=doc.get("residual"),
        )
    factors = doc.get("factors") or {}
    return FactorSet(
        name=str(doc["name"]),
        scope=_scope(doc["scope"], where),
        unit=str(doc["unit"]),
        source=str(doc["source"]).strip(),
        licence=str(doc["licence"]),
        year=int(doc["year"]) if doc.get("year") is not None else None,
        region=doc.get("region"),
        steps={str(k): _steps(v, scale, f"{where}: {k}") for k, v in factors.items()},
    )


def _em_steps(
    modes: Mapping[str, Any], where: str
) -> dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]:
    out = {}
    for mode, spec in modes.items():
        if mode not in _EM_MODES:
            raise FactorSetError(f"{where}: unknown Electricity Maps mode {mode!r}")
        fuel = _EM_MODES[mode]
        if fuel is not None:
            out[fuel] = _steps(spec, 1.0, f"{where}: {mode}")  # EM factors are gCO2eq/kWh
    return out


def _em_sources(modes: Mapping[str, Any]) -> str:
    seen: list[str] = []
    for spec in modes.values():
        for item in spec if isinstance(spec, list) else [spec]:
            src = item.get("source") if isinstance(item, Mapping) else None
            if src and src not in seen:
                seen.append(str(src))
    return "; ".join(seen)


_EM_LICENCE: Final = "electricitymaps-contrib (AGPL-3.0; MIT before commit cb9664f), with each value's source"


def _zone_of(path: Path) -> str:
    stem = path.stem
    return stem.split("zone_", 1)[1] if "zone_" in stem else stem


@dataclass
class FactorLibrary:
    """All loaded factor data, and the selection of a region's set."""

    sets: dict[str, FactorSet] = field(default_factory=dict)
    annual: dict[str, AnnualGridFactors] = field(default_factory=dict)
    choices: dict[tuple[str, Scope], str] = field(default_factory=dict)  # (region, scope) -> set name
    defaults: dict[Scope, str] = field(
        default_factory=lambda: {"lifecycle": "ipcc2014-lifecycle", "direct": "ipcc2014-direct"}
    )

    @classmethod
    def load(cls, files: Iterable[Path] = (), choices: Mapping[str, str] | None = None) -> FactorLibrary:
        """Built-in sets, then `files` (own format, or Electricity Maps defaults / zone files).
        `choices` maps "<region>:<scope>" to a set name."""
        lib = cls()
        builtin = resources.files("schemas") / "factors"
        for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".yaml"):
                lib._add(_own_format(yaml.safe_load(entry.read_text(encoding="utf-8")), entry.name))
        em_zones: list[tuple[Path, Mapping[str, Any]]] = []
        for path in files:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            if not isinstance(doc, Mapping):
                raise FactorSetError(f"{path}: not a mapping")
            if "emissionFactors" in doc and "fallbackZoneMixes" in doc and "zone_name" not in doc:
                lib._add_em_defaults(doc, str(path))
            elif "emissionFactors" in doc or "zone_name" in doc:
                em_zones.append((Path(path), doc))
            else:
                lib._add(_own_format(doc, str(path)))
        for path, doc in em_zones:  # after every defaults file, whatever the order given
            lib._add_em_zone(_zone_of(path), doc, str(path))
        for key, name in (choices or {}).items():
            region, _, scope = key.rpartition(":")
            if not region:
                raise FactorSetError(f"factor choice {key!r} is not <region>:<scope>")
            lib.choices[(region, _scope(scope, key))] = name
            if name not in lib.sets:
                raise FactorSetError(f"factor choice {key!r} names an unknown set {name!r}")
        return lib

    def _add(self, item: FactorSet | AnnualGridFactors) -> None:
        if item.name in self.sets or item.name in self.annual:
            raise FactorSetError(f"two factor files define {item.name!r}")
        if isinstance(item, FactorSet):
            self.sets[item.name] = item
        else:
            self.annual[item.name] = item

    def _add_em_defaults(self, doc: Mapping[str, Any], where: str) -> None:
        for scope in SCOPES:
            modes = (doc.get("emissionFactors") or {}).get(scope) or {}
            self._add(
                FactorSet(
                    name=f"em-defaults-{scope}",
                    scope=scope,
                    unit="gCO2eq/kWh",
                    source=f"Electricity Maps defaults ({Path(where).name}): {_em_sources(modes)}",
                    licence=_EM_LICENCE,
                    steps=_em_steps(modes, where),
                )
            )

    def _add_em_zone(self, zone: str, doc: Mapping[str, Any], where: str) -> None:
        for scope in SCOPES:
            modes = (doc.get("emissionFactors") or {}).get(scope) or {}
            base = self.sets.get(f"em-defaults-{scope}") or self.sets[self.defaults[scope]]
            steps = dict(base.steps)
            steps.update(_em_steps(modes, where))
            own = _em_sources(modes)
            self._add(
                FactorSet(
                    name=f"em-{zone}-{scope}",
                    scope=scope,
                    unit="gCO2eq/kWh",
                    source=f"Electricity Maps zone {zone} ({Path(where).name})"
                    + (f": {own}" if own else "")
                    + f"; other modes from {base.name}",
                    licence=_EM_LICENCE,
                    region=zone,
                    steps=steps,
                )
            )

    def select(self, region: str, scope: Scope) -> FactorSet:
        """The per-fuel set for a region: chosen, else the zone's own, else the default."""
        name = self.choices.get((region, scope))
        if name is None:
            own = f"em-{region}-{scope}"
            name = own if own in self.sets else self.defaults[scope]
        return self.sets[name]

    def annual_for(self, region: str) -> AnnualGridFactors | None:
        for table in self.annual.values():
            if table.covers(region):
                return table
        return None

    def get(self, name: str) -> FactorSet:
        try:
            return self.sets[name]
        except KeyError:
            raise InvalidInput(f"no factor set named {name!r}") from None
