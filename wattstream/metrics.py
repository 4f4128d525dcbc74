"""Which Prometheus registry a process exposes.

With `metrics_dir` set, every wattstream process on the host writes its samples there
(prometheus_client multiprocess mode) and any of them can expose all of them: the API's
/metrics shows the ingest worker's counters. prometheus_client chooses its storage when it is
first imported, so `enable_shared_metrics` must run before anything imports it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily below: see the module docstring
    from prometheus_client import CollectorRegistry

__all__ = ["enable_shared_metrics", "mark_process_dead", "metrics_registry", "reset_shared_metrics"]

_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable_shared_metrics(metrics_dir: Path | None) -> None:
    if metrics_dir is not None:
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ[_ENV] = str(metrics_dir)


def reset_shared_metrics(metrics_dir: Path) -> None:
    """Start a run with no samples left from earlier processes."""
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)


def metrics_registry(metrics_dir: Path | None) -> CollectorRegistry:
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if metrics_dir is None:
        return REGISTRY

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(metrics_dir: Path | None, pid: int) -> None:
    if metrics_dir is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path=str(metrics_dir))  # type: ignore[no-untyped-call]
