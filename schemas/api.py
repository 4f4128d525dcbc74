"""API models: what the HTTP API returns and accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BalanceBucket",
    "EnergyBucket",
    "EnergySeries",
    "ErrorBody",
    "ErrorDetail",
    "MeterPublic",
    "Page",
    "ReadingPublic",
    "SiteBalance",
    "SiteNow",
    "SitePublic",
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
