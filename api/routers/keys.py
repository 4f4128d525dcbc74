"""API keys over HTTP, for admin keys: create (the token is shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request

from api.auth import AdminKey, Scoped
from api.errors import ApiError, NotFound, error_responses
from api.keys import create_key, key_problem, list_keys, revoke_key
from schemas.api import KeyCreate, KeyCreated, KeyPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1/keys", tags=["keys"])
_AUTH = error_responses(401, 403, 422, 429)


@router.post("", response_model=KeyCreated, status_code=201, summary="Create an API key", responses=_AUTH)
async def create(conn: Scoped, who: AdminKey, body: KeyCreate) -> KeyCreated:
    problem = key_problem(body)
    if problem is not None:
        raise ApiError(problem, field="tenant")
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    key, token = await create_key(conn, body, expires)
    return KeyCreated(key=key, token=token)


@router.get(
    "", response_model=list[KeyPublic], summary="List API keys (never their secrets)", responses=_AUTH
)
async def list_all(conn: Scoped, who: AdminKey) -> list[KeyPublic]:
    return list(await list_keys(conn))


@router.delete(
    "/{key_id}",
    response_model=KeyPublic,
    summary="Revoke an API key",
    responses=error_responses(401, 403, 404, 429),
)
async def revoke(
    conn: Scoped, who: AdminKey, request: Request, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]
) -> KeyPublic:
    key = await revoke_key(conn, key_id)
    if key is None:
        raise NotFound(f"key {key_id!r} not found")
    request.app.state.keys.forget(key_id)  # this process refuses it at once; others within the cache time
    return key
