"""`wattstream` subprocesses (the ingest worker, the API) as the battery runs and kills them.

Every process started is tracked by a `Processes` registry, which stops whatever is still alive
when the battery ends, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from loadtest.scratch import settings_env
from schemas.settings import Settings

__all__ = ["Processes", "WattstreamProcess"]

_ROOT = Path(__file__).resolve().parents[2]


class WattstreamProcess:
    """One `python -m wattstream <args>` with the given settings, its output in `log_path`.

    It may be started again after it ended (a supervisor's restart); `unrequested_exits` counts
    the times it ended without the battery asking it to."""

    def __init__(self, settings: Settings, args: list[str], log_path: Path, **env: str) -> None:
        self._env = settings_env(settings, **env)
        self._args = args
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.unrequested_exits = 0
        self.exit_codes: list[int] = []
        self._requested = False
        self._log_offset = 0

    async def start(self) -> None:
        """Start it (again); a no-op while it runs, so two restarts never make two processes."""
        if self.alive():
            return
        self._requested = False
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._log_offset = log.tell()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wattstream",
                *self._args,
                env=self._env,
                cwd=_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C of the battery reaches the battery, which stops it
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def reap(self) -> bool:
        """True (once) when the process has ended without being asked to."""
        if self.proc is None or self.proc.returncode is None or self._requested:
            return False
        self._requested = True  # counted once
        self.unrequested_exits += 1
        self.exit_codes.append(self.proc.returncode)
        return True

    async def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if not self.alive():
            return
        assert self.proc is not None
        self._requested = True
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, within: float) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if still running after `within` s, seconds it took).
        A process that outlives `within` is killed afterwards."""
        if not self.alive():
            return (self.proc.returncode if self.proc else None), 0.0
        assert self.proc is not None
        self._requested = True
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc: int | None = await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            rc = None
            await self.kill()
        return rc, time.monotonic() - t0

    def rss_bytes(self) -> int | None:
        """Resident memory now (Linux /proc), None once the process is gone."""
        if not self.alive():
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def log_since_start(self) -> str:
        """What this run of the process has written so far."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def last_lines(self, n: int = 5) -> str:
        lines = self.log_since_start().strip().splitlines()
        return " | ".join(line[:300] for line in lines[-n:])


class Processes:
    """Every process the battery started; `close` stops those still running."""

    def __init__(self) -> None:
        self._all: list[WattstreamProcess] = []

    def add(self, proc: WattstreamProcess) -> WattstreamProcess:
        self._all.append(proc)
        return proc

    async def close(self) -> None:
        for proc in self._all:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    await proc.terminate(within=15)
