"""Liveness (`/healthz`) and readiness (`/readyz`: database and Kafka reachable)."""

from __future__ import annotations

import asyncio
from typing import Literal

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from runtime.dberrors import TRANSIENT_DB_ERRORS

__all__ = ["router"]

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT_S = 2.0


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "database": "ok", "kafka": "ok"}]}
    )

    status: Literal["ready", "not_ready"]
    database: str
    kafka: str


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and Kafka are reachable",
    responses={503: {"model": Readiness}},
)
async def readyz(request: Request) -> JSONResponse:
    pool = request.app.state.pool  # SELECT 1 only: no table, so no key scope
    database = kafka = "ok"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            await pool.fetchval("SELECT 1")
    except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError) as exc:
        database = f"unreachable: {type(exc).__name__}"
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            await request.app.state.kafka_probe()
    except (OSError, TimeoutError, KafkaError) as exc:
        kafka = f"unreachable: {type(exc).__name__}"
    ready = database == "ok" and kafka == "ok"
    body = Readiness(status="ready" if ready else "not_ready", database=database, kafka=kafka)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
