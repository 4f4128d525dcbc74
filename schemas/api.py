"""API models: what the HTTP API returns and accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict, JsonValue

from schemas.bounds import Instant
from schemas.openapi import example
from schemas.vocabulary import (
    BucketQuality,
    EmissionQuality,
    MeterRole,
    ReadingQuality,
    Resolution,
    SiteKind,
    SubItem,
)

__all__ = [
    "BalanceBucket",
    "CarbonWindow",
    "CertificateCreate",
    "CertificatePublic",
    "EmissionBucket",
    "EnergyBucket",
    "EnergySeries",
    "ErrorBody",
    "ErrorDetail",
    "GridMixPublic",
    "GridRegion",
    "IntensityNow",
    "IntensityPoint",
    "IntensitySeries",
    "KeyCreate",
    "KeyCreated",
    "KeyPublic",
    "MeterPublic",
    "Page",
    "PueBucket",
    "PueSeries",
    "ReadingPublic",
    "ShareBucket",
    "SharesSeries",
    "SiteBalance",
    "SiteEmissions",
    "SiteLatest",
    "SiteNow",
    "SitePublic",
    "TargetGap",
]

T = TypeVar("T")


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True)


# Model-level examples (`examples` in /openapi.json) are one realistic, self-consistent answer
# each: a Hangzhou building (hz-b001) and data centre (hz-dc01) on the Zhejiang grid (CN-ZJ) on
# 2026-11-24, times in UTC. tests/unit/test_openapi_examples.py validates every one of them.
_SITE_EXAMPLE: Final[JsonDict] = {
    "site_id": "hz-b001",
    "name": "西湖区政务中心",
    "kind": "building",
    "region": "CN-ZJ",
    "timezone": "Asia/Shanghai",
    "floor_area_m2": 12500.0,
    "tenant": "hz-xihu",
    "auto_registered": False,
    "meters": 5,
    "energy_quota_month_kwh": 120000.0,
    "energy_quota_year_kwh": 1300000.0,
    "carbon_quota_month_t": 70.0,
    "carbon_quota_year_t": 780.0,
}


class SitePublic(_Public):
    model_config = example(_SITE_EXAMPLE)

    site_id: str = Field(examples=["hz-b001"])
    name: str | None = Field(None, examples=["西湖区政务中心"])
    kind: SiteKind = "building"
    region: str | None = Field(None, examples=["CN-ZJ"])
    timezone: str = Field(examples=["Asia/Shanghai"])
    floor_area_m2: float | None = Field(None, examples=[12500.0])
    tenant: str = Field(examples=["default"])
    auto_registered: bool = Field(description="created by the ingest worker on first sight of a reading")
    meters: int = Field(ge=0, description="number of meters at the site")
    energy_quota_month_kwh: float | None = Field(None, description="能耗限额 per local calendar month")
    energy_quota_year_kwh: float | None = None
    carbon_quota_month_t: float | None = Field(None, description="碳排放限额 per local calendar month, tCO2e")
    carbon_quota_year_t: float | None = None


class MeterPublic(_Public):
    model_config = example(
        {
            "site_id": "hz-b001",
            "meter": "sub-hvac",
            "role": "sub_item",
            "sub_item": "空调",
            "multiplier": 1.0,
            "rollover_kwh": 1000000.0,
            "max_power_kw": 400.0,
            "auto_registered": False,
            "last_reading_at": "2026-11-24T02:15:00Z",
        }
    )

    site_id: str = Field(examples=["hz-b001"])
    meter: str = Field(examples=["main"])
    role: MeterRole = "main"
    sub_item: SubItem | None = None
    multiplier: float = 1.0
    rollover_kwh: float | None = None
    max_power_kw: float | None = None
    auto_registered: bool
    last_reading_at: datetime | None = Field(None, description="UTC time of the newest reading")


class ReadingPublic(_Public):
    model_config = example(
        {"ts": "2026-11-24T02:15:00Z", "energy_kwh": 1234567.8, "power_kw": 312.4, "quality": "ok"}
    )

    ts: datetime = Field(description="UTC, RFC 3339", examples=["2026-11-24T02:15:00Z"])
    energy_kwh: float | None = Field(None, description="cumulative register", examples=[123456.789])
    power_kw: float | None = Field(None, examples=[42.1])
    quality: ReadingQuality = "ok"


def _page_examples(schema: JsonDict, cls: type[Any]) -> None:
    """A concrete page (`Page[SitePublic]`) shows its item model's example as a one-item last page."""
    args = cls.__pydantic_generic_metadata__["args"]
    item = args[0] if args else None
    extra = (
        item.model_config.get("json_schema_extra")
        if isinstance(item, type) and issubclass(item, BaseModel)
        else None
    )
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if isinstance(examples, list) and examples:
        schema["examples"] = [{"items": [examples[0]], "next_cursor": None}]


class Page(_Public, Generic[T]):
    model_config = ConfigDict(json_schema_extra=_page_examples)

    items: list[T]
    next_cursor: str | None = Field(
        None, description="pass as `cursor` to get the next page; null on the last"
    )


class ErrorDetail(_Public):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["site 'hz-x' not found"])
    field: str | None = Field(None, description="the parameter or body field at fault", examples=["start"])


class ErrorBody(_Public):
    error: ErrorDetail


class EnergyBucket(_Public):
    start: datetime = Field(description="bucket start, UTC")
    end: datetime = Field(description="bucket end, UTC (a local day can be 23, 24 or 25 hours)")
    kwh: float = Field(examples=[12.5])
    coverage: float = Field(
        ge=0, le=1, description="share of the bucket's time covered by measured intervals"
    )
    quality: BucketQuality


class EnergySeries(_Public):
    model_config = example(
        {
            "site": "hz-b001",
            "meter": None,
            "sub_item": None,
            "resolution": "hour",
            "timezone": "Asia/Shanghai",
            "total_kwh": 825.3,
            "coverage": 0.9,
            "buckets": [
                {
                    "start": "2026-11-24T01:00:00Z",
                    "end": "2026-11-24T02:00:00Z",
                    "kwh": 298.4,
                    "coverage": 1.0,
                    "quality": "measured",
                },
                {
                    "start": "2026-11-24T02:00:00Z",
                    "end": "2026-11-24T03:00:00Z",
                    "kwh": 312.6,
                    "coverage": 1.0,
                    "quality": "measured",
                },
                {
                    "start": "2026-11-24T03:00:00Z",
                    "end": "2026-11-24T04:00:00Z",
                    "kwh": 214.3,
                    "coverage": 0.7,
                    "quality": "partial",
                },
            ],
        }
    )

    site: str
    meter: str | None = None
    sub_item: SubItem | None = None
    resolution: Resolution
    timezone: str = Field(examples=["Asia/Shanghai"])
    total_kwh: float
    coverage: float = Field(ge=0, le=1, description="share of the covered buckets' time that was measured")
    buckets: list[EnergyBucket]


class SiteNow(_Public):
    model_config = example(
        {
            "site": "hz-b001",
            "power_kw": 312.4,
            "as_of": "2026-11-24T02:15:00Z",
            "meters_reporting": 1,
            "today_kwh": 2463.8,
            "today_start": "2026-11-23T16:00:00Z",
            "today_coverage": 1.0,
        }
    )

    site: str
    power_kw: float | None = Field(
        description="sum of the main meters' latest power; null if none reports power"
    )
    as_of: datetime | None = Field(description="the oldest of those latest readings, UTC")
    meters_reporting: int
    today_kwh: float = Field(description="energy of the main meters since local midnight in the site's zone")
    today_start: datetime = Field(description="local midnight, UTC")
    today_coverage: float = Field(ge=0, le=1)


class BalanceBucket(_Public):
    start: datetime
    end: datetime
    main_kwh: float
    sub_items_kwh: dict[str, float] = Field(
        examples=[{"照明插座": 10.5, "空调": 30.1, "动力": 12.0, "特殊": 1.2}]
    )
    unmetered_kwh: float = Field(description="main minus the sum of sub-items")
    unmetered_share: float | None = Field(description="unmetered / main; null when main is 0")
    flagged: bool = Field(description="|unmetered share| exceeds the site's balance tolerance")


class SiteBalance(_Public):
    model_config = example(
        {
            "site": "hz-b001",
            "resolution": "hour",
            "timezone": "Asia/Shanghai",
            "tolerance": 0.05,
            "buckets": [
                {
                    "start": "2026-11-24T01:00:00Z",
                    "end": "2026-11-24T02:00:00Z",
                    "main_kwh": 298.4,
                    "sub_items_kwh": {"照明插座": 62.1, "空调": 141.7, "动力": 71.3, "特殊": 9.8},
                    "unmetered_kwh": 13.5,
                    "unmetered_share": 0.0452,
                    "flagged": False,
                },
                {
                    "start": "2026-11-24T02:00:00Z",
                    "end": "2026-11-24T03:00:00Z",
                    "main_kwh": 312.6,
                    "sub_items_kwh": {"照明插座": 64.0, "空调": 150.2, "动力": 63.5, "特殊": 9.9},
                    "unmetered_kwh": 25.0,
                    "unmetered_share": 0.08,
                    "flagged": True,
                },
            ],
        }
    )

    site: str
    resolution: Resolution
    timezone: str
    tolerance: float
    buckets: list[BalanceBucket]


class IntensityPoint(_Public):
    start: datetime = Field(description="interval start, UTC")
    end: datetime
    intensity_g_per_kwh: float | None = Field(examples=[496.8], description="gCO2(eq)/kWh")
    factor_set: str = Field(examples=["ipcc2014-lifecycle"], description="the factors that produced it")
    scope: Literal["lifecycle", "direct", "published"]
    basis: Literal["production", "consumption", "published"]
    kind: Literal["actual", "forecast"]
    generation_mw: float | None = None
    fossil_share: float | None = None
    renewable_share: float | None = None
    nonfossil_share: float | None = Field(None, description="renewable + nuclear, of primary generation")
    flags: list[str] = Field(examples=[["neighbour_fallback:CN-AH"]])
    mix_revision: int | None = None
    recorded_at: datetime = Field(description="when this value was computed or received")
    restated: bool = Field(description="it replaced an earlier value for the same interval")


class GridRegion(_Public):
    model_config = example({"region": "CN-ZJ", "latest": "2026-11-24T02:10:00Z"})

    region: str = Field(examples=["CN-ZJ"])
    latest: datetime = Field(description="start of the region's latest actual interval with intensity, UTC")


# the latest five-minute interval of CN-ZJ, an overcast morning: coal-heavy, with Sichuan hydro
# imported over the UHV lines pulling the consumption-based intensity below the production one
_MIX_EXAMPLE: Final[JsonDict] = {
    "region": "CN-ZJ",
    "start": "2026-11-24T02:10:00Z",
    "end": "2026-11-24T02:15:00Z",
    "revision": 0,
    "generation_mw": {
        "coal": 34000.0,
        "gas.ccgt": 2400.0,
        "nuclear": 9100.0,
        "hydro": 1600.0,
        "wind": 1200.0,
        "solar": 2900.0,
    },
    "by_fuel_mw": {
        "coal": 34000.0,
        "gas": 2400.0,
        "nuclear": 9100.0,
        "hydro": 1600.0,
        "wind": 1200.0,
        "solar": 2900.0,
    },
    "imports_mw": {"CN-SC": 7200.0, "CN-AH": 3100.0},
    "exports_mw": {"CN-SH": 1500.0},
    "emissions_t_per_h": None,
}


class GridMixPublic(_Public):
    model_config = example(_MIX_EXAMPLE)

    region: str
    start: datetime
    end: datetime
    revision: int
    generation_mw: dict[str, float] = Field(examples=[{"coal": 31000, "gas.ccgt": 2100, "nuclear": 9000}])
    by_fuel_mw: dict[str, float] = Field(description="technologies rolled up to their fuel")
    imports_mw: dict[str, float]
    exports_mw: dict[str, float]
    emissions_t_per_h: float | None = Field(None, description="as published by the operator")


class TargetGap(_Public):
    year: int = Field(examples=[2025])
    target_share: float = Field(examples=[0.24], description="non-fossil share of generation targeted")
    nonfossil_share: float | None
    gap: float | None = Field(description="target minus actual; negative once met")
    met: bool | None


# its shares of primary generation, and its intensity points
_SHARES_NOW: Final[JsonDict] = {
    "generation_mw": 51200.0,
    "fossil_share": 0.7109,
    "renewable_share": 0.1113,
    "nonfossil_share": 0.2891,
}
_POINT_NOW: Final[JsonDict] = {
    "start": "2026-11-24T02:10:00Z",
    "end": "2026-11-24T02:15:00Z",
    "factor_set": "ipcc2014-lifecycle",
    "scope": "lifecycle",
    "kind": "actual",
    **_SHARES_NOW,
    "flags": [],
    "mix_revision": 0,
    "recorded_at": "2026-11-24T02:15:03Z",
    "restated": False,
}
_TARGETS_EXAMPLE: Final[list[JsonValue]] = [
    {"year": 2025, "target_share": 0.24, "nonfossil_share": 0.2891, "gap": -0.0491, "met": True},
    {"year": 2030, "target_share": 0.3, "nonfossil_share": 0.2891, "gap": 0.0109, "met": False},
]


class IntensityNow(_Public):
    model_config = example(
        {
            "region": "CN-ZJ",
            "as_of": "2026-11-24T02:10:00Z",
            "intensities": [
                {**_POINT_NOW, "basis": "consumption", "intensity_g_per_kwh": 523.0},
                {**_POINT_NOW, "basis": "production", "intensity_g_per_kwh": 573.2},
            ],
            "mix": _MIX_EXAMPLE,
            "targets": _TARGETS_EXAMPLE,
        }
    )

    region: str
    as_of: datetime | None = Field(description="start of the latest interval with intensity")
    intensities: list[IntensityPoint] = Field(
        description="the latest actual value of every factor set and basis"
    )
    mix: GridMixPublic | None
    targets: list[TargetGap]


class IntensitySeries(_Public):
    model_config = example(
        {
            "region": "CN-ZJ",
            "factor_set": "ipcc2014-lifecycle",
            "basis": "consumption",
            "kind": "actual",
            "resolution": "hour",
            "as_of": None,
            "points": [
                {
                    **_POINT_NOW,
                    "start": "2026-11-24T00:00:00Z",
                    "end": "2026-11-24T01:00:00Z",
                    "basis": "consumption",
                    "intensity_g_per_kwh": 536.7,
                    "generation_mw": 49800.0,
                    "fossil_share": 0.7177,
                    "renewable_share": 0.0996,
                    "nonfossil_share": 0.2823,
                    "recorded_at": "2026-11-24T01:00:03Z",
                },
                {
                    **_POINT_NOW,
                    "start": "2026-11-24T01:00:00Z",
                    "end": "2026-11-24T02:00:00Z",
                    "basis": "consumption",
                    "intensity_g_per_kwh": 527.4,
                    "generation_mw": 50600.0,
                    "fossil_share": 0.7145,
                    "renewable_share": 0.1052,
                    "nonfossil_share": 0.2855,
                    "recorded_at": "2026-11-24T02:00:03Z",
                },
            ],
        }
    )

    region: str
    factor_set: str
    basis: Literal["production", "consumption", "published"]
    kind: Literal["actual", "forecast"]
    resolution: Literal["raw", "hour", "day"]
    as_of: datetime | None = Field(description="values as known at this time; null: current")
    points: list[IntensityPoint]


class ShareBucket(_Public):
    start: datetime
    end: datetime
    generation_mwh: float
    fossil_share: float | None
    renewable_share: float | None
    nonfossil_share: float | None


class SharesSeries(_Public):
    model_config = example(
        {
            "region": "CN-ZJ",
            "resolution": "day",
            "overall": {
                "start": "2026-11-22T16:00:00Z",
                "end": "2026-11-24T16:00:00Z",
                "generation_mwh": 2470300.0,
                "fossil_share": 0.7121,
                "renewable_share": 0.1099,
                "nonfossil_share": 0.2879,
            },
            "buckets": [
                {
                    "start": "2026-11-22T16:00:00Z",
                    "end": "2026-11-23T16:00:00Z",
                    "generation_mwh": 1228800.0,
                    "fossil_share": 0.7231,
                    "renewable_share": 0.0994,
                    "nonfossil_share": 0.2769,
                },
                {
                    "start": "2026-11-23T16:00:00Z",
                    "end": "2026-11-24T16:00:00Z",
                    "generation_mwh": 1241500.0,
                    "fossil_share": 0.7012,
                    "renewable_share": 0.1203,
                    "nonfossil_share": 0.2988,
                },
            ],
            "targets": [
                {
                    "year": 2025,
                    "target_share": 0.24,
                    "nonfossil_share": 0.2879,
                    "gap": -0.0479,
                    "met": True,
                },
                {
                    "year": 2030,
                    "target_share": 0.3,
                    "nonfossil_share": 0.2879,
                    "gap": 0.0121,
                    "met": False,
                },
            ],
        }
    )

    region: str
    resolution: Literal["hour", "day", "month"]
    overall: ShareBucket
    buckets: list[ShareBucket]
    targets: list[TargetGap] = Field(
        description="the overall non-fossil share against the programme's targets"
    )


class CarbonWindow(_Public):
    model_config = example(
        {
            "region": "CN-ZJ",
            "start": "2026-11-24T04:00:00Z",
            "end": "2026-11-24T06:00:00Z",
            "duration_minutes": 120,
            "mean_intensity_g_per_kwh": 498.6,
            "horizon_mean_g_per_kwh": 541.3,
            "saving_share": 0.0789,
            "source": "history",
            "shifted_days": 1,
            "factor_set": "ipcc2014-lifecycle",
            "basis": "consumption",
        }
    )

    region: str
    start: datetime = Field(description="when to start the flexible load, UTC")
    end: datetime
    duration_minutes: int
    mean_intensity_g_per_kwh: float
    horizon_mean_g_per_kwh: float = Field(description="the mean over the whole horizon, for comparison")
    saving_share: float = Field(description="1 - window mean / horizon mean")
    source: Literal["forecast", "history"] = Field(
        description="forecast intensities where published, else the same hours of the previous day(s)"
    )
    shifted_days: int = Field(0, description="for history: how many days the past was shifted forward")
    factor_set: str
    basis: Literal["production", "consumption", "published"]


class EmissionBucket(_Public):
    start: datetime
    end: datetime
    kwh: float
    location_kg: float | None = Field(description="kgCO2(eq), location-based (time-matched grid intensity)")
    market_kg: float | None = Field(description="kgCO2(eq), market-based (after green certificates)")
    intensity_g_per_kwh: float | None = Field(description="energy-weighted intensity used")
    quality: EmissionQuality = Field(description="the worst of the bucket's intervals")
    factor_sets: list[str] = Field(examples=[["ipcc2014-lifecycle"]])
    intensity_sources: list[str] = Field(examples=[["consumption"]])
    restated: bool = Field(description="some interval's value replaced an earlier one")


class SiteEmissions(_Public):
    model_config = example(
        {
            "site": "hz-b001",
            "region": "CN-ZJ",
            "resolution": "hour",
            "timezone": "Asia/Shanghai",
            "as_of": None,
            "total_kwh": 611.0,
            "location_tco2e": 0.3194,
            "market_tco2e": 0.11291,
            "certificates_mwh": 0.4167,
            "residual_factor_g_per_kwh": 581.0,
            "factor_sets": ["ipcc2014-lifecycle"],
            "quality": {"measured": 8},
            "buckets": [
                {
                    "start": "2026-11-24T01:00:00Z",
                    "end": "2026-11-24T02:00:00Z",
                    "kwh": 298.4,
                    "location_kg": 158.63,
                    "market_kg": 55.14,
                    "intensity_g_per_kwh": 531.6,
                    "quality": "measured",
                    "factor_sets": ["ipcc2014-lifecycle"],
                    "intensity_sources": ["consumption"],
                    "restated": False,
                },
                {
                    "start": "2026-11-24T02:00:00Z",
                    "end": "2026-11-24T03:00:00Z",
                    "kwh": 312.6,
                    "location_kg": 160.77,
                    "market_kg": 57.77,
                    "intensity_g_per_kwh": 514.3,
                    "quality": "measured",
                    "factor_sets": ["ipcc2014-lifecycle"],
                    "intensity_sources": ["consumption"],
                    "restated": False,
                },
            ],
        }
    )

    site: str
    region: str | None
    resolution: Resolution
    timezone: str
    as_of: datetime | None = Field(description="values as known at this time; null: current")
    total_kwh: float
    location_tco2e: float
    market_tco2e: float
    certificates_mwh: float = Field(
        description="green-power contracts and certificates applied to this range"
    )
    residual_factor_g_per_kwh: float | None = Field(description="energy-weighted factor for uncovered energy")
    factor_sets: list[str]
    quality: dict[str, int] = Field(description="intervals by quality", examples=[{"measured": 96}])
    buckets: list[EmissionBucket]


# 150 green certificates (绿证, 1 MWh each) for November in Hangzhou's calendar
_CERTIFICATE_EXAMPLE: Final[JsonDict] = {
    "kind": "certificate",
    "period_start": "2026-10-31T16:00:00Z",
    "period_end": "2026-11-30T16:00:00Z",
    "mwh": 150.0,
    "factor_g_per_kwh": 0.0,
    "reference": "GEC-2026-330100-000123",
}


class CertificateCreate(BaseModel):
    model_config = example(_CERTIFICATE_EXAMPLE, extra="forbid")

    kind: Literal["green_power", "certificate"] = Field(description="绿电 contract or 绿证 certificate")
    period_start: Instant
    period_end: Instant
    mwh: float = Field(gt=0, lt=1e9)
    factor_g_per_kwh: float = Field(0.0, ge=0, lt=5000, description="emissions of the contracted power")
    reference: str | None = Field(None, max_length=200, examples=["GEC-2026-330100-000123"])


class CertificatePublic(_Public):
    model_config = example({"certificate_id": 17, "site_id": "hz-b001", **_CERTIFICATE_EXAMPLE})

    certificate_id: int
    site_id: str
    kind: Literal["green_power", "certificate"]
    period_start: datetime
    period_end: datetime
    mwh: float
    factor_g_per_kwh: float
    reference: str | None


KeyRole = Literal["admin", "operator", "manager", "alerts"]


class KeyCreate(BaseModel):
    model_config = example(
        {
            "name": "西湖区政务中心 energy manager",
            "role": "manager",
            "tenant": "hz-xihu",
            "expires_in_days": 365,
            "rate_per_s": 20,
            "burst": 100,
        },
        extra="forbid",
    )

    name: str = Field(min_length=1, max_length=100, examples=["西湖区政务中心 energy manager"])
    role: KeyRole = Field(examples=["manager"])
    tenant: str | None = Field(None, max_length=64, description="manager: every site of this tenant")
    sites: list[str] = Field(default_factory=list, max_length=1000, description="manager: these sites")
    expires_in_days: float | None = Field(None, gt=0, le=3650, description="none: never expires")
    rate_per_s: float | None = Field(None, gt=0, le=100_000, description="none: the API's default")
    burst: int | None = Field(None, ge=1, le=1_000_000)


_KEY_EXAMPLE: Final[JsonDict] = {
    "key_id": "3f9a0c1d2e4b",
    "name": "西湖区政务中心 energy manager",
    "role": "manager",
    "tenant": "hz-xihu",
    "sites": [],
    "rate_per_s": 20.0,
    "burst": 100,
    "created_at": "2026-11-20T01:30:00Z",
    "expires_at": "2027-11-20T01:30:00Z",
    "revoked_at": None,
    "last_used_at": "2026-11-24T02:15:07Z",
}


class KeyPublic(_Public):
    model_config = example(_KEY_EXAMPLE)

    key_id: str = Field(examples=["3f9a0c1d2e4b"])
    name: str
    role: KeyRole
    tenant: str | None
    sites: list[str]
    rate_per_s: float | None
    burst: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(_Public):
    model_config = example(
        {
            "key": {**_KEY_EXAMPLE, "last_used_at": None},
            "token": "ws_3f9a0c1d2e4b_Jx7qN2vKp9RfT4mWc8LsYh3DzA6uGe1BoQ5iXn0EtVr",
        }
    )

    key: KeyPublic
    token: str = Field(description="send as `Authorization: Bearer <token>`; shown only now")


class SiteLatest(_Public):
    model_config = example(
        {
            "site": "hz-b001",
            "power_kw": 312.4,
            "as_of": "2026-11-24T02:15:00Z",
            "bucket_start": "2026-11-24T02:00:00Z",
            "kwh": 77.9,
            "co2e_kg": 40.74,
            "intensity_g_per_kwh": 523.0,
            "factor_set": "ipcc2014-lifecycle",
            "emissions_quality": "measured",
            "source": "stream",
        }
    )

    site: str
    power_kw: float | None = Field(description="the site's total power now (its main or facility meters)")
    as_of: datetime | None = Field(description="the newest reading behind it, UTC")
    bucket_start: datetime | None = Field(None, description="the latest interval with energy")
    kwh: float | None = None
    co2e_kg: float | None = Field(None, description="its location-based emissions")
    intensity_g_per_kwh: float | None = None
    factor_set: str | None = None
    emissions_quality: EmissionQuality | None = None
    source: Literal["stream", "database"] = Field(
        description="stream: the live site events, held in memory; database: none seen yet by this process"
    )


class PueBucket(_Public):
    start: datetime
    total_kwh: float | None
    it_kwh: float | None
    pue: float | None
    grade: int | None = Field(description="GB 40879-2021 grade 1, 2 or 3; null above the limit value")


class PueSeries(_Public):
    model_config = example(
        {
            "site": "hz-dc01",
            "resolution": "day",
            "pue": 1.289,
            "grade": 2,
            "standard": "GB 40879-2021",
            "grade_limits": {"1": 1.2, "2": 1.3, "3": 1.5},
            "buckets": [
                {
                    "start": "2026-11-22T16:00:00Z",
                    "total_kwh": 61200.0,
                    "it_kwh": 47300.0,
                    "pue": 1.2939,
                    "grade": 2,
                },
                {
                    "start": "2026-11-23T16:00:00Z",
                    "total_kwh": 60100.0,
                    "it_kwh": 46800.0,
                    "pue": 1.2842,
                    "grade": 2,
                },
            ],
        }
    )

    site: str
    resolution: Resolution
    pue: float | None = Field(description="over the range: Σ total ÷ Σ IT over buckets with IT energy")
    grade: int | None
    standard: str = Field(examples=["GB 40879-2021"])
    grade_limits: dict[str, float] = Field(examples=[{"1": 1.2, "2": 1.3, "3": 1.5}])
    buckets: list[PueBucket]
