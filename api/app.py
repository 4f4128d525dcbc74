"""The FastAPI application factory; clients and pools live in its lifespan."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter
from starlette.types import Receive, Scope, Send

from api import auth
from api.directory import SiteDirectory
from api.errors import error_responses, install_error_handlers
from api.hotpath import LatestValues
from api.metrics import RequestMetrics
from api.routers import alerts, datacentre, emissions, energy, grid, health, keys, metrics, sites, streams
from api.seriescache import SeriesCache
from api.streams import RAW_SEND, DerivedTopics, Event, StreamHub, run_derived_consumer
from core.jsontext import bucket_array_json
from schemas.settings import Settings

__all__ = ["create_app", "end_streams"]

_STATIC = Path(__file__).resolve().parent / "static"


class _App(FastAPI):
    """FastAPI that puts the server's own `send` in each HTTP request's scope (`RAW_SEND`), for
    streams whose body frames the hub writes from its fan-out loop (see `api.streams`). The
    response head still goes through every middleware, so the metrics and the error handlers
    see it; body frames of a started stream are nothing they act on."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, registry: CollectorRegistry) -> FastAPI:
    """The app; `registry` is what /metrics exposes (the composition root decides which)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            settings.api_database_url.get_secret_value(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            connection_class=auth.ScopedConnection,
            reset=auth.keep_session,
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="wattstream-api")
        series = SeriesCache(settings.api_series_cache_mb * 2**20, settings.api_series_cache_s)

        def invalidate(event: Event) -> None:
            kind, _, site = event.channel.partition(":")
            if kind == "site":  # the readings consumer committed energy for this site
                series.invalidate(site)

        hub = StreamHub(
            buffer=settings.sse_buffer_events,
            client_queue=settings.sse_client_queue,
            on_event=invalidate,
            on_live=series.set_live,
        )
        stop = asyncio.Event()
        kinds = {
            settings.topic_intensity: "grid",
            settings.topic_site_energy: "site",
            settings.topic_alerts: "alerts",
        }
        derived = DerivedTopics(
            bootstrap=settings.kafka_bootstrap,
            kinds=kinds,
            partitions={spec.name: spec.partitions for spec in settings.topics() if spec.name in kinds},
            warm=settings.sse_buffer_events,
        )
        directory = SiteDirectory(
            pool,
            settings.api_site_refresh_s,
            dsn=settings.api_database_url.get_secret_value(),
            on_change=series.invalidate,  # a meter's role or a site's zone changes its series
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            await admin.start()
            await directory.load()
            app.state.pool = pool
            app.state.sites = directory
            app.state.series_cache = series
            auth.install(app, settings, pool)
            app.state.settings = settings
            app.state.kafka_probe = admin.list_topics
            app.state.metrics_registry = registry
            app.state.hub = hub
            # the one Kafka consumer of this process, fanned out to every SSE client
            tasks.append(asyncio.create_task(run_derived_consumer(derived, hub, stop)))
            tasks.append(asyncio.create_task(directory.run(stop)))
            tasks.append(asyncio.create_task(hub.run_heartbeats(settings.sse_heartbeat_s, stop)))
            # compile (or load from Numba's cache) the series JSON kernel now, not on a first query
            one, ones = np.zeros(1, dtype=np.int64), np.ones(1)
            bucket_array_json(one, one, ones, ones, one)
            # what start-up built (modules, models, routes) lives as long as the process: leave it
            # out of the collector's full passes, which requests otherwise pay for
            gc.freeze()
            yield
        finally:
            stop.set()
            hub.close_all()
            await asyncio.gather(*tasks)
            await admin.close()
            await pool.close()

    app = _App(
        title="wattstream",
        version="0.1.0",
        summary="Live energy and carbon of buildings, data centres and grids",
        lifespan=lifespan,
        # wattstream's own metrics are Prometheus (api.metrics); FastAPI's native OpenTelemetry
        # would look up the global providers on every request to find none configured
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # any route may meet a database restart (503, Retry-After) or a fault (500), in the one shape
        responses=error_responses(500, 503),
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(sites.router)
    app.include_router(energy.router)
    app.include_router(energy.sites_router)
    app.include_router(emissions.router)
    app.include_router(datacentre.router)
    app.include_router(grid.router)
    app.include_router(alerts.router)
    app.include_router(keys.router)
    app.include_router(streams.router)
    app.include_router(metrics.router)
    app.add_middleware(LatestValues)  # inside the metrics: its answers are measured like any other
    app.add_middleware(RequestMetrics)
    # the dashboard: static files, no key needed to load them (every figure it shows needs one)
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")

    _keep_whole_examples(app)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(_STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _keep_whole_examples(app: FastAPI) -> None:
    """FastAPI writes its OpenAPI document without None values (`exclude_none`), and that strips
    the nulls inside the models' examples too (fastapi/fastapi#5559): an example would then show
    `"as_of"` missing where the API sends `"as_of": null`. Put each model's examples back whole."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()  # FastAPI caches this very dict: the fix below is kept with it
        components = document.get("components", {}).get("schemas", {})
        for annotation in _route_annotations(app):
            for mode in ("validation", "serialization"):
                definitions = TypeAdapter(list[annotation]).json_schema(mode=mode).get("$defs", {})  # type: ignore[valid-type]
                for name, schema in definitions.items():
                    for key in (name, f"{name}-Input", f"{name}-Output"):
                        if "examples" in schema and key in components:
                            components[key]["examples"] = schema["examples"]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _route_annotations(app: FastAPI) -> list[Any]:
    """The types of every documented route's responses and request body."""
    found: list[Any] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        if route.response_model is not None:
            found.append(route.response_model)
        found.extend(extra["model"] for extra in route.responses.values() if "model" in extra)
        if route.body_field is not None:
            found.append(route.body_field.field_info.annotation)
    return found


def end_streams(app: FastAPI) -> None:
    """End every live stream of this app (the server is shutting down)."""
    hub: StreamHub | None = getattr(app.state, "hub", None)
    if hub is not None:
        hub.close_all()
