"""Applies the numbered migrations in `schemas/migrations`, once each, under an advisory lock."""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg

from schemas.migrations import Migration, migrations

__all__ = ["apply_migrations"]

log = logging.getLogger(__name__)

_LOCK_KEY = 0x77617474  # "watt": one migrator at a time per database
_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""
_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
_RECORD = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
_GRANT = "SELECT wattstream_grant_app($1)"
_GRANT_API = "SELECT wattstream_grant_api($1, $2)"
_GRANT_ALERTING = "SELECT wattstream_grant_alerting($1, $2)"


async def apply_migrations(
    dsn: str, app_role: str, api_role: str, on_applied: Callable[[Migration], None] | None = None
) -> list[Migration]:
    """Apply what is pending, grant the app (ingest) role its rows and the API role its narrower
    rights and tenant policies; returns what was applied.

    Safe to run twice and from two processes at once. A migration whose file changed after it
    was applied is an error, not silently skipped.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(_CREATE_LEDGER)
        applied = {r["version"]: r for r in await conn.fetch(_APPLIED)}
        done: list[Migration] = []
        for mig in migrations():
            row = applied.get(mig.version)
            if row is not None:
                if row["checksum"] != mig.checksum:
                    raise RuntimeError(
                        f"migration {mig.version:03d}_{mig.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(_RECORD, mig.version, mig.name, mig.checksum)
            log.info("applied migration %03d_%s", mig.version, mig.name)
            if on_applied is not None:
                on_applied(mig)
            done.append(mig)
        await conn.execute(_GRANT, app_role)
        await conn.execute(_GRANT_API, api_role, app_role)
        await conn.execute(_GRANT_ALERTING, api_role, app_role)
        return done
    finally:
        await conn.close()
