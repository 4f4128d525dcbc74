"""API keys, roles and the scope of a request.

A key is `ws_<key_id>_<secret>`, sent as `Authorization: Bearer <key>`. The database holds the
key id and the SHA-256 of the secret (256 random bits: a fast hash is enough), never the
secret. Roles:

| role | may |
|---|---|
| admin | everything, including keys |
| operator | read every site and every grid region; read and acknowledge every alert |
| manager | read and configure its tenant's and/or listed sites and their regions; their alerting |
| alerts | alerts and their streams only (its tenant's or sites' if the key has them); acknowledge |

Every route declares the permission it needs (`require(...)`); a missing, malformed, unknown,
revoked or expired key answers 401, a key without the permission 403, a key over its rate
429 with `Retry-After`. A site (or region, or certificate) outside a key's scope answers 404
exactly like one that does not exist: the same lookup, with the scope in its WHERE clause and
in the database's row-level security, so the body and the timing are those of a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Forbidden, TooManyRequests, Unauthorized
from runtime.dberrors import API_TRANSIENT_DB_ERRORS, is_transient_db_error
from schemas.settings import Settings

__all__ = [
    "PERMISSIONS",
    "AdminKey",
    "AlertsAck",
    "AlertsRead",
    "AlertsWrite",
    "GridRead",
    "KeyStore",
    "NewKey",
    "Principal",
    "RateLimiter",
    "Scoped",
    "ScopedConnection",
    "SitesRead",
    "SitesWrite",
    "generate_key",
    "hash_secret",
    "keep_session",
    "pooled",
    "require",
    "scoped_connection",
]

Role = Literal["admin", "operator", "manager", "alerts"]
Permission = Literal[
    "sites:read", "sites:write", "grid:read", "alerts:read", "alerts:ack", "alerts:write", "keys:admin"
]
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "admin": frozenset(
        {"sites:read", "sites:write", "grid:read", "alerts:read", "alerts:ack", "alerts:write", "keys:admin"}
    ),
    "operator": frozenset({"sites:read", "grid:read", "alerts:read", "alerts:ack"}),
    "manager": frozenset(
        {"sites:read", "sites:write", "grid:read", "alerts:read", "alerts:ack", "alerts:write"}
    ),
    "alerts": frozenset({"alerts:read", "alerts:ack"}),
}
_PREFIX: Final = "ws"
_DUMMY_HASH: Final = hashlib.sha256(b"no such key").digest()
# what `generate_key` makes (and `DELETE /v1/keys/{key_id}` takes): anything else is no key, and
# never reaches the database or the key cache, whatever a client puts in its header
_KEY_ID: Final = re.compile(r"[0-9a-f]{1,32}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, and what they may see."""

    key_id: str
    name: str
    role: Role
    tenant: str | None
    sites: frozenset[str]
    rate_per_s: float | None = None
    burst: int | None = None

    @property
    def all_sites(self) -> bool:
        return self.role in ("admin", "operator")

    def can_see(self, site_id: str, tenant: str) -> bool:
        return self.all_sites or tenant == self.tenant or site_id in self.sites

    @property
    def all_alerts(self) -> bool:
        """Operators see every alert; so does an alerts key not limited to a tenant or sites."""
        return self.all_sites or (self.role == "alerts" and self.tenant is None and not self.sites)


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    token: str  # shown once
    secret_sha256: bytes


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"{_PREFIX}_{key_id}_{secret}", hash_secret(secret))


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not _KEY_ID.fullmatch(parts[1]) or not parts[2]:
        return None
    return parts[1], parts[2]


_LOOKUP = """
SELECT key_id, secret_sha256, name, role, tenant, sites, rate_per_s, burst, expires_at, revoked_at
  FROM api_keys WHERE key_id = $1
"""
_TOUCH = "UPDATE api_keys SET last_used_at = now() WHERE key_id = $1"


class KeyStore:
    """Looks keys up (cached for `cache_s`) and verifies them in constant time."""

    def __init__(self, pool: asyncpg.Pool, cache_s: float) -> None:
        self._pool = pool
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, _Key | None]] = {}

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)

    async def authenticate(self, token: str) -> Principal:
        parts = _split(token)
        key_id, secret = parts if parts is not None else ("", token)
        row = await self._row(key_id) if parts is not None else None
        # compare even when there is no such key, so a miss costs what a wrong secret costs
        expected = row.secret_sha256 if row is not None else _DUMMY_HASH
        if not hmac.compare_digest(hash_secret(secret), expected) or row is None:
            raise Unauthorized("invalid API key")
        if row.revoked:
            raise Unauthorized("this API key was revoked")
        if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
            raise Unauthorized("this API key has expired")
        return row.principal

    async def _row(self, key_id: str) -> _Key | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        async with pooled(self._pool) as conn:  # api_keys has no row-level security: no scope
            row = await conn.fetchrow(_LOOKUP, key_id)
            if row is not None:
                await conn.execute(_TOUCH, key_id)  # once per cache period, not per request
        if len(self._cache) > 10_000:
            self._cache.clear()
        key = _Key.of(row) if row is not None else None
        self._cache[key_id] = (now, key)
        return key


@dataclass(frozen=True, slots=True)
class _Key:
    """A looked-up key, as the cache holds it: its principal is built once, not per request."""

    principal: Principal
    secret_sha256: bytes
    expires_at: datetime | None
    revoked: bool

    @classmethod
    def of(cls, row: asyncpg.Record) -> _Key:
        return cls(
            Principal(
                key_id=row["key_id"],
                name=row["name"],
                role=row["role"],
                tenant=row["tenant"],
                sites=frozenset(row["sites"]),
                rate_per_s=row["rate_per_s"],
                burst=row["burst"],
            ),
            bytes(row["secret_sha256"]),
            row["expires_at"],
            row["revoked_at"] is not None,
        )


class RateLimiter:
    """A token bucket per key, in this process: `rate` per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, p: Principal) -> None:
        rate = p.rate_per_s or self._rate
        burst = p.burst or self._burst
        now = time.monotonic()
        tokens, last = self._buckets.get(p.key_id, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate)
        if tokens < 1.0:
            self._buckets[p.key_id] = (tokens, now)
            wait = (1.0 - tokens) / rate
            raise TooManyRequests(f"rate limit of {rate:g} requests/s exceeded", wait)
        self._buckets[p.key_id] = (tokens - 1.0, now)


_bearer = HTTPBearer(auto_error=False, description="an API key: `ws_<id>_<secret>`")


async def _authenticated(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    principal = await request.app.state.keys.authenticate(credentials.credentials)
    request.app.state.rate_limiter.take(principal)
    request.state.principal = principal
    return principal  # type: ignore[no-any-return]


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the caller's principal, if its role has `permission` (else 403)."""

    async def check(principal: Annotated[Principal, Depends(_authenticated)]) -> Principal:
        if permission not in PERMISSIONS[principal.role]:
            raise Forbidden(f"a {principal.role} key may not use this route (needs {permission})")
        return principal

    check.__name__ = f"require_{permission.replace(':', '_')}"
    return check


SitesRead = Annotated[Principal, Depends(require("sites:read"))]
SitesWrite = Annotated[Principal, Depends(require("sites:write"))]
GridRead = Annotated[Principal, Depends(require("grid:read"))]
AdminKey = Annotated[Principal, Depends(require("keys:admin"))]
AlertsRead = Annotated[Principal, Depends(require("alerts:read"))]
AlertsAck = Annotated[Principal, Depends(require("alerts:ack"))]
AlertsWrite = Annotated[Principal, Depends(require("alerts:write"))]

_SCOPE = """
SELECT set_config('wattstream.scope_all', $1, false), set_config('wattstream.scope_tenant', $2, false),
       set_config('wattstream.scope_sites', $3, false)
"""
_Scope = tuple[str, str, str]


class ScopedConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped here
    """An API pool connection that remembers the scope its session carries, so a request whose
    key has the scope the connection already holds sets nothing. The pool keeps the scope on
    release (`keep_session`) instead of running `RESET ALL`: every read of a table under
    row-level security goes through `scoped_connection`, which sets the scope it needs."""

    _wattstream_scope: _Scope | None = None

    def scope(self) -> _Scope | None:
        return self._wattstream_scope

    def remember_scope(self, scope: _Scope | None) -> None:
        self._wattstream_scope = scope


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release. asyncpg has already rolled back any open transaction; the
    session's scope stays (see `ScopedConnection`), and the API uses no cursors, listeners or
    advisory locks that a full reset would clear. This saves a round trip on every request."""


@contextlib.asynccontextmanager
async def scoped_connection(pool: asyncpg.Pool, principal: Principal) -> AsyncIterator[asyncpg.Connection]:
    """A connection whose session carries the key's scope for row-level security: set in a round
    trip of its own only when the connection last carried another scope."""
    scope = (
        "on" if principal.all_sites else "off",
        principal.tenant or "",
        ",".join(sorted(principal.sites)),
    )
    async with pooled(pool) as conn:
        if conn.scope() != scope:
            conn.remember_scope(None)  # unknown until the server has said yes
            await conn.execute(_SCOPE, *scope)
            conn.remember_scope(scope)
        yield conn


@contextlib.asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the API pool. One that failed as the database went away is closed: its
    release runs no query (`keep_session`) that would find it broken, so the pool would hand
    it to the next request."""
    async with pool.acquire() as conn:
        try:
            yield conn
        except Exception as exc:
            if is_transient_db_error(exc, API_TRANSIENT_DB_ERRORS):
                conn.terminate()
            raise


async def _scoped(
    request: Request, principal: Annotated[Principal, Depends(_authenticated)]
) -> AsyncIterator[asyncpg.Connection]:
    async with scoped_connection(request.app.state.pool, principal) as conn:
        yield conn


Scoped = Annotated[asyncpg.Connection, Depends(_scoped)]


def install(app: Any, settings: Settings, pool: asyncpg.Pool) -> None:
    """Key store and rate limiter for an app, built in its lifespan."""
    app.state.keys = KeyStore(pool, settings.api_key_cache_s)
    app.state.rate_limiter = RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
