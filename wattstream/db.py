"""How wattstream's processes talk to PostgreSQL: the session settings of a pool, and which
errors mean "the database is away or restarting", not "this work is wrong".

Ingest holds its batch and retries on those errors; the API answers 503 with `Retry-After`.
Both read the same list, so a failure mode found on one side is handled on the other.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import InternalClientError

__all__ = ["QUERY_SESSION", "TRANSIENT_DB_ERRORS", "is_transient_db_error"]

# Plan every execution of a prepared statement for its own parameters. After five executions
# PostgreSQL may switch a statement to a generic plan, which cannot see which hypertable chunks
# or how few rows a meter and a time range select: a month of one meter's quarter hours went
# from 5 ms to 24 ms on a table of 100 meters. Planning costs a fraction of a millisecond.
QUERY_SESSION: dict[str, str] = {"plan_cache_mode": "force_custom_plan"}

TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash recovery, query cancelled by a restart
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    # A connection whose server ended it while it sat idle in the pool: asyncpg has read the
    # server's FATAL but not yet the closed socket, and refuses the next query with "cannot
    # switch to state ...; another operation (2) is in progress". The pool terminates the
    # connection on release, so the retry gets a fresh one.
    InternalClientError,
)


def is_transient_db_error(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_DB_ERRORS)
