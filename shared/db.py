"""Database helpers: engines, per-service schemas and Alembic migrations run at startup."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine


def async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs (as operators write them) for the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


def driver_url(engine: AsyncEngine) -> str:
    """The engine's URL as asyncpg itself takes it (for connections outside the pool)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class Queries(Protocol):
    """What a repository runs its (prepared) SQL on: a unit of work's ``Transaction``, or a
    :class:`Reader` for a REST read."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Any: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> str: ...

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None: ...


# A read's session (``service.sessions()``), as code outside the repositories names it: they
# pass it on to the repository's queries and import no SQLAlchemy themselves.
Session = AsyncSession


class Row(Mapping[str, Any]):
    """An asyncpg record read like SQLAlchemy's rows (``row.state``, ``row._asdict()``), so
    code written against those reads prepared SQL's records unchanged."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: str) -> Any:
        return self._record[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record.keys())

    def __len__(self) -> int:
        return len(self._record)

    def _asdict(self) -> dict[str, Any]:
        return dict(self._record.items())

    @property
    def _mapping(self) -> Row:
        return self


async def row(db: Queries, sql: str, *args: Any) -> Row | None:
    record = await db.fetchrow(sql, *args)
    return None if record is None else Row(record)


async def rows(db: Queries, sql: str, *args: Any) -> list[Row]:
    return [Row(record) for record in await db.fetch(sql, *args)]


class Counted:
    """An asyncpg connection whose statements are counted in :class:`DbStats` (each row of
    an ``executemany`` is a statement the server runs)."""

    def __init__(self, conn: Any, stats: DbStats) -> None:
        self._conn = conn
        self._stats = stats

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self._stats.statement()
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        self._stats.statement()
        return await self._conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self._stats.statement()
        return await self._conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self._stats.statement()
        return str(await self._conn.execute(sql, *args))

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        if args:
            self._stats.statement(len(args))
            await self._conn.executemany(sql, args)


class Reader(Counted):
    """Reads on one pooled asyncpg connection, outside any transaction."""

    async def execute(self, sql: str, *args: Any) -> str:
        raise RuntimeError("a reader does not write")

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        raise RuntimeError("a reader does not write")


class DbStats:
    """Statements and commits this process sent, for ``/metrics`` and the load bench."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def statement(self, count: int = 1) -> None:
        self.statements += count

    def commit(self) -> None:
        self.commits += 1


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 5,
                stats: DbStats | None = None) -> AsyncEngine:
    """A bounded pool: six services on one PostgreSQL (100 connections by default) must not be
    able to exhaust it between them; a burst waits for a connection instead.

    No pre-ping: it costs a BEGIN, a round trip and a ROLLBACK on every checkout. Instead a
    checkout discards a connection the server has closed (a restart: asyncpg saw the socket
    close, no round trip needed) and opens a new one, so a read after a database restart
    does not fail on a dead connection."""
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=max_overflow,
                                 pool_pre_ping=False, pool_timeout=60)

    @event.listens_for(engine.sync_engine, "checkout")
    def discard_closed(dbapi_connection: Any, *_: object) -> None:
        driver = getattr(dbapi_connection, "_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the server closed this connection")

    if stats is not None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def count(*_: object) -> None:
            stats.statement()
    return engine


# The server is gone or going (a restart, a failover, a crash), not the statement's fault.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError, asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached right now (worth waiting for,
    as its work is not at fault), looking through the wrappers SQLAlchemy puts around it."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE):
            return True
        # SQLAlchemy's DBAPIError keeps the driver's error in ``orig``; the writer's
        # _SqlItemFailed in ``error`` (a DomainError's ``error`` is a string: skipped).
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None),
                    getattr(current, "error", None)]
    return False


def advisory_key(name: str) -> int:
    """A stable 31-bit key for pg_advisory locks named by text."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


# Alembic keeps its running context in module globals, so services migrating in one process
# (the all-in-one suite) must take turns.
_MIGRATION_LOCK = asyncio.Lock()


async def run_migrations(engine: AsyncEngine, migrations_dir: Path, schema: str) -> None:
    """Upgrade the service's schema to head. Replicas starting together serialize on a lock."""
    async with _MIGRATION_LOCK, engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": advisory_key(f"migrate:{schema}")})
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade, migrations_dir, schema)


def _upgrade(connection: Connection, migrations_dir: Path, schema: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def run_alembic_env(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online mode on the given connection)."""
    from alembic import context

    connection = context.config.attributes["connection"]
    schema = context.config.attributes["schema"]
    context.configure(connection=connection, target_metadata=target_metadata,
                      version_table_schema=schema, include_schemas=True)
    with context.begin_transaction():
        context.run_migrations()
