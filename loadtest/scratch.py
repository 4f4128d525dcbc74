"""Scratch databases and topics, so a benchmark or a test run never touches another's data."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from ingest.migrate import apply_migrations
from ingest.topics import delete_topics, ensure_topics
from schemas.settings import Settings

__all__ = [
    "cpu_seconds",
    "drop_topics",
    "fresh_topics",
    "percentile",
    "scratch",
    "settings_env",
]

log = logging.getLogger(__name__)


def _on_database(dsn: SecretStr, database: str) -> SecretStr:
    return SecretStr(f"{dsn.get_secret_value().rpartition('/')[0]}/{database}")


async def _owner_execute(s: Settings, sql: str) -> None:
    conn = await asyncpg.connect(s.migrate_database_url.get_secret_value())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def fresh_topics(s: Settings, label: str, **overrides: Any) -> Settings:
    """These settings with topics and a consumer group of their own, created in Kafka."""
    run = f"{label}.{uuid.uuid4().hex[:8]}"
    fresh = s.model_copy(
        update={
            "topic_readings": f"{run}.readings",
            "topic_grid": f"{run}.grid",
            "topic_deadletter": f"{run}.deadletter",
            "topic_intensity": f"{run}.intensity",
            "topic_site_energy": f"{run}.site-energy",
            "topic_alerts": f"{run}.alerts",
            "consumer_group": run,
            "grid_consumer_group": f"{run}-grid",
            "webhook_consumer_group": f"{run}-webhooks",
            **overrides,
        }
    )
    await ensure_topics(fresh.kafka_bootstrap, fresh.topics())
    return fresh


async def drop_topics(s: Settings) -> None:
    """Delete the topics `fresh_topics` made for `s`: a broker keeps every topic ever created,
    and a test run creates hundreds (one set per test), so left behind they pile up across runs
    until the broker runs out of file descriptors. Clean-up only: a broker that cannot be
    reached (a test stopped it) leaves them, with a warning."""
    try:
        await asyncio.wait_for(delete_topics(s.kafka_bootstrap, [t.name for t in s.topics()]), 30)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("could not delete the scratch topics of %s: %s", s.consumer_group, exc)


@asynccontextmanager
async def scratch(base: Settings, label: str, **overrides: Any) -> AsyncIterator[Settings]:
    """A freshly migrated database and fresh topics; both are dropped on exit."""
    database = f"wattstream_{label}_{uuid.uuid4().hex[:8]}"
    await _owner_execute(base, f'CREATE DATABASE "{database}"')
    try:
        s = base.model_copy(
            update={
                "database_url": _on_database(base.database_url, database),
                "migrate_database_url": _on_database(base.migrate_database_url, database),
                "api_database_url": _on_database(base.api_database_url, database),
            }
        )
        await apply_migrations(s.migrate_database_url.get_secret_value(), s.app_role, s.api_role)
        fresh = await fresh_topics(s, label, **overrides)
        try:
            yield fresh
        finally:
            await drop_topics(fresh)
    finally:
        await _drop(base, database)


async def _drop(base: Settings, database: str) -> None:
    # a new connection each time (tests restart the database in between); the sessions of a
    # process killed a moment ago can outlive it briefly, so retry a few times
    for attempt in range(20):
        try:
            await _owner_execute(base, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        except (asyncpg.ObjectInUseError, asyncpg.InsufficientPrivilegeError):
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
        else:
            return


def settings_env(s: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a `wattstream` subprocess use these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATTSTREAM_")}
    for name, value in s.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list | dict):
            value = json.dumps(value, default=str)
        env[f"WATTSTREAM_{name.upper()}"] = str(value)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def make_key(
    s: Settings,
    role: str = "admin",
    *,
    tenant: str | None = None,
    sites: list[str] | None = None,
    expires_in_days: float | None = None,
    rate_per_s: float | None = None,
    burst: int | None = None,
) -> str:
    """A new API key's token, made as `wattstream keys create` makes it."""
    from api.keys import create_key
    from schemas.api import KeyCreate

    spec = KeyCreate(
        name=f"test {role}",
        role=role,
        tenant=tenant,
        sites=sites or [],
        expires_in_days=expires_in_days,
        rate_per_s=rate_per_s,
        burst=burst,
    )
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    conn = await asyncpg.connect(s.database_url.get_secret_value())
    try:
        return (await create_key(conn, spec, expires))[1]
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    """The observed value at quantile `q` (0..1) of `values`, NaN for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by process `root` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += (int(stats[pid][11]) + int(stats[pid][12])) / os.sysconf("SC_CLK_TCK")
        todo += children.get(pid, [])
    return total
