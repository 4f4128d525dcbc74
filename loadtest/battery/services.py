"""Kafka and PostgreSQL, stopped, started and restarted through the project's deploy/ scripts.

The scripts find their instance from the environment (`WATTSTREAM_CACHE`, `WATTSTREAM_PG_PORT`,
`WATTSTREAM_KAFKA_PORT`, ...); the battery's clients find it from the settings. Before anything
is stopped, the two are checked to name the same ports: stopping the wrong PostgreSQL (another
engineer's, or CI's while the battery meant its own) is not a risk worth taking.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit

from loadtest.battery.report import Progress
from schemas.settings import Settings

__all__ = ["BatteryError", "Services"]

_ROOT = Path(__file__).resolve().parents[2]
_DEPLOY = _ROOT / "deploy"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class BatteryError(Exception):
    """The battery cannot run as configured (not a broken promise: nothing was measured)."""


def _check_same_instance(s: Settings) -> None:
    pg_port = int(os.environ.get("WATTSTREAM_PG_PORT", "55432"))
    for name in ("database_url", "migrate_database_url", "api_database_url"):
        url = urlsplit(getattr(s, name).get_secret_value())
        if url.hostname not in _LOOPBACK or url.port != pg_port:
            raise BatteryError(
                f"WATTSTREAM_{name.upper()} points at {url.hostname}:{url.port}, but deploy/timescaledb.sh "
                f"manages 127.0.0.1:{pg_port} (WATTSTREAM_PG_PORT): the battery stops and starts the "
                "database, so both must name the same instance"
            )
    kafka_port = int(os.environ.get("WATTSTREAM_KAFKA_PORT", "19092"))
    servers = [b.strip() for b in s.kafka_bootstrap.split(",") if b.strip()]
    for server in servers:
        host, _, port = server.rpartition(":")
        if host.strip("[]") not in _LOOPBACK or int(port) != kafka_port:
            raise BatteryError(
                f"WATTSTREAM_KAFKA_BOOTSTRAP is {s.kafka_bootstrap}, but deploy/kafka.sh manages "
                f"127.0.0.1:{kafka_port} (WATTSTREAM_KAFKA_PORT): both must name the same broker"
            )


class Services:
    """The two services as the battery found them, and the means to put them back."""

    def __init__(self, settings: Settings, log_path: Path, progress: Progress) -> None:
        _check_same_instance(settings)
        self._log_path = log_path
        self._progress = progress
        self._started: list[str] = []

    async def run(self, service: str, action: str) -> int:
        """`deploy/<service>.sh <action>`, its output appended to the battery's service log."""
        with self._log_path.open("ab") as log:
            log.write(f"--- deploy/{service}.sh {action}\n".encode())
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                "bash", str(_DEPLOY / f"{service}.sh"), action, stdout=log, stderr=log, cwd=_ROOT
            )
            return await proc.wait()

    async def must(self, service: str, action: str) -> None:
        self._progress.say(f"deploy/{service}.sh {action}")
        if await self.run(service, action) != 0:
            raise BatteryError(f"deploy/{service}.sh {action} failed; see {self._log_path}")

    async def running(self, service: str) -> bool:
        return await self.run(service, "status") == 0

    async def begin(self) -> None:
        """Start what is not running (and remember it, to stop it again at the end)."""
        for service in ("timescaledb", "kafka"):
            if not await self.running(service):
                await self.must(service, "start")
                self._started.append(service)

    async def heal(self) -> None:
        """Both services up again, whatever a row left behind."""
        for service in ("timescaledb", "kafka"):
            if not await self.running(service):
                self._progress.say(f"{service} is not running: starting it again")
                await self.must(service, "start")

    async def end(self) -> None:
        """As found: running unless the battery had to start it."""
        await self.heal()
        for service in reversed(self._started):
            await self.must(service, "stop")
