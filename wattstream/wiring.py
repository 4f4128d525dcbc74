"""How the pieces fit: the batch stages every ingest worker runs, built from the settings."""

from __future__ import annotations

from ingest.energy import EnergyStage
from ingest.writer import BatchStage
from schemas.settings import Settings

__all__ = ["batch_stages"]


def batch_stages(s: Settings) -> list[BatchStage]:
    """Derived rows written in each batch's transaction, in order."""
    return [EnergyStage(bucket_s=s.energy_bucket_s, gap_s=s.energy_gap_s)]
