"""Runs the rows in order against the services the settings name, prints the table, and puts
the services back as it found them, whatever happened."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from loadtest.battery import rows_api, rows_ingest
from loadtest.battery.context import Context
from loadtest.battery.procs import Processes
from loadtest.battery.report import Progress, RowResult, render
from loadtest.battery.scale import SCALES, Scale
from loadtest.battery.services import BatteryError, Services
from loadtest.scratch import scratch
from schemas.settings import Settings

__all__ = ["ROWS", "main", "run_battery"]

_ROOT = Path(__file__).resolve().parents[2]
Row = Callable[[Context], Awaitable[RowResult]]
ROWS: dict[str, tuple[str, Row]] = {
    "crash": ("crash consistency", rows_ingest.crash_consistency),
    "poison": ("poison", rows_ingest.poison),
    "broker": ("Kafka broker restart", rows_ingest.broker_restart),
    "sigterm": ("SIGTERM", rows_ingest.sigterm),
    "outage": ("database outage", rows_ingest.database_outage),
    "api": ("API", rows_api.api),
}


async def run_battery(
    base: Settings, scale: Scale, *, only: Sequence[str] = (), seed: int = 1, log_dir: Path | None = None
) -> list[RowResult]:
    """Every row (or those in `only`), each against a scratch database and topics of its own."""
    log_dir = log_dir or _ROOT / "test-artifacts" / "battery" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    progress.say(f"scale {scale.name}; logs in {log_dir}")
    services = Services(base, log_dir / "services.log", progress)
    procs = Processes()
    results: list[RowResult] = []
    await services.begin()
    try:
        async with scratch(base, "battery", ingest_session_timeout_ms=6000, ingest_metrics_port=0) as s:
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            ctx = Context(s, scale, services, procs, progress, log_dir, today - timedelta(days=10), seed)
            try:
                for name, (label, row) in ROWS.items():
                    if only and name not in only:
                        continue
                    progress.row(name)
                    t0 = time.monotonic()
                    try:
                        result = await asyncio.wait_for(row(ctx), scale.row_timeout_s)
                    except TimeoutError:
                        result = RowResult(
                            label, error=f"still running after {scale.row_timeout_s:.0f} s; stopped"
                        )
                    # a row that breaks is reported as ERROR, its traceback kept, and the rest still run
                    except Exception as exc:  # noqa: BLE001
                        (log_dir / f"{name}-error.txt").write_text(traceback.format_exc())
                        result = RowResult(label, error=f"{type(exc).__name__}: {exc}"[:400])
                    finally:
                        await procs.close()
                        await services.heal()
                    result.seconds = time.monotonic() - t0
                    progress.say(
                        f"{result.verdict} in {result.seconds:.0f} s: {result.figure or result.error}"
                    )
                    results.append(result)
            finally:
                await procs.close()
                await services.heal()  # before the scratch database and topics are dropped
    finally:
        await procs.close()
        await services.end()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.battery",
        description="The reliability battery: real services, real worker and API processes, faults injected.",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="full", help="full, or ci (reduced)")
    parser.add_argument("--only", action="append", choices=sorted(ROWS), help="run only this row (repeat)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed generates the same traffic")
    parser.add_argument("--log-dir", type=Path, help="default test-artifacts/battery/<time>")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[battery] %(levelname)s %(name)s: %(message)s")
    return run_main(
        Settings(),
        SCALES[args.scale],
        only=args.only or (),
        seed=args.seed,
        log_dir=args.log_dir,
        json_path=args.json,
    )


def run_main(
    base: Settings,
    scale: Scale,
    *,
    only: Sequence[str] = (),
    seed: int = 1,
    log_dir: Path | None = None,
    json_path: Path | None = None,
) -> int:
    """Run, print the table on stdout; 0 when every promise held, 1 when one broke, 2 when the
    battery could not run at all."""
    t0 = time.monotonic()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its retries during the faults are expected

    async def guarded() -> list[RowResult]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # stop, and clean up, like Ctrl-C
        return await run_battery(base, scale, only=only, seed=seed, log_dir=log_dir)

    try:
        results = asyncio.run(guarded())
    except BatteryError as exc:
        print(f"battery: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("battery: interrupted (its processes stopped, the services put back)", file=sys.stderr)
        return 130
    print(render(results, scale.name, time.monotonic() - t0))
    if json_path is not None:
        json_path.write_text(
            json.dumps([{**asdict(r), "verdict": r.verdict} for r in results], indent=2, ensure_ascii=False)
        )
    return 0 if results and all(r.verdict == "PASS" for r in results) else 1
