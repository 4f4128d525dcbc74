"""Replays real meter data into Kafka as readings: building interval CSVs and data-centre power TSVs.

Adapters handle each source's *format*, not one file: the same sources publish other
buildings, years and servers with other column names, line endings, gaps and footers.

- `cambridge_interval_csv`: the University of Cambridge Estates archive format, a header
  `datetime,<load name> [kWh]` and one row per interval, `datetime` naive in a stated zone
  (UTC in that archive). Each row is taken as the energy of the interval *beginning* at its
  time. The adapter turns it into a cumulative register: a first reading of `start_register`
  at the first row's time, then the running sum at the end of each interval. The archive
  sets missing or invalid hours to 0, so by default a zero is treated as missing: the
  register does not advance there, and the next reading's interval spans the hole (its
  energy is then spread over it and flagged estimated, never invented).
- `biohpc_power_tsv`: a SQL Server export of hourly server telemetry, tab-separated, UTF-8
  with an optional BOM, newest row first, with footer lines ("(N rows affected)",
  "Completion time: ...") after the data. The chosen power column (watts by default)
  becomes power readings in kW, oldest first.

Every skipped row is counted by reason, with the first examples, so a summary can say what
was left out and why.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ingest.sender import ReadingSender, reading_producer
from schemas.messages import Reading
from schemas.settings import Settings

__all__ = ["ReplaySummary", "SkipReport", "biohpc_power_tsv", "cambridge_interval_csv", "describe", "replay"]

_EXAMPLES = 3
_FOOTER = re.compile(r"^\s*$|^\(\d+ rows? affected\)$|^Completion time:", re.IGNORECASE)


@dataclass
class SkipReport:
    """Rows left out, by reason, with the first few examples of each (line number, text)."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))

    def skip(self, reason: str, line: int, text: str) -> None:
        self.counts[reason] += 1
        if len(self.examples[reason]) < _EXAMPLES:
            self.examples[reason].append((line, text[:120]))


def _lines(source: Path | str) -> list[str]:
    """Text lines whatever the line endings (LF, CRLF or bare CR) and with any BOM removed."""
    raw = source.read_bytes() if isinstance(source, Path) else source.encode()
    return raw.decode("utf-8-sig").splitlines()


def _local(naive: datetime, tz: ZoneInfo) -> datetime | str:
    """The aware time of a naive local one, or why it has none: DST makes some local times
    nonexistent (spring forward) and others ambiguous (fall back)."""
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() != second.utcoffset():
        back = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
        return "nonexistent_local_time" if back != naive else "ambiguous_local_time"
    return first


def _parse_time(text: str, fmt: str) -> datetime | None:
    try:
        return datetime.strptime(text.strip(), fmt)  # noqa: DTZ007 - naive by format; the zone comes next
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    ts: datetime
    value: float


def _rows(
    lines: Sequence[str],
    delimiter: str,
    time_col: str,
    value_col: str,
    fmt: str,
    tz: ZoneInfo,
    report: SkipReport,
) -> list[_Row]:
    """Data rows with aware times and finite non-negative values, sorted by time, de-duplicated."""
    reader = csv.reader(lines, delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    if time_col not in header or value_col not in header:
        raise ValueError(f"expected columns {time_col!r} and {value_col!r}, found {header}")
    ti, vi = header.index(time_col), header.index(value_col)
    rows: list[_Row] = []
    for n, fields in enumerate(reader, start=2):
        text = delimiter.join(fields)
        if not fields or _FOOTER.match(text):
            report.skip("footer_or_blank", n, text)
            continue
        naive = _parse_time(fields[ti], fmt) if len(fields) > max(ti, vi) else None
        if naive is None:
            report.skip("bad_timestamp", n, text)
            continue
        try:
            value = float(fields[vi])
        except ValueError:
            report.skip("not_a_number", n, text)
            continue
        if value != value or value in (float("inf"), float("-inf")):
            report.skip("not_a_number", n, text)
            continue
        if value < 0:
            report.skip("negative_value", n, text)
            continue
        ts = _local(naive, tz)
        if isinstance(ts, str):
            report.skip(ts, n, text)
            continue
        rows.append(_Row(n, ts, value))
    rows.sort(key=lambda r: r.ts)
    unique: list[_Row] = []
    for r in rows:
        if unique and r.ts == unique[-1].ts:
            report.skip("duplicate_timestamp", r.line, r.ts.isoformat())
            continue
        unique.append(r)
    return unique


def cambridge_interval_csv(
    source: Path | str,
    *,
    site: str,
    meter: str = "main",
    tz: str = "UTC",
    zero_as_missing: bool = True,
    start_register: float = 0.0,
) -> tuple[list[Reading], SkipReport]:
    """Interval kWh rows to cumulative register readings (see the module docstring)."""
    lines = _lines(source)
    report = SkipReport()
    header = next(csv.reader(lines[:1]), [])
    value_col = next((h.strip() for h in header[1:] if "[kwh]" in h.lower()), None)
    if not header or header[0].strip() != "datetime" or value_col is None:
        raise ValueError(f"not an interval CSV: header {header!r}, expected 'datetime,<load> [kWh]'")
    rows = _rows(lines, ",", "datetime", value_col, "%Y-%m-%d %H:%M:%S", ZoneInfo(tz), report)
    if len(rows) < 2:
        return [], report
    steps = Counter(b.ts - a.ts for a, b in itertools.pairwise(rows))
    interval: timedelta = steps.most_common(1)[0][0]
    readings = [Reading(site=site, meter=meter, ts=rows[0].ts, energy_kwh=start_register)]
    register = start_register
    for r in rows:
        if zero_as_missing and r.value == 0:
            report.skip("zero_value_treated_as_missing", r.line, r.ts.isoformat())
            continue
        register += r.value
        readings.append(Reading(site=site, meter=meter, ts=r.ts + interval, energy_kwh=round(register, 6)))
    return readings, report


def biohpc_power_tsv(
    source: Path | str,
    *,
    site: str,
    meter: str = "it",
    tz: str = "America/New_York",
    column: str = "powerave",
    unit: str = "W",
) -> tuple[list[Reading], SkipReport]:
    """Power rows (newest first in the file) to power readings in kW, oldest first."""
    scale = {"W": 1e-3, "kW": 1.0}.get(unit)
    if scale is None:
        raise ValueError("unit must be W or kW")
    report = SkipReport()
    rows = _rows(_lines(source), "\t", "timestamp", column, "%Y-%m-%d %H:%M:%S.%f", ZoneInfo(tz), report)
    return [Reading(site=site, meter=meter, ts=r.ts, power_kw=r.value * scale) for r in rows], report


@dataclass
class ReplaySummary:
    readings: int = 0
    messages: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    cancelled: bool = False


async def replay(
    settings: Settings,
    readings: Sequence[Reading],
    *,
    batch: int = 500,
    rate: float = 0.0,
    progress: bool = True,
) -> ReplaySummary:
    """Produce the readings (keyed by site, `batch` per record) at `rate` readings/s (0: at once)."""
    summary = ReplaySummary()
    if readings:
        times = [r.ts for r in readings if isinstance(r.ts, datetime)]
        summary.first_ts, summary.last_ts = min(times, default=None), max(times, default=None)
    display = Progress(
        TextColumn("[bold]replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    producer = reading_producer(settings, "wattstream-replay")
    await producer.start()
    try:
        sender = ReadingSender(producer, settings.topic_readings, batch, summary)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with display:
            task = display.add_task("replay", total=len(readings))
            try:
                for i, reading in enumerate(readings, start=1):
                    await sender.add(reading)
                    if rate > 0 and (lead := t0 + i / rate - loop.time()) > 0.005:
                        await asyncio.sleep(lead)
                    if i % 1000 == 0:
                        display.update(task, completed=i)
                        await asyncio.sleep(0)
            except asyncio.CancelledError:
                summary.cancelled = True  # Ctrl-C: deliver what was handed over, then report
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
            await sender.flush()
            display.update(task, completed=summary.readings)
    finally:
        await producer.stop()
    return summary


def describe(summary: ReplaySummary, report: SkipReport) -> Iterable[str]:
    """Lines for a person: what was sent, and what was skipped and why."""
    state = "cancelled after " if summary.cancelled else ""
    yield (
        f"{state}{summary.readings} readings in {summary.messages} messages, "
        f"{summary.first_ts:%Y-%m-%d %H:%M %Z} to {summary.last_ts:%Y-%m-%d %H:%M %Z}"
        if summary.first_ts and summary.last_ts
        else f"{state}{summary.readings} readings"
    )
    for reason, n in report.counts.most_common():
        shown = "; ".join(f"line {line}: {text}" for line, text in report.examples[reason])
        yield f"  skipped {n} × {reason} (e.g. {shown})"
