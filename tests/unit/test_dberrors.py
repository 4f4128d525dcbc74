"""Which database errors are the database being away (hold and retry) and which are the work's
own fault (the last-resort guard's to settle): asyncpg's InterfaceError is both."""

from __future__ import annotations

import asyncpg
import pytest
from asyncpg.exceptions import InternalClientError, _base

from runtime.dberrors import API_TRANSIENT_DB_ERRORS, is_transient_db_error


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
    ],
)
def test_the_database_away(exc: Exception) -> None:
    assert is_transient_db_error(exc)
    assert is_transient_db_error(exc, API_TRANSIENT_DB_ERRORS)


@pytest.mark.parametrize(
    "exc",
    [
        # a query given the wrong number of arguments: retrying it would hold a batch for ever
        asyncpg.InterfaceError("the server expects 5 arguments for this query, 4 were passed"),
        # asyncpg's client-side DataError (a value it cannot encode) is an InterfaceError too
        _base.DataError("invalid input for query argument $1: 'x' (an integer is required)"),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.DataError("date/time field value out of range"),
        ValueError("a bug"),
    ],
)
def test_the_work_at_fault(exc: Exception) -> None:
    assert not is_transient_db_error(exc)
    assert not is_transient_db_error(exc, API_TRANSIENT_DB_ERRORS)
