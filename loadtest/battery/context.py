"""What every row gets: the scratch settings, the scale, the services, the processes, progress;
and a supervised worker (restarted when it exits by itself, as a supervisor would, each exit
counted)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loadtest.battery.procs import Processes, WattstreamProcess
from loadtest.battery.report import Progress
from loadtest.battery.scale import Scale
from loadtest.battery.services import Services
from loadtest.battery.verify import Watch, wait_until
from loadtest.scratch import drop_topics, fresh_topics
from schemas.settings import Settings

__all__ = ["Context", "Supervisor", "caught_up", "reporting", "row_topics", "sleep_until", "supervised"]


@dataclass
class Context:
    base: Settings  # the scratch database; each row makes topics of its own
    scale: Scale
    services: Services
    procs: Processes
    progress: Progress
    log_dir: Path
    t0: datetime  # where the generated readings begin
    seed: int

    def worker(self, s: Settings, name: str) -> WattstreamProcess:
        """A real `wattstream ingest` (readings, grid and webhook consumers) with these settings."""
        return self.procs.add(
            WattstreamProcess(s, ["ingest", "--log-level", "INFO"], self.log_dir / f"{name}.log")
        )


@asynccontextmanager
async def row_topics(ctx: Context, label: str, **overrides: Any) -> AsyncIterator[Settings]:
    s = await fresh_topics(ctx.base, f"battery-{label}", **overrides)
    try:
        yield s
    finally:
        await drop_topics(s)


class Supervisor:
    """Watches a worker; one that ends without being asked is logged, counted and started again."""

    def __init__(self, proc: WattstreamProcess, progress: Progress) -> None:
        self.proc = proc
        self._progress = progress
        self.exits: list[str] = []

    async def watch(self) -> None:
        while True:
            if self.proc.reap():
                rc = self.proc.exit_codes[-1]
                why = self.proc.last_lines(3)
                self.exits.append(f"exit {rc}: {why[-400:]}")
                self._progress.say(f"the worker exited by itself (code {rc}); restarting it: {why[-200:]}")
                await asyncio.sleep(1.0)
                await self.proc.start()
            await asyncio.sleep(0.2)

    def summary(self) -> str | None:
        if not self.exits:
            return None
        return f"the worker exited {len(self.exits)} times without being asked to; last: {self.exits[-1]}"


@asynccontextmanager
async def supervised(proc: WattstreamProcess, progress: Progress) -> AsyncIterator[Supervisor]:
    """The worker started and supervised; SIGTERMed (then killed) on exit."""
    sup = Supervisor(proc, progress)
    await proc.start()
    watching = asyncio.create_task(sup.watch())
    try:
        yield sup
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await proc.terminate(within=20)


@asynccontextmanager
async def reporting(
    progress: Progress, watch: Watch, produced: Callable[[], str], every: float = 10.0
) -> AsyncIterator[None]:
    """A progress line every `every` seconds: what was produced, the worker's lag."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            lag = await watch.lag()
            progress.say(f"{produced()}; lag {'(services away)' if lag is None else f'{lag:,} records'}")

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(deadline - time.monotonic(), 0.0))


async def caught_up(watch: Watch, within: float) -> float | None:
    """Seconds until the worker had committed everything in its topic, None if not within."""

    async def zero() -> bool:
        return await watch.lag() == 0

    return await wait_until(zero, within)
