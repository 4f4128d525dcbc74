"""Which database errors mean "the database is away or restarting", not "this work is wrong".

Ingest holds its batch and retries on those errors; the API answers 503 with `Retry-After`.
Both read the same list, so a failure mode found on one side is handled on the other.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import InternalClientError

__all__ = ["TRANSIENT_DB_ERRORS", "is_transient_db_error"]


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
