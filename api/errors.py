"""One error shape for every failure: `{"error": {"code", "message", "field"}}`."""

from __future__ import annotations

import logging
import math

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.dberrors import API_TRANSIENT_DB_ERRORS, is_transient_db_error
from schemas.api import ErrorBody, ErrorDetail

__all__ = [
    "ApiError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
    "error_responses",
    "install_error_handlers",
]

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the API refuses: by default a bad parameter (422), naming the field at fault."""

    status = 422
    code = "invalid_parameter"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def headers(self) -> dict[str, str]:
        return {}


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


def _body(code: str, message: str, field: str | None) -> dict[str, object]:
    return ErrorBody(error=ErrorDetail(code=code, message=message, field=field)).model_dump()


def _field_of(loc: tuple[object, ...]) -> str | None:
    # ("query", "start") -> "start"; ("query", "site", 3) -> "site": a parameter is the field,
    # whichever of its repeats is at fault; ("body", "sites", 0, "name") -> "sites.0.name"
    if len(loc) > 1 and loc[0] in ("query", "path", "header", "cookie"):
        return str(loc[1])
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts) or None


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(
        _body(exc.code, exc.message, exc.field), status_code=exc.status, headers=exc.headers()
    )


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = _field_of(tuple(first.get("loc", ())))
    message = f"{field}: {first['msg']}" if field else str(first["msg"])
    return JSONResponse(_body("invalid_parameter", message, field), status_code=422)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}.get(
        exc.status_code, "http_error"
    )
    return JSONResponse(
        _body(code, str(exc.detail), None), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


async def _unstorable_text(_: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL text cannot hold NUL (nor unpaired surrogates): the request is at fault, not the server
    return JSONResponse(
        _body("invalid_parameter", f"text the database cannot store: {exc}", None), status_code=422
    )


_RETRY_AFTER_DB_S = 2


async def _database_away(request: Request, exc: Exception) -> JSONResponse:
    if not is_transient_db_error(exc, API_TRANSIENT_DB_ERRORS):  # a subclass that is not
        log.error(
            "unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
        )
        return _internal_error_body()
    # the database is restarting or unreachable: the request was fine, it is worth repeating
    log.warning("database unavailable for %s %s: %r", request.method, request.url.path, exc)
    return JSONResponse(
        _body("database_unavailable", "the database is unavailable; retry shortly", None),
        status_code=503,
        headers={"Retry-After": str(_RETRY_AFTER_DB_S)},
    )


def _internal_error_body() -> JSONResponse:
    return JSONResponse(_body("internal_error", "internal error; it has been logged", None), status_code=500)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after answering, so the server still logs the traceback
    return _internal_error_body()


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types every handler on Exception but dispatches by the registered class
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(asyncpg.CharacterNotInRepertoireError, _unstorable_text)
    app.add_exception_handler(asyncpg.UntranslatableCharacterError, _unstorable_text)
    for cls in API_TRANSIENT_DB_ERRORS:
        app.add_exception_handler(cls, _database_away)
    app.add_exception_handler(Exception, _internal_error)


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {s: {"model": ErrorBody} for s in statuses}
