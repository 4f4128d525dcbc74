"""Which database errors mean "the database is away or restarting", not "this work is wrong".

Ingest holds its batch and retries on those errors; the API answers 503 with `Retry-After`.
Both read the same list, so a failure mode found on one side is handled on the other.
"""

from __future__ import annotations

from typing import Final

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


# asyncpg raises its InterfaceError itself for a connection or pool that is gone, and also for
# mistakes in the work (a query given the wrong number of arguments, a value it cannot encode:
# its client-side DataError is a subclass). Only the first kind is the database being away;
# retrying the second would hold a batch for ever. They differ only in their message.
_CONNECTION_GONE: Final = (
    "connection is closed",
    "connection was closed",
    "another operation is in progress",
    "another operation is cancelling",
    "pool is closing",
    "pool is closed",
)


def is_transient_db_error(
    exc: BaseException, kinds: tuple[type[Exception], ...] = TRANSIENT_DB_ERRORS
) -> bool:
    if isinstance(exc, InternalClientError):
        return type(exc) is InternalClientError
    if isinstance(exc, asyncpg.InterfaceError):
        return type(exc) is asyncpg.InterfaceError and any(m in str(exc) for m in _CONNECTION_GONE)
    return isinstance(exc, kinds)
