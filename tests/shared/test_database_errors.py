"""Which errors say the database is away (the writer waits for it, REST answers 503) and
which are the work's own (they fail it as before)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from shared.db import database_unavailable
from shared.errors import IllegalTransition


def wrapped(error: BaseException) -> DBAPIError:
    """As SQLAlchemy raises a driver's error: the driver's in ``orig``, chained."""
    try:
        raise DBAPIError("SELECT 1", None, error) from error  # type: ignore[arg-type]
    except DBAPIError as raised:
        return raised


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "Connection refused"),
    asyncpg.CannotConnectNowError("the database system is shutting down"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
])
def test_a_server_going_away_is_unavailability(error: BaseException) -> None:
    assert database_unavailable(error)


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.UniqueViolationError("duplicate key"),
    wrapped(asyncpg.exceptions.StringDataRightTruncationError("value too long")),
    IllegalTransition("call", "released", "answer", ["release"]),  # its `error` is a string
    ValueError("a bug"),
])
def test_the_works_own_errors_are_not(error: BaseException) -> None:
    assert not database_unavailable(error)
