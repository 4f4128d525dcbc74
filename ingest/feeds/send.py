"""Grid records to Kafka (`wattstream.grid.v1`, keyed by region), paced, with progress."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingest.sender import reading_producer
from schemas.grid import encode_grid_record
from schemas.settings import Settings

__all__ = ["GridReplaySummary", "send_grid_records"]


@dataclass
class GridReplaySummary:
    records: int = 0
    regions: int = 0
    first_ts: str | None = None
    last_ts: str | None = None
    cancelled: bool = False


async def send_grid_records(
    settings: Settings, records: Sequence[dict[str, object]], *, rate: float = 0.0, progress: bool = True
) -> GridReplaySummary:
    """Produce the records in order at `rate` records/s (0: at once); every one acknowledged."""
    summary = GridReplaySummary(regions=len({r["region"] for r in records}))
    if records:
        summary.first_ts, summary.last_ts = str(records[0]["ts"]), str(records[-1]["ts"])
    display = Progress(
        TextColumn("[bold]replaying grid"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    producer = reading_producer(settings, "wattstream-replay-grid")
    await producer.start()
    pending: list[asyncio.Future[object]] = []
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with display:
            task = display.add_task("grid", total=len(records))
            try:
                for i, record in enumerate(records, start=1):
                    pending.append(
                        await producer.send(
                            settings.topic_grid,
                            encode_grid_record(record),
                            key=str(record["region"]).encode(),
                        )
                    )
                    summary.records += 1
                    if rate > 0 and (lead := t0 + i / rate - loop.time()) > 0.005:
                        await asyncio.sleep(lead)
                    if i % 100 == 0:
                        display.update(task, completed=i)
            except asyncio.CancelledError:
                summary.cancelled = True  # Ctrl-C: deliver what was handed over, then report
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
            await producer.flush()
            if pending:
                await asyncio.wait(pending)
            for future in pending:
                future.result()
            display.update(task, completed=summary.records)
    finally:
        await producer.stop()
    return summary
