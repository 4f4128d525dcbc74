"""API models: what the HTTP API returns and accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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


class SitePublic(_Public):
    site_id: str = Field(examples=["hz-b001"])
    name: str | None = Field(None, examples=["西湖区政务中心"])
    kind: Literal["building", "datacentre"] = "building"
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
    site_id: str = Field(examples=["hz-b001"])
    meter: str = Field(examples=["main"])
    role: Literal["main", "sub_item", "facility", "it_load", "generation"] = "main"
    sub_item: Literal["照明插座", "空调", "动力", "特殊"] | None = None
    multiplier: float = 1.0
    rollover_kwh: float | None = None
    max_power_kw: float | None = None
    auto_registered: bool
    last_reading_at: datetime | None = Field(None, description="UTC time of the newest reading")


class ReadingPublic(_Public):
    ts: datetime = Field(description="UTC, RFC 3339", examples=["2026-11-24T02:15:00Z"])
    energy_kwh: float | None = Field(None, description="cumulative register", examples=[123456.789])
    power_kw: float | None = Field(None, examples=[42.1])
    quality: Literal["ok", "estimated", "suspect"] = "ok"


class Page(_Public, Generic[T]):
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
    quality: Literal["measured", "partial", "estimated"]


class EnergySeries(_Public):
    site: str
    meter: str | None = None
    sub_item: str | None = None
    resolution: Literal["15min", "hour", "day", "month"]
    timezone: str = Field(examples=["Asia/Shanghai"])
    total_kwh: float
    coverage: float = Field(ge=0, le=1, description="share of the covered buckets' time that was measured")
    buckets: list[EnergyBucket]


class SiteNow(_Public):
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
    site: str
    resolution: Literal["15min", "hour", "day", "month"]
    timezone: str
    tolerance: float
    buckets: list[BalanceBucket]


EmissionQuality = Literal["measured", "estimated", "fallback", "missing"]


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


class GridMixPublic(_Public):
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


class IntensityNow(_Public):
    region: str
    as_of: datetime | None = Field(description="start of the latest interval with intensity")
    intensities: list[IntensityPoint] = Field(
        description="the latest actual value of every factor set and basis"
    )
    mix: GridMixPublic | None
    targets: list[TargetGap]


class IntensitySeries(_Public):
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
    region: str
    resolution: Literal["hour", "day", "month"]
    overall: ShareBucket
    buckets: list[ShareBucket]
    targets: list[TargetGap] = Field(
        description="the overall non-fossil share against the programme's targets"
    )


class CarbonWindow(_Public):
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
    site: str
    region: str | None
    resolution: Literal["15min", "hour", "day", "month"]
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


class CertificateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["green_power", "certificate"] = Field(description="绿电 contract or 绿证 certificate")
    period_start: datetime
    period_end: datetime
    mwh: float = Field(gt=0, lt=1e9)
    factor_g_per_kwh: float = Field(0.0, ge=0, lt=5000, description="emissions of the contracted power")
    reference: str | None = Field(None, max_length=200, examples=["GEC-2026-330100-000123"])


class CertificatePublic(_Public):
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
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["西湖区政务中心 energy manager"])
    role: KeyRole = Field(examples=["manager"])
    tenant: str | None = Field(None, max_length=64, description="manager: every site of this tenant")
    sites: list[str] = Field(default_factory=list, max_length=1000, description="manager: these sites")
    expires_in_days: float | None = Field(None, gt=0, le=3650, description="none: never expires")
    rate_per_s: float | None = Field(None, gt=0, le=100_000, description="none: the API's default")
    burst: int | None = Field(None, ge=1, le=1_000_000)


class KeyPublic(_Public):
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
    key: KeyPublic
    token: str = Field(description="send as `Authorization: Bearer <token>`; shown only now")


class SiteLatest(_Public):
    site: str
    power_kw: float | None = Field(description="the site's total power now (its main or facility meters)")
    as_of: datetime | None = Field(description="the newest reading behind it, UTC")
    bucket_start: datetime | None = Field(None, description="the latest interval with energy")
    kwh: float | None = None
    co2e_kg: float | None = Field(None, description="its location-based emissions")
    intensity_g_per_kwh: float | None = None
    factor_set: str | None = None
    emissions_quality: Literal["measured", "estimated", "fallback", "missing"] | None = None
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
    site: str
    resolution: str
    pue: float | None = Field(description="over the range: Σ total ÷ Σ IT over buckets with IT energy")
    grade: int | None
    standard: str = Field(examples=["GB 40879-2021"])
    grade_limits: dict[str, float] = Field(examples=[{"1": 1.2, "2": 1.3, "3": 1.5}])
    buckets: list[PueBucket]
