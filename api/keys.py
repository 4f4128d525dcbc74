"""Creating, listing and revoking API keys: one implementation for `wattstream keys` and `/v1/keys`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from api.auth import NewKey, generate_key
from schemas.api import KeyCreate, KeyPublic

__all__ = ["create_key", "key_problem", "list_keys", "revoke_key"]

_INSERT = """
INSERT INTO api_keys (key_id, secret_sha256, name, role, tenant, sites, rate_per_s, burst, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING key_id, name, role, tenant, sites, rate_per_s, burst, created_at, expires_at, revoked_at,
          last_used_at
"""
_LIST = """
SELECT key_id, name, role, tenant, sites, rate_per_s, burst, created_at, expires_at, revoked_at,
       last_used_at
  FROM api_keys ORDER BY created_at, key_id
"""
_REVOKE = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1
RETURNING key_id, name, role, tenant, sites, rate_per_s, burst, created_at, expires_at, revoked_at,
          last_used_at
"""


def key_problem(spec: KeyCreate) -> str | None:
    """Why a key cannot be made so: a manager key must say what it manages, no other may."""
    if spec.role == "manager" and not spec.tenant and not spec.sites:
        return "a manager key needs a tenant or sites"
    if spec.role != "manager" and (spec.tenant or spec.sites):
        return f"a {spec.role} key has no tenant or sites"
    return None


def _public(row: asyncpg.Record) -> KeyPublic:
    return KeyPublic.model_validate({**dict(row), "sites": list(row["sites"])})


async def create_key(
    conn: asyncpg.Connection, spec: KeyCreate, expires_at: datetime | None
) -> tuple[KeyPublic, str]:
    """The stored key and its token (shown once: only its hash is kept)."""
    new: NewKey = generate_key()
    row = await conn.fetchrow(
        _INSERT,
        new.key_id,
        new.secret_sha256,
        spec.name,
        spec.role,
        spec.tenant,
        list(spec.sites),
        spec.rate_per_s,
        spec.burst,
        expires_at,
    )
    return _public(row), new.token


async def list_keys(conn: asyncpg.Connection) -> Sequence[KeyPublic]:
    return [_public(r) for r in await conn.fetch(_LIST)]


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> KeyPublic | None:
    row = await conn.fetchrow(_REVOKE, key_id)
    return None if row is None else _public(row)
