"""The one settings model. Read once at process start (`Settings()`), then passed down."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "TopicSpec"]


class TopicSpec(BaseSettings):
    """How wattstream creates one of its topics."""

    model_config = SettingsConfigDict(frozen=True)

    name: str
    partitions: int = Field(ge=1)
    retention_ms: int = Field(ge=-1, description="-1 keeps records forever")


_DAY_MS = 86_400_000


class Settings(BaseSettings):
    """All settings, from `WATTSTREAM_*` environment variables (or a `.env` file)."""

    model_config = SettingsConfigDict(
        env_prefix="WATTSTREAM_", env_file=".env", env_file_encoding="utf-8", frozen=True, extra="ignore"
    )

    # --- Kafka ---
    kafka_bootstrap: str = "127.0.0.1:19092"
    topic_readings: str = "wattstream.readings.v1"
    topic_grid: str = "wattstream.grid.v1"
    topic_deadletter: str = "wattstream.deadletter.v1"
    topic_intensity: str = "wattstream.intensity.v1"
    topic_site_energy: str = "wattstream.site-energy.v1"
    topic_alerts: str = "wattstream.alerts.v1"
    readings_partitions: int = Field(12, ge=6, description="keyed by site; per-site state is partition-local")
    grid_partitions: int = Field(3, ge=1)
    deadletter_partitions: int = Field(3, ge=1)
    intensity_partitions: int = Field(3, ge=1)
    site_energy_partitions: int = Field(12, ge=1, description="keyed by site")
    alerts_partitions: int = Field(3, ge=1, description="keyed by alert fingerprint")
    readings_retention_ms: int = 7 * _DAY_MS
    grid_retention_ms: int = 30 * _DAY_MS
    deadletter_retention_ms: int = 90 * _DAY_MS
    intensity_retention_ms: int = 7 * _DAY_MS
    site_energy_retention_ms: int = 1 * _DAY_MS
    alerts_retention_ms: int = 30 * _DAY_MS
    consumer_group: str = "wattstream-ingest"
    grid_consumer_group: str = "wattstream-grid"
    webhook_consumer_group: str = "wattstream-webhooks"

    # --- database ---
    database_url: SecretStr = SecretStr(
        "postgresql://wattstream_app:wattstream-app-dev@127.0.0.1:55432/wattstream"
    )
    migrate_database_url: SecretStr = SecretStr(
        "postgresql://wattstream_owner:wattstream-owner-dev@127.0.0.1:55432/wattstream"
    )
    app_role: str = Field("wattstream_app", description="granted row access by migrations; owns nothing")
    api_database_url: SecretStr = SecretStr(
        "postgresql://wattstream_api:wattstream-api-dev@127.0.0.1:55432/wattstream"
    )
    api_role: str = Field(
        "wattstream_api",
        description="the API's role: reads, writes certificates and keys, tenant row security",
    )
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(10, ge=1)

    # --- ingest ---
    ingest_batch_max_records: int = Field(5000, ge=1, description="Kafka records per getmany() batch")
    ingest_batch_timeout_ms: int = Field(200, ge=1)
    ingest_max_partition_fetch_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    ingest_session_timeout_ms: int = Field(
        10_000, ge=6_000, description="a worker that stops heartbeating loses its partitions after this"
    )
    unknown_meters: Literal["register", "deadletter"] = "register"
    unknown_fields: Literal["reject", "ignore"] = "reject"
    max_future_s: float = Field(86_400.0, gt=0, description="readings further ahead of now are dead-lettered")
    earliest_reading: AwareDatetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC), description="readings before this are dead-lettered"
    )
    max_lateness_s: float = Field(
        7 * 86_400.0, gt=0, description="readings further behind their meter's newest go to quarantine"
    )
    ingest_max_record_bytes: int = Field(
        1024 * 1024, ge=1024, description="record values larger than this are dead-lettered as too_large"
    )
    ingest_max_json_depth: int = Field(
        32, ge=2, description="JSON nesting deeper than this (a batch is 3 deep) is dead-lettered as too_deep"
    )
    ingest_max_failures: int = Field(
        3,
        ge=1,
        description="a record whose processing failed this many times (counted in the database, across "
        "restarts) is kept in dead_letter_records, dead-lettered as processing_failed and passed",
    )
    deadletter_truncate_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="a dead letter too large for the dead-letter topic carries this much of its value "
        "(the whole record is kept in dead_letter_records)",
    )
    shutdown_grace_s: float = Field(10.0, gt=0)
    db_retry_initial_s: float = Field(0.5, gt=0)
    db_retry_max_s: float = Field(10.0, gt=0)
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: int = Field(9464, ge=0, le=65535, description="0 disables the worker's /metrics")

    # --- energy ---
    energy_bucket_s: int = Field(
        900, ge=60, le=3600, description="interval energy bucket length in seconds (must divide an hour)"
    )
    energy_gap_s: float = Field(
        3600.0,
        gt=0,
        description="readings further apart leave uncovered time (power) or an estimate (registers)",
    )

    # --- grid carbon ---
    max_forecast_s: float = Field(
        7 * 86_400.0, gt=0, description="forecast intensities further ahead of now are dead-lettered"
    )
    factor_files: list[Path] = Field(
        default_factory=list,
        description="extra factor files (JSON list of paths): wattstream's format, or Electricity Maps "
        "config/defaults.yaml and config/zones/<ZONE>.yaml as they are",
    )
    factor_choices: dict[str, str] = Field(
        default_factory=dict,
        description="the factor set per region and scope (JSON), e.g. "
        '{"CN-ZJ:lifecycle": "ipcc2014-lifecycle"}; otherwise a region\'s own Electricity Maps zone set '
        "if loaded, else the IPCC 2014 set of the scope",
    )
    emissions_scope: Literal["lifecycle", "direct"] = Field(
        "lifecycle", description="which factor scope site emissions use"
    )
    nonfossil_targets: dict[int, float] = Field(
        default_factory=lambda: {2025: 0.24, 2030: 0.30},
        description="non-fossil share of generation targeted by year (Hangzhou carbon-peak plan: 24 % by "
        "2025, 30 % by 2030)",
    )
    emissions_tolerance_s: float = Field(
        3600.0, ge=0, description="an emission bucket without intensity uses the nearest interval this close"
    )

    # --- alerting ---
    alert_tick_s: float = Field(
        15.0, gt=0, description="how often workers evaluate staleness rules and publish pending alert events"
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="a webhook receiver must answer within this")
    webhook_max_attempts: int = Field(8, ge=1, description="attempts per delivery before it is dead")
    webhook_backoff_initial_s: float = Field(1.0, gt=0, description="the wait after a first failed attempt")
    webhook_backoff_max_s: float = Field(300.0, gt=0, description="the longest wait between attempts")
    webhook_concurrency: int = Field(16, ge=1, description="deliveries in flight at once")
    external_url: str = Field(
        "http://127.0.0.1:8000", description="where wattstream's API is reached; links in webhook payloads"
    )

    # --- metrics ---
    metrics_dir: Path | None = Field(
        None,
        description="share Prometheus metrics between wattstream processes on one host through this "
        "directory (prometheus_client multiprocess mode): the API's /metrics then shows the ingest "
        "worker's counters too. `wattstream up` sets it.",
    )

    # --- API ---
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_page_max: int = Field(10_000, ge=1)
    api_page_default: int = Field(1000, ge=1)
    api_key_cache_s: float = Field(
        5.0, ge=0, description="how long an API process trusts a looked-up key (revocation takes this long)"
    )
    api_workers: int = Field(
        1, ge=1, le=64, description="API processes sharing the port (each has its own stream consumer)"
    )
    api_site_refresh_s: float = Field(
        30.0, gt=0, description="how often an API process reloads its in-memory site directory"
    )
    api_series_cache_mb: int = Field(
        64, ge=0, description="memory for energy series answers kept between site events (0: none kept)"
    )
    api_series_cache_s: float = Field(
        60.0, gt=0, description="an energy series answer is kept at most this long"
    )
    api_rate_per_s: float = Field(50.0, gt=0, description="requests per second per key, unless the key says")
    api_rate_burst: int = Field(100, ge=1, description="requests a key may make at once before 429")
    sse_buffer_events: int = Field(
        500, ge=1, description="events kept per stream (region or site) for Last-Event-ID resume"
    )
    sse_client_queue: int = Field(
        256, ge=1, description="events a slow SSE client may fall behind by before it is dropped"
    )
    sse_heartbeat_s: float = Field(15.0, gt=0, description="a comment line on idle SSE streams this often")

    @field_validator("energy_bucket_s")
    @classmethod
    def _bucket_divides_an_hour(cls, v: int) -> int:
        if 3600 % v:
            raise ValueError("must divide 3600 so that buckets align with hours and local days")
        return v

    @model_validator(mode="after")
    def _retry_delays_in_order(self) -> Settings:
        if self.db_retry_initial_s > self.db_retry_max_s:
            raise ValueError("db_retry_initial_s must not exceed db_retry_max_s")
        return self

    def topics(self) -> tuple[TopicSpec, ...]:
        """The topics wattstream creates, with their partitions and retention."""
        return (
            TopicSpec(
                name=self.topic_readings,
                partitions=self.readings_partitions,
                retention_ms=self.readings_retention_ms,
            ),
            TopicSpec(
                name=self.topic_grid, partitions=self.grid_partitions, retention_ms=self.grid_retention_ms
            ),
            TopicSpec(
                name=self.topic_intensity,
                partitions=self.intensity_partitions,
                retention_ms=self.intensity_retention_ms,
            ),
            TopicSpec(
                name=self.topic_site_energy,
                partitions=self.site_energy_partitions,
                retention_ms=self.site_energy_retention_ms,
            ),
            TopicSpec(
                name=self.topic_alerts,
                partitions=self.alerts_partitions,
                retention_ms=self.alerts_retention_ms,
            ),
            TopicSpec(
                name=self.topic_deadletter,
                partitions=self.deadletter_partitions,
                retention_ms=self.deadletter_retention_ms,
            ),
        )
