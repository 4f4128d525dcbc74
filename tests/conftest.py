"""Session fixtures: real Kafka and TimescaleDB from deploy/, a fresh database and fresh topics per run.

Integration tests never mock either service. The services are started through the project's
own deploy scripts (a no-op when they already run) and stopped at the end only if this
session started them.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loadtest.scratch import drop_topics, fresh_topics, scratch
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ARTIFACTS = ROOT / "test-artifacts"


def _service(name: str, action: str) -> int:
    return subprocess.run(["bash", str(DEPLOY / f"{name}.sh"), action], check=False).returncode


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    started = []
    for name in ("timescaledb", "kafka"):
        if _service(name, "status") != 0:
            assert _service(name, "start") == 0, f"deploy/{name}.sh start failed"
            started.append(name)
    yield
    for name in reversed(started):
        _service(name, "stop")


@pytest.fixture(scope="session")
async def settings(services: None) -> AsyncIterator[Settings]:
    """Settings for a fresh database and fresh topics, dropped at the end of the session."""
    async with scratch(Settings(), "test", ingest_session_timeout_ms=6000, ingest_metrics_port=0) as s:
        yield s


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def pipeline(settings: Settings) -> AsyncIterator[Settings]:
    """The session's settings with topics and a consumer group of this test's own, deleted
    after the test."""
    fresh = await fresh_topics(settings, "test")
    yield fresh
    await drop_topics(fresh)
