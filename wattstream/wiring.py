"""How the pieces fit: the factor library and the batch stages every ingest worker runs, from the settings."""

from __future__ import annotations

from core.factors import FactorLibrary
from ingest.alerts import AlertEngine, GridAlerts, SiteAlertStage
from ingest.carbon import EmissionsStage, GridCarbon
from ingest.energy import EnergyStage
from ingest.site_events import SiteEventsStage
from ingest.writer import BatchStage
from schemas.settings import Settings

__all__ = ["batch_stages", "factor_library", "grid_alerts", "grid_carbon"]


def factor_library(s: Settings) -> FactorLibrary:
    return FactorLibrary.load(s.factor_files, s.factor_choices)


def grid_carbon(s: Settings, factors: FactorLibrary) -> GridCarbon:
    return GridCarbon(
        factors,
        emissions_scope=s.emissions_scope,
        tolerance_s=s.emissions_tolerance_s,
        bucket_s=s.energy_bucket_s,
    )


def batch_stages(s: Settings, factors: FactorLibrary | None = None) -> list[BatchStage]:
    """Derived rows written in each readings batch's transaction, in order: energy, the
    emissions of the buckets whose energy it recomputed, the live site events, and the alert
    rules of the sites it touched."""
    carbon = grid_carbon(s, factors or factor_library(s))
    return [
        EnergyStage(bucket_s=s.energy_bucket_s, gap_s=s.energy_gap_s),
        EmissionsStage(carbon),
        SiteEventsStage(s.topic_site_energy),
        SiteAlertStage(
            AlertEngine(s.topic_readings),
            alerts_topic=s.topic_alerts,
            partitions=s.readings_partitions,
            bucket_s=s.energy_bucket_s,
        ),
    ]


def grid_alerts(s: Settings) -> GridAlerts:
    return GridAlerts(
        AlertEngine(s.topic_grid),
        alerts_topic=s.topic_alerts,
        partitions=s.grid_partitions,
        scope=s.emissions_scope,
    )
