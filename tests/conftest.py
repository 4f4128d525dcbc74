"""Session fixtures: real Kafka and TimescaleDB from deploy/, a fresh database and fresh topics per run.

Integration tests never mock either service. The services are started through the project's
own deploy scripts (a no-op when they already run) and stopped at the end only if this
session started them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from ingest.migrate import apply_migrations
from ingest.topics import ensure_topics
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


def _with_database(dsn: str, database: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
async def settings(services: None) -> AsyncIterator[Settings]:
    """Settings for a fresh database and fresh topics, dropped at the end of the session."""
    run = uuid.uuid4().hex[:8]
    defaults = Settings()
    database = f"wattstream_test_{run}"
    owner_dsn = defaults.migrate_database_url.get_secret_value()
    admin = await asyncpg.connect(owner_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    s = defaults.model_copy(
        update={
            "database_url": type(defaults.database_url)(
                _with_database(defaults.database_url.get_secret_value(), database)
            ),
            "migrate_database_url": type(defaults.migrate_database_url)(_with_database(owner_dsn, database)),
            "topic_readings": f"test.{run}.readings",
            "topic_grid": f"test.{run}.grid",
            "topic_deadletter": f"test.{run}.deadletter",
            "consumer_group": f"test-{run}",
            "ingest_session_timeout_ms": 6000,
            "ingest_metrics_port": 0,
        }
    )
    await apply_migrations(s.migrate_database_url.get_secret_value(), s.app_role)
    await ensure_topics(s.kafka_bootstrap, s.topics())
    try:
        yield s
    finally:
        admin = await asyncpg.connect(owner_dsn)  # a fresh one: tests restart the database
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def pipeline(settings: Settings) -> Settings:
    """The session's settings with topics and a consumer group of this test's own."""
    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "topic_readings": f"test.{run}.readings",
            "topic_grid": f"test.{run}.grid",
            "topic_deadletter": f"test.{run}.deadletter",
            "consumer_group": f"test-{run}",
        }
    )
    await ensure_topics(s.kafka_bootstrap, s.topics())
    return s
