"""The `wattstream` command: reads the settings once and wires the pieces together."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from pydantic import SecretStr
from rich.console import Console

from schemas.settings import Settings

if TYPE_CHECKING:
    from ingest.feeds.common import FeedResult
    from ingest.registry import MeterRecord, SiteRecord
    from ingest.replay import SkipReport
    from schemas.messages import Reading
from wattstream.logs import configure_logging
from wattstream.metrics import (
    enable_shared_metrics,
    mark_process_dead,
    metrics_registry,
    reset_shared_metrics,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="wattstream",
    help="Streaming energy and carbon monitoring: Kafka in, TimescaleDB and a live API out.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
log = logging.getLogger("wattstream")

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING, ERROR")]


def _settings() -> Settings:
    try:
        s = Settings()
    except ValueError as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc
    enable_shared_metrics(s.metrics_dir)
    return s


async def _with_stop_signals(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `run(stop)`; SIGINT/SIGTERM set `stop` and `run` drains and returns."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run(stop)


@app.command()
def migrate(log_level: LogLevel = "INFO") -> None:
    """Apply the numbered SQL migrations (safe to run again) and grant the app role its rows."""
    from ingest.migrate import apply_migrations

    configure_logging(log_level)
    s = _settings()
    done = asyncio.run(
        apply_migrations(
            s.migrate_database_url.get_secret_value(),
            s.app_role,
            s.api_role,
            on_applied=lambda m: console.print(f"applied {m.version:03d}_{m.name}"),
        )
    )
    console.print(f"database up to date ({len(done)} migration(s) applied now)")


@app.command()
def topics(log_level: LogLevel = "INFO") -> None:
    """Create wattstream's Kafka topics with their partition counts and retention."""
    from ingest.topics import ensure_topics

    configure_logging(log_level)
    s = _settings()
    for name, what in asyncio.run(ensure_topics(s.kafka_bootstrap, s.topics())).items():
        console.print(f"{name}: {what}")


@app.command()
def ingest(
    only: Annotated[
        str | None,
        typer.Option(help="run only this consumer: readings, grid or webhooks (default: all three)"),
    ] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Consume readings and grid records from Kafka into TimescaleDB, evaluating alert rules, and
    deliver alert webhooks, until SIGTERM / Ctrl-C (each consumer drains, then commits)."""
    configure_logging(log_level)
    s = _settings()  # first: it chooses where metrics live before prometheus_client is imported
    if only not in (None, "readings", "grid", "webhooks"):
        console.print("[red]--only must be readings, grid or webhooks[/red]")
        raise typer.Exit(2)
    from prometheus_client import start_http_server

    from ingest.grid import GridWorker
    from ingest.webhooks import WebhookRouter
    from ingest.worker import IngestWorker
    from wattstream.wiring import batch_stages, factor_library, grid_alerts, grid_carbon

    factors = factor_library(s)
    consumers: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
    if only in (None, "readings"):
        consumers.append(IngestWorker(s, batch_stages(s, factors)).run)
    if only in (None, "grid"):
        consumers.append(GridWorker(s, grid_carbon(s, factors), grid_alerts(s)).run)
    if only in (None, "webhooks"):
        consumers.append(WebhookRouter(s).run)

    async def run_all(stop: asyncio.Event) -> None:
        tasks: list[asyncio.Task[None]] = [asyncio.create_task(run(stop)) for run in consumers]
        try:
            # one consumer failing stops the others: the process exits and its supervisor restarts it
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    server = None
    if s.ingest_metrics_port:
        server, _thread = start_http_server(
            s.ingest_metrics_port, addr=s.ingest_metrics_host, registry=metrics_registry(s.metrics_dir)
        )
    try:
        asyncio.run(_with_stop_signals(run_all))
    finally:
        if server is not None:
            server.shutdown()


@app.command()
def api(log_level: LogLevel = "INFO") -> None:
    """Serve the HTTP API (and /metrics, /healthz, /readyz) with uvicorn, in
    WATTSTREAM_API_WORKERS processes sharing one listening socket."""
    configure_logging(log_level)
    s = _settings()  # first: it chooses where metrics live before prometheus_client is imported
    if s.api_workers == 1:
        _serve_api(s)
    else:
        _supervise_api_workers(s, log_level)


def _serve_api(s: Settings, sock: Any = None) -> None:
    """One API process: uvicorn on `sock` if given (a worker), else on its own socket."""
    import socket

    import uvicorn

    from api.app import create_app, end_streams

    application = create_app(s, metrics_registry(s.metrics_dir))

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # live streams never end by themselves: end them (each client gets a proper end of
            # its stream) before uvicorn waits for open connections to finish
            end_streams(application)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        application,
        host=s.api_host,
        port=s.api_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # nothing reads the client's address; a proxy in front logs it
        timeout_graceful_shutdown=3,
    )
    Server(config).run(sockets=[sock] if sock is not None else None)


class _StopSignal:
    """Set by SIGINT or SIGTERM from its creation on: a supervisor loops until it is."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self.requested = True


def _api_worker(log_level: str, sock: Any) -> None:
    """A worker process (spawned): the settings come from the environment it inherited."""
    configure_logging(log_level)
    _serve_api(_settings(), sock)


def _supervise_api_workers(s: Settings, log_level: str) -> None:
    """Bind the socket once, run the workers on it (the kernel spreads connections among them),
    replace a worker that dies, and stop them all on SIGTERM or SIGINT. Each worker has its own
    stream consumer, caches and rate limits; /metrics adds up every worker's figures."""
    import multiprocessing
    import socket
    import tempfile

    metrics_dir = s.metrics_dir
    if metrics_dir is None:  # the workers' metrics meet in one directory, /metrics reads them all
        metrics_dir = Path(tempfile.mkdtemp(prefix="wattstream-api-metrics-"))
        reset_shared_metrics(metrics_dir)
        enable_shared_metrics(metrics_dir)
        os.environ["WATTSTREAM_METRICS_DIR"] = str(metrics_dir)  # the spawned workers inherit it
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((s.api_host, s.api_port))
    sock.listen(2048)
    sock.set_inheritable(True)
    spawn = multiprocessing.get_context("spawn")

    def start() -> Any:
        proc = spawn.Process(target=_api_worker, args=(log_level, sock), name="wattstream-api")
        proc.start()
        return proc

    workers = [start() for _ in range(s.api_workers)]
    log.info("API on %s:%d with %d workers", s.api_host, s.api_port, len(workers))
    stop = _StopSignal()
    try:
        while not stop.requested:
            for i, proc in enumerate(workers):
                if not proc.is_alive() and not stop.requested:
                    log.warning("API worker %s exited with %s; starting another", proc.pid, proc.exitcode)
                    mark_process_dead(metrics_dir, proc.pid)
                    workers[i] = start()
            time.sleep(0.5)
    finally:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: a graceful shutdown, streams ended
        for proc in workers:
            proc.join(15)
            if proc.is_alive():
                log.warning("API worker %s did not stop in 15 s; killing it", proc.pid)
                proc.kill()
                proc.join(5)
            mark_process_dead(metrics_dir, proc.pid)
        sock.close()


@app.command()
def simulate(
    sites: Annotated[int, typer.Option(min=1, help="number of simulated sites")] = 20,
    rate: Annotated[float, typer.Option(help="readings per second; 0 = as fast as possible")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    count: Annotated[int | None, typer.Option(min=1, help="stop after this many readings")] = None,
    batch: Annotated[int, typer.Option(min=1, help="readings per Kafka message (1 = single form)")] = 1,
    start: Annotated[
        datetime | None, typer.Option(help="simulated start time (RFC 3339 with offset)")
    ] = None,
    speedup: Annotated[float, typer.Option(min=0.0, help="simulated seconds per wall-clock second")] = 1.0,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same stream")] = 1,
    fault_rate: Annotated[float, typer.Option(min=0.0, help="injected faults per 1000 readings")] = 0.5,
    progress: Annotated[bool, typer.Option(help="show a progress display")] = True,
    register: Annotated[
        bool,
        typer.Option(help="first record the fleet's sites and meters (kinds, zones, roles) in the database"),
    ] = True,
    grid: Annotated[
        bool, typer.Option(help="also simulate the fleet region's grid mixes (CN-ZJ and its neighbours)")
    ] = True,
    log_level: LogLevel = "WARNING",
) -> None:
    """Produce realistic synthetic meter readings (office, mall, hospital, data centre) to Kafka."""
    from ingest.simulate import run_simulation

    configure_logging(log_level)
    if start is not None and start.tzinfo is None:
        console.print("[red]--start needs a UTC offset[/red]")
        raise typer.Exit(2)
    s = _settings()
    asyncio.run(
        run_simulation(
            s,
            sites=sites,
            rate=rate,
            duration_s=duration,
            count=count,
            batch=batch,
            start=start,
            speedup=speedup,
            seed=seed,
            fault_rate=fault_rate / 1000,
            progress=progress,
            register_fleet=register,
            grid=grid,
        )
    )


replay_app = typer.Typer(
    help="Replay real data files into Kafka: meter data as readings, grid feeds as grid records.",
    no_args_is_help=True,
)
app.add_typer(replay_app, name="replay")

ReplayRate = Annotated[float, typer.Option(help="readings per second; 0 = as fast as possible")]
ReplayBatch = Annotated[int, typer.Option(min=1, help="readings per Kafka message")]
SiteZone = Annotated[
    str | None, typer.Option(help="the site's own time zone (local days), if not the file's")
]
Region = Annotated[str | None, typer.Option(help="the site's grid region, e.g. GB or CN-ZJ")]
FloorArea = Annotated[float | None, typer.Option(min=0.0, help="floor area in m² (for EUI)")]


def _replay(
    readings_and_report: tuple[list[Reading], SkipReport],
    site: SiteRecord,
    meter: MeterRecord,
    rate: float,
    batch: int,
) -> None:
    from ingest.registry import register
    from ingest.replay import describe, replay

    readings, report = readings_and_report
    s = _settings()
    asyncio.run(register(s.database_url.get_secret_value(), [site], [meter]))
    summary = asyncio.run(replay(s, readings, batch=batch, rate=rate, progress=sys.stderr.isatty()))
    for line in describe(summary, report):
        console.print(line)


@replay_app.command("cambridge")
def replay_cambridge(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="interval CSV: datetime,<load> [kWh]")
    ],
    site: Annotated[str, typer.Option(help="site id to replay as")],
    meter: Annotated[str, typer.Option(help="meter name")] = "main",
    tz: Annotated[str, typer.Option(help="time zone of the file's naive timestamps")] = "UTC",
    site_timezone: SiteZone = None,
    region: Region = None,
    floor_area: FloorArea = None,
    keep_zeros: Annotated[bool, typer.Option(help="count zero hours as zero instead of missing")] = False,
    rate: ReplayRate = 0.0,
    batch: ReplayBatch = 500,
) -> None:
    """A building's interval energy CSV (University of Cambridge Estates format) as a register."""
    from ingest.registry import MeterRecord, SiteRecord
    from ingest.replay import cambridge_interval_csv

    configure_logging("WARNING")
    _replay(
        cambridge_interval_csv(file, site=site, meter=meter, tz=tz, zero_as_missing=not keep_zeros),
        SiteRecord(
            site, name=file.stem, region=region, timezone=site_timezone or tz, floor_area_m2=floor_area
        ),
        MeterRecord(site, meter, role="main"),
        rate,
        batch,
    )


@replay_app.command("biohpc")
def replay_biohpc(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="server telemetry TSV (BioHPC export)")
    ],
    site: Annotated[str, typer.Option(help="site id to replay as")],
    meter: Annotated[str, typer.Option(help="meter name")] = "it",
    tz: Annotated[str, typer.Option(help="time zone of the file's naive timestamps")] = "America/New_York",
    column: Annotated[str, typer.Option(help="the power column")] = "powerave",
    unit: Annotated[str, typer.Option(help="W or kW")] = "W",
    site_timezone: SiteZone = None,
    region: Region = None,
    rate: ReplayRate = 0.0,
    batch: ReplayBatch = 500,
) -> None:
    """A data-centre server's power telemetry TSV as IT-load power readings."""
    from ingest.registry import MeterRecord, SiteRecord
    from ingest.replay import biohpc_power_tsv

    configure_logging("WARNING")
    _replay(
        biohpc_power_tsv(file, site=site, meter=meter, tz=tz, column=column, unit=unit),
        SiteRecord(site, name=file.stem, kind="datacentre", region=region, timezone=site_timezone or tz),
        MeterRecord(site, meter, role="it_load"),
        rate,
        batch,
    )


GridRate = Annotated[float, typer.Option(help="grid records per second; 0 = as fast as possible")]


def _replay_grid(result: FeedResult, rate: float) -> None:
    from ingest.feeds.send import send_grid_records

    s = _settings()
    summary = asyncio.run(send_grid_records(s, result.records, rate=rate, progress=sys.stderr.isatty()))
    state = "cancelled after " if summary.cancelled else ""
    console.print(
        f"{state}{summary.records} grid records for {summary.regions} region(s), "
        f"{summary.first_ts} to {summary.last_ts}"
    )
    for reason, n in result.report.counts.most_common():
        shown = "; ".join(f"#{line}: {text}" for line, text in result.report.examples[reason])
        console.print(f"  skipped {n} × {reason} (e.g. {shown})")


@replay_app.command("opennem")
def replay_opennem(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Open Electricity power JSON")],
    region: Annotated[str, typer.Option(help="the region the response is for")] = "AU-SA",
    neighbour: Annotated[
        str, typer.Option(help="the region its aggregated imports/exports flow from and to")
    ] = "AU-NEM",
    rate: GridRate = 0.0,
) -> None:
    """An Open Electricity (OpenNEM) power response as generation-mix records, with emissions."""
    from ingest.feeds.opennem import opennem_power_json

    configure_logging("WARNING")
    _replay_grid(opennem_power_json(file, region=region, neighbour=neighbour), rate)


@replay_app.command("nyiso")
def replay_nyiso(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="NYISO rtfuelmix CSV")],
    region: Annotated[str, typer.Option(help="the region the file is for")] = "US-NY-NYIS",
    rate: GridRate = 0.0,
) -> None:
    """A NYISO real-time fuel-mix CSV (long format) as generation-mix records."""
    from ingest.feeds.nyiso import nyiso_rtfuelmix_csv

    configure_logging("WARNING")
    _replay_grid(nyiso_rtfuelmix_csv(file, region=region), rate)


@replay_app.command("energinet")
def replay_energinet(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Energi Data Service JSON")],
    price_area: Annotated[str | None, typer.Option(help="only this price area (DK1 or DK2)")] = None,
    rate: GridRate = 0.0,
) -> None:
    """An Energinet ElectricityProdex5MinRealtime response as generation-mix records (DK-DK1, DK-DK2)."""
    from ingest.feeds.energinet import energinet_prodex_json

    configure_logging("WARNING")
    _replay_grid(energinet_prodex_json(file, price_area=price_area), rate)


@replay_app.command("neso")
def replay_neso(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="carbon intensity CSV")],
    region: Annotated[str, typer.Option(help="the region the file is for")] = "GB",
    kind: Annotated[str, typer.Option(help="actual or forecast")] = "actual",
    rate: GridRate = 0.0,
) -> None:
    """A published GB carbon intensity CSV (NESO; hourly or half-hourly) as intensity records."""
    from ingest.feeds.neso import neso_intensity_csv

    configure_logging("WARNING")
    if kind not in ("actual", "forecast"):
        console.print("[red]--kind must be actual or forecast[/red]")
        raise typer.Exit(2)
    _replay_grid(neso_intensity_csv(file, region=region, kind=kind), rate)


@replay_app.command("rte")
def replay_rte(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="éCO2mix JSON (ODRÉ)")],
    region: Annotated[str, typer.Option(help="the region the file is for")] = "FR",
    rate: GridRate = 0.0,
) -> None:
    """An RTE éCO2mix response as generation-mix records and RTE's published intensity."""
    from ingest.feeds.rte import rte_eco2mix_json

    configure_logging("WARNING")
    _replay_grid(rte_eco2mix_json(file, region=region), rate)


keys_app = typer.Typer(help="API keys: create (the token is shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


async def _with_db(s: Settings, op: Callable[[Any], Awaitable[Any]], dsn: SecretStr | None = None) -> Any:
    import asyncpg

    conn = await asyncpg.connect((dsn or s.database_url).get_secret_value())
    try:
        return await op(conn)
    finally:
        await conn.close()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what the key is for")],
    role: Annotated[str, typer.Option(help="admin, operator, manager or alerts")],
    tenant: Annotated[str | None, typer.Option(help="manager: every site of this tenant")] = None,
    site: Annotated[list[str] | None, typer.Option(help="manager: this site (repeat)")] = None,
    expires_in_days: Annotated[float | None, typer.Option(help="default: never")] = None,
    rate: Annotated[float | None, typer.Option(help="requests/s; default: the API's")] = None,
    burst: Annotated[int | None, typer.Option(help="requests at once; default: the API's")] = None,
    token_only: Annotated[bool, typer.Option(help="print only the token (for scripts)")] = False,
) -> None:
    """Create a key; its token is printed once and only its hash is kept."""
    from pydantic import ValidationError

    from api.keys import create_key, key_problem
    from schemas.api import KeyCreate

    try:
        spec = KeyCreate(
            name=name,
            role=role,
            tenant=tenant,
            sites=site or [],
            expires_in_days=expires_in_days,
            rate_per_s=rate,
            burst=burst,
        )
    except ValidationError as exc:
        console.print(f"[red]invalid key:[/red] {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from exc
    problem = key_problem(spec)
    if problem is not None:
        console.print(f"[red]{problem}[/red]")
        raise typer.Exit(2)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    key, token = asyncio.run(_with_db(_settings(), lambda conn: create_key(conn, spec, expires)))
    if token_only:
        print(token)
        return
    console.print(f"created key {key.key_id} ({key.role}{', tenant ' + key.tenant if key.tenant else ''})")
    print(token)


@keys_app.command("list")
def keys_list() -> None:
    """Every key, without secrets: role, scope, expiry, revocation, last use."""
    from api.keys import list_keys

    for k in asyncio.run(_with_db(_settings(), list_keys)):
        state = (
            "revoked"
            if k.revoked_at
            else ("expires " + k.expires_at.isoformat() if k.expires_at else "active")
        )
        scope = f" tenant={k.tenant}" if k.tenant else ""
        scope += f" sites={','.join(k.sites)}" if k.sites else ""
        console.print(
            f"{k.key_id}  {k.role:<8} {k.name}{scope}  [{state}]  last used {k.last_used_at or '-'}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key id (the part after ws_)")]) -> None:
    """Revoke a key: API processes refuse it within WATTSTREAM_API_KEY_CACHE_S."""
    from api.keys import revoke_key

    key = asyncio.run(_with_db(_settings(), lambda conn: revoke_key(conn, key_id)))
    if key is None:
        console.print(f"[red]no key {key_id!r}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {key.key_id} ({key.name}) at {key.revoked_at}")


factors_app = typer.Typer(
    help="Emission factor sets: what is loaded, and exporting a publisher's.", no_args_is_help=True
)
app.add_typer(factors_app, name="factors")


@factors_app.command("list")
def factors_list() -> None:
    """Every factor set and annual grid table loaded with the settings, with provenance."""
    from wattstream.wiring import factor_library

    lib = factor_library(_settings())
    for fs in lib.sets.values():
        console.print(
            f"[bold]{fs.name}[/bold] ({fs.scope}, {fs.unit}{', ' + fs.region if fs.region else ''})"
        )
        console.print(f"  fuels: {', '.join(sorted(fs.steps))}")
        console.print(f"  source: {fs.source[:300]}")
        console.print(f"  licence: {fs.licence}")
    for table in lib.annual.values():
        years = ", ".join(str(y) for y in sorted(table.values))
        console.print(f"[bold]{table.name}[/bold] (annual grid averages, {table.unit}, years {years})")
        console.print(f"  source: {table.source}")
        console.print(f"  licence: {table.licence}")


@factors_app.command("opennem-publisher")
def factors_opennem_publisher(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Open Electricity power JSON")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="the factor file to write (YAML)")],
    name: Annotated[str, typer.Option(help="the factor set's name")] = "opennem-publisher",
    region: Annotated[str, typer.Option(help="the region the response is for")] = "AU-SA",
) -> None:
    """Write the publisher's own per-technology factors (emissions ÷ energy, per interval) as a
    factor file, to load with WATTSTREAM_FACTOR_FILES."""
    import yaml

    from ingest.feeds.opennem import publisher_factor_set

    out.write_text(
        yaml.safe_dump(publisher_factor_set(file, name=name, region=region), sort_keys=False),
        encoding="utf-8",
    )
    console.print(f"wrote {out} (factor set {name!r})")


@app.command()
def bench(
    readings: Annotated[int, typer.Option(min=1000, help="readings per run")] = 300_000,
    per_message: Annotated[
        list[int] | None, typer.Option(help="readings per Kafka message; repeat for several runs")
    ] = None,
    only: Annotated[str | None, typer.Option(help="run only one: ingest, intensity or alerts")] = None,
    region: Annotated[
        str | None, typer.Option(help="ingest: register the sites in this grid region (emissions in-stream)")
    ] = None,
    regions: Annotated[int, typer.Option(min=1, help="intensity: regions")] = 1000,
    days: Annotated[int, typer.Option(min=1, help="intensity: days of 5-minute intervals")] = 365,
) -> None:
    """Benchmarks, each as a ratio to a reference measured in the same run: end-to-end ingest
    against raw asyncpg COPY (needs the services), grid intensity against NumPy, reading-to-alert
    latency against one Kafka produce-consume hop."""
    configure_logging("WARNING")
    if only not in (None, "ingest", "intensity", "alerts"):
        console.print("[red]--only must be ingest, intensity or alerts[/red]")
        raise typer.Exit(2)
    if only in (None, "ingest"):
        from loadtest.bench_ingest import report, run
        from wattstream.wiring import batch_stages

        s = _settings()
        for n in per_message or [100, 1]:
            done = run(s, readings, n, stages=batch_stages, sites=500, meters_per_site=4, region=region)
            console.print(report(asyncio.run(done)))
    if only in (None, "intensity"):
        from loadtest import bench_intensity

        console.print(bench_intensity.report(bench_intensity.run(regions, days)))
    if only in (None, "alerts"):
        from loadtest import bench_alerts

        console.print(bench_alerts.report(asyncio.run(bench_alerts.run(_settings(), 200, 20, 5000.0))))


@app.command()
def battery(
    scale: Annotated[str, typer.Option(help="full, or ci (the reduced battery CI runs)")] = "full",
    only: Annotated[
        list[str] | None,
        typer.Option(help="run only this row (repeat): crash, poison, broker, sigterm, outage, api"),
    ] = None,
    seed: Annotated[int, typer.Option(help="the same seed generates the same traffic")] = 1,
    log_dir: Annotated[
        Path | None, typer.Option(file_okay=False, help="default test-artifacts/battery/<time>")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", dir_okay=False, help="also write the results here")
    ] = None,
) -> None:
    """The reliability battery against the real services: crash consistency, poison, a broker
    restart, SIGTERM, a database outage, the API. Stops and starts Kafka and PostgreSQL through
    deploy/ (the instance the settings name), prints a table, exits 1 when a promise breaks."""
    from loadtest.battery import ROWS, SCALES, run_main

    configure_logging("WARNING")
    if scale not in SCALES:
        console.print(f"[red]--scale must be one of {', '.join(sorted(SCALES))}[/red]")
        raise typer.Exit(2)
    unknown = sorted(set(only or ()) - set(ROWS))
    if unknown:
        console.print(f"[red]unknown row(s) {', '.join(unknown)}; rows: {', '.join(ROWS)}[/red]")
        raise typer.Exit(2)
    code = run_main(
        _settings(), SCALES[scale], only=only or (), seed=seed, log_dir=log_dir, json_path=json_out
    )
    raise typer.Exit(code)


def _real_data_replays(data_dir: Path | None) -> list[tuple[str, list[str]]]:
    """The demo's real data: Cambridge buildings (UK, local days in London), a BioHPC GPU server,
    and the grid feeds (Open Electricity's South Australia, NYISO, Energinet, GB's intensity)."""
    if data_dir is None:
        return []
    runs = []
    for csv_file in sorted((data_dir / "buildings").glob("cambridge_*_electricity_*.csv")):
        building = csv_file.name.split("_")[1]
        runs.append(
            (
                f"replay {csv_file.name}",
                [
                    "cambridge",
                    str(csv_file),
                    "--site",
                    f"uk-{building}",
                    "--site-timezone",
                    "Europe/London",
                    "--region",
                    "GB",
                ],
            )
        )
    grid = data_dir / "grid"
    for feed in sorted(grid.glob("openelectricity_*.json")):
        region = "AU-" + feed.stem.split("_")[1].split("-")[-1]
        runs.append((f"replay {feed.name}", ["opennem", str(feed), "--region", region]))
    for feed in sorted(grid.glob("nyiso_*.csv")):
        runs.append((f"replay {feed.name}", ["nyiso", str(feed)]))
    for feed in sorted(grid.glob("energinet_*.json")):
        runs.append((f"replay {feed.name}", ["energinet", str(feed)]))
    for feed in sorted(grid.glob("gb_grid_carbon_intensity_*.csv")):
        runs.append((f"replay {feed.name}", ["neso", str(feed), "--region", "GB"]))
    for tsv in sorted((data_dir / "datacentre").glob("biohpc_*.tsv")):
        server = tsv.name.split("_")[1]
        runs.append(
            (f"replay {tsv.name}", ["biohpc", str(tsv), "--site", f"us-{server}", "--region", "US-NY-NYIS"])
        )
    return runs


_DEMO_RULE = """
INSERT INTO alert_rules (name, kind, metric, comparator, threshold, resolve_threshold, for_s, tenant, region,
                         params, severity)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11
 WHERE NOT EXISTS (SELECT FROM alert_rules WHERE name = $1)
"""


def _demo_rules(s: Settings) -> None:
    """A few alert rules on the simulated city (once per database), so the demo's alerts move."""
    from ingest.simulate import DEMO_TENANTS

    rules = [
        (
            "demo: data centre PUE above grade 3 (GB 40879)",
            "threshold",
            "pue",
            ">",
            1.5,
            1.45,
            1800.0,
            None,
            "CN-ZJ",
            "{}",
            "warning",
        ),
        (
            "demo: CN-ZJ non-fossil share under the 2025 target",
            "threshold",
            "nonfossil_share",
            "<",
            0.24,
            0.26,
            3600.0,
            None,
            "CN-ZJ",
            "{}",
            "info",
        ),
        (
            "demo: meter silent for 10 minutes",
            "staleness",
            "meter_silence_s",
            ">",
            600.0,
            600.0,
            0.0,
            DEMO_TENANTS[0],
            None,
            "{}",
            "critical",
        ),
        (
            "demo: monthly energy budget 250 MWh per site",
            "quota_burn",
            "quota_ratio",
            ">",
            1.0,
            0.95,
            0.0,
            DEMO_TENANTS[0],
            None,
            '{"quota": "energy", "period": "month", "limit": 250000}',
            "warning",
        ),
        (
            "demo: unusual hourly energy",
            "anomaly",
            "anomaly_score",
            ">",
            4.0,
            3.0,
            0.0,
            DEMO_TENANTS[1],
            None,
            "{}",
            "info",
        ),
    ]

    async def create_all(conn: Any) -> None:
        for rule in rules:
            await conn.execute(_DEMO_RULE, *rule)

    asyncio.run(_with_db(s, create_all, s.migrate_database_url))


def _demo_keys(s: Settings) -> list[tuple[str, str]]:
    """Fresh keys for the demo: an admin, and a manager who sees only one district's buildings."""
    from api.keys import create_key
    from ingest.simulate import DEMO_TENANTS
    from schemas.api import KeyCreate

    specs = [
        ("admin key (everything)", KeyCreate(name="demo admin", role="admin", expires_in_days=1)),
        (
            f"manager key (tenant {DEMO_TENANTS[0]} only)",
            KeyCreate(name="demo manager", role="manager", tenant=DEMO_TENANTS[0], expires_in_days=1),
        ),
    ]
    expires = datetime.now(UTC) + timedelta(days=1)

    async def create_all(conn: Any) -> list[tuple[str, str]]:
        return [(label, (await create_key(conn, spec, expires))[1]) for label, spec in specs]

    return cast(list[tuple[str, str]], asyncio.run(_with_db(s, create_all)))


@app.command()
def up(
    rate: Annotated[float, typer.Option(help="simulator readings per second")] = 200.0,
    sites: Annotated[int, typer.Option(min=1, help="simulated sites")] = 20,
    speedup: Annotated[float, typer.Option(help="simulated seconds per wall-clock second")] = 60.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="replay the real samples found here (buildings/, datacentre/)"),
    ] = None,
) -> None:
    """Run the whole system (migrate, topics, ingest worker, API, simulator, replay) until Ctrl-C.

    Kafka and TimescaleDB must be running: `make demo` starts them through deploy/ first.
    """
    configure_logging("INFO")
    s = _settings()
    metrics_dir = s.metrics_dir or Path(
        os.environ.get("WATTSTREAM_CACHE", Path.home() / ".cache/wattstream")
    ) / ("run/metrics")
    reset_shared_metrics(metrics_dir)
    enable_shared_metrics(metrics_dir)  # the children inherit it
    env = {**os.environ, "WATTSTREAM_METRICS_DIR": str(metrics_dir)}
    if (
        data_dir is not None and not s.factor_files
    ):  # the real zones' factors, as Electricity Maps publishes them
        em_files = sorted(str(p) for p in (data_dir / "factors").glob("electricitymaps_*.yaml"))
        env["WATTSTREAM_FACTOR_FILES"] = json.dumps(em_files)
    exe = [sys.executable, "-m", "wattstream"]
    subprocess.run([*exe, "migrate"], check=True, env=env)
    subprocess.run([*exe, "topics"], check=True, env=env)
    demo_keys = _demo_keys(s)
    _demo_rules(s)
    children = {
        "ingest": subprocess.Popen([*exe, "ingest"], env=env),
        "api": subprocess.Popen([*exe, "api"], env=env),
        "simulate": subprocess.Popen(
            [
                *exe,
                "simulate",
                "--rate",
                str(rate),
                "--sites",
                str(sites),
                "--speedup",
                str(speedup),
                "--no-progress",
            ],
            env=env,
        ),
    }
    for name, args in _real_data_replays(data_dir):
        children[name] = subprocess.Popen([*exe, "replay", *args], env=env)
    for label, token in demo_keys:
        console.print(f"{label}: [bold]{token}[/bold]", soft_wrap=True)
    console.print(
        f"[bold green]wattstream is up[/bold green]: API http://{s.api_host}:{s.api_port}/docs  ·  "
        f"metrics http://{s.api_host}:{s.api_port}/metrics and http://{s.ingest_metrics_host}:"
        f"{s.ingest_metrics_port}/metrics  ·  Ctrl-C stops"
    )
    stop = _StopSignal()
    try:
        while not stop.requested:
            for name, proc in children.items():
                if name in ("ingest", "api") and proc.poll() is not None:
                    console.print(f"[red]{name} exited with {proc.returncode}; stopping[/red]")
                    stop.requested = True
            time.sleep(0.5)
    finally:
        for proc in reversed(children.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in children.items():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{name} did not stop in 15 s; killing[/yellow]")
                proc.kill()
            mark_process_dead(metrics_dir, proc.pid)
        console.print("stopped")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
