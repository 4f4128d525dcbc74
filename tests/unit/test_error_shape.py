"""Failures that are not the client's fault still answer in the one error shape: a database that
is away is a 503 worth retrying, anything else a 500 whose details stay in the server's log."""

from __future__ import annotations

import asyncpg
import httpx
from asyncpg.exceptions import InternalClientError, ProtocolError
from prometheus_client import CollectorRegistry

from api.app import create_app
from schemas.settings import Settings


def _app_raising(exc: BaseException) -> httpx.AsyncClient:
    app = create_app(Settings(), CollectorRegistry())

    @app.get("/raise")
    async def _raise() -> None:
        raise exc

    # the server's view: the app answers, and the error still reaches the server's log
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_a_database_that_is_away_answers_503_with_retry_after() -> None:
    for exc in (
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        TimeoutError(),
    ):
        async with _app_raising(exc) as client:
            r = await client.get("/raise")
        assert r.status_code == 503, (exc, r.text)
        assert r.headers["retry-after"] == "2"
        assert r.json() == {
            "error": {
                "code": "database_unavailable",
                "message": "the database is unavailable; retry shortly",
                "field": None,
            }
        }


async def test_any_other_fault_answers_500_in_the_error_shape_without_details() -> None:
    for exc in (
        RuntimeError("secret detail"),
        OSError(5, "Input/output error: secret"),  # a file, not the database's socket
        ProtocolError("secret: not a transient state"),  # a subclass of asyncpg's internal error
    ):
        async with _app_raising(exc) as client:
            r = await client.get("/raise")
        assert r.status_code == 500, exc
        assert r.json() == {
            "error": {
                "code": "internal_error",
                "message": "internal error; it has been logged",
                "field": None,
            }
        }
        assert "secret" not in r.text


def test_every_operation_documents_503_and_500() -> None:
    doc = create_app(Settings(), CollectorRegistry()).openapi()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert {"500", "503"} <= set(operation["responses"]), f"{method.upper()} {path}"
