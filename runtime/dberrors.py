"""Which database errors mean "the database is away or restarting", not "this work is wrong".

Ingest holds its batch and retries on those errors; the API answers 503 with `Retry-After`.
Both read the same list, so a failure mode found on one side is handled on the other.
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions import InternalClientError

__all__ = ["API_TRANSIENT_DB_ERRORS", "TRANSIENT_DB_ERRORS", "is_transient_db_error"]

_SERVER_AWAY: tuple[type[Exception], ...] = (
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,  # admin shutdown, crash recovery, query cancelled by a restart
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    # A connection whose server ended it while it sat idle in the pool: asyncpg has read the
    # server's FATAL but not yet the closed socket, and refuses the next query with "cannot
    # switch to state ...; another operation (2) is in progress". It raises the base class
    # itself; its subclasses (protocol errors, a server that does not match) are not transient.
    InternalClientError,
)
# Ingest wraps only database work, so any OSError there is the database's socket.
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (OSError, *_SERVER_AWAY)
# An API route also reads files and other sockets: only a refused, reset or aborted connection.
API_TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (ConnectionError, *_SERVER_AWAY)


def is_transient_db_error(
    exc: BaseException, kinds: tuple[type[Exception], ...] = TRANSIENT_DB_ERRORS
) -> bool:
    if isinstance(exc, InternalClientError):
        return type(exc) is InternalClientError
    return isinstance(exc, kinds)
