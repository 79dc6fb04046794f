"""Transactional outbox and inbox on a batching single writer (DESIGN §5, "Runtime").

Every event a service handles goes through one writer task per process. The writer takes
whatever deliveries (and submitted commands) are queued as one batch and runs them in one
database transaction. Handlers that only stage their writes (repositories that keep state
in memory) cost the batch nothing when they fail; one that runs SQL as it goes and fails
rolls the batch back, and its items are then run one by one, so only it fails. The batch's
staged state is then written (a statement per repository), the inbox ids, per-subject
sequences and outbox rows with one more (prepared, on the asyncpg connection under
SQLAlchemy's pool or the writer's own), and the transaction commits once. A first delivery
is not looked up in the inbox before its handler runs: the inbox insert at the commit finds
the rare duplicate, and the batch is then undone and run again item by item, each checked
first (as a redelivery always is). A batch whose handlers changed nothing opens no
transaction. Only after the commit are the deliveries acked, the commands'
callers answered, after-commit actions run (commands to the switch) and the events handed to
the :class:`Publisher`, which publishes them in commit order with pipelined confirms and then
marks them sent. A crash between the commit and the publish loses nothing: unsent rows are
published when the service starts again, or by any replica's recovery scan.

The batch grows with the load (whatever arrived while the previous batch was being written),
so the commits and round trips per event fall as the rate rises: group commit.

Request handlers that need their answer now (REST) use :meth:`Messaging.transaction`: the
same unit of work, committed on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.bus import Bus, Delivery
from shared.clock import Clock
from shared.consumers import Consumes
from shared.db import Counted, DbStats, advisory_key, database_unavailable, driver_url
from shared.effects import Effect, Emit, Schedulable, Wake
from shared.envelope import Envelope
from shared.events import EventData, validate_data

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MessagingTables:
    outbox: Table
    inbox: Table
    sequences: Table


def messaging_tables(metadata: MetaData) -> MessagingTables:
    """Add the outbox, inbox and per-subject sequence tables to a service's metadata (once)."""
    prefix = f"{metadata.schema}." if metadata.schema else ""
    if f"{prefix}outbox" in metadata.tables:
        existing = metadata.tables
        return MessagingTables(existing[f"{prefix}outbox"], existing[f"{prefix}inbox"],
                               existing[f"{prefix}event_sequences"])
    outbox = Table(
        "outbox", metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("type", String(128), nullable=False),
        Column("subject", String(256), nullable=False),
        Column("sequence", Integer, nullable=False),
        Column("envelope", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True, index=True),
    )
    inbox = Table(
        "inbox", metadata,
        Column("consumer", String(128), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("event_type", String(128), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )
    sequences = Table(
        "event_sequences", metadata,
        Column("subject", String(256), primary_key=True),
        Column("last", Integer, nullable=False),
    )
    return MessagingTables(outbox, inbox, sequences)


def create_messaging_tables(op: Any, schema: str) -> None:
    """For a service's first Alembic revision: create the messaging tables in ``schema``."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        schema=schema,
    )
    # Only unpublished rows are scanned by the relay.
    op.create_index("ix_outbox_unpublished", "outbox", ["id"], schema=schema,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("event_type", sa.String(128), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )
    op.create_table(
        "event_sequences",
        sa.Column("subject", sa.String(256), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
        schema=schema,
    )


class _Statements:
    """The messaging SQL of one schema, written once (asyncpg prepares and caches each per
    connection, so no statement is built or compiled per event)."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        # The batch's inbox ids, per-subject sequences and outbox rows in one round trip;
        # every returned row carries how many of the inbox ids were new. The sequence
        # upsert's row lock orders concurrent emitters of one subject; ``ord`` keeps the
        # batch's emit order in the outbox ids.
        self.write_events = f"""
            WITH inbox AS (
                INSERT INTO {s}.inbox (consumer, event_id, event_type)
                SELECT * FROM unnest($9::text[], $10::text[], $11::text[])
                ON CONFLICT DO NOTHING RETURNING event_id
            ), seq AS (
                INSERT INTO {s}.event_sequences AS s (subject, last)
                SELECT subject, n FROM unnest($1::text[], $2::int[]) AS u(subject, n)
                ON CONFLICT (subject) DO UPDATE SET last = s.last + EXCLUDED.last
                RETURNING s.subject, s.last
            ), ev AS (
                SELECT * FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::int[],
                                     $8::text[])
                    AS e(ord, event_id, type, subject, back, body)
            ), out AS (
                INSERT INTO {s}.outbox (event_id, type, subject, sequence, envelope)
                SELECT ev.event_id, ev.type, ev.subject, seq.last - ev.back,
                       jsonb_set(ev.body::jsonb, '{{sequence}}', to_jsonb(seq.last - ev.back))
                FROM ev JOIN seq USING (subject) ORDER BY ev.ord
                RETURNING id, event_id, sequence
            )
            SELECT id, event_id, sequence, (SELECT count(*) FROM inbox) AS recorded FROM out"""
        self.seen = (f"SELECT consumer, event_id FROM {s}.inbox WHERE (consumer, event_id) IN"
                     " (SELECT * FROM unnest($1::text[], $2::text[]))")
        self.record_inbox = (
            f"INSERT INTO {s}.inbox (consumer, event_id, event_type)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
            " ON CONFLICT DO NOTHING RETURNING event_id")
        self.mark_published = (f"UPDATE {s}.outbox SET published_at = now()"
                               " WHERE id = ANY($1::bigint[])")
        self.unpublished = (f"SELECT id, envelope FROM {s}.outbox WHERE published_at IS NULL"
                            " AND id > $1 AND created_at < now() - make_interval(secs => $2)"
                            " ORDER BY id LIMIT $3")
        self.pending = f"SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL"


class StagedEvent:
    """What :meth:`Transaction.emit` returns: the event as it will be published. Its sequence
    (and so its envelope) is known once the transaction has committed."""

    __slots__ = ("body", "envelope", "event_id", "event_type", "subject")

    def __init__(self, event_id: str, event_type: str, subject: str, body: dict[str, Any]
                 ) -> None:
        self.event_id = event_id
        self.event_type = event_type
        self.subject = subject
        self.body = body
        self.envelope: Envelope | None = None

    @property
    def sequence(self) -> int:
        if self.envelope is None:
            raise RuntimeError("the event's sequence is known once its transaction commits")
        return self.envelope.sequence


class Transaction:
    """One unit of work as a handler sees it: the database (``session`` for SQLAlchemy Core,
    ``conn`` for prepared SQL on the same transaction), ``now``, the event that caused it,
    and what to emit or do once it commits. Inside a batch each handler gets its own."""

    def __init__(self, unit: _Unit, cause: Envelope | None, *, as_it_goes: bool = True) -> None:
        self._unit = unit
        self.cause = cause
        # SQL run as it goes (not staged): any statement may have written, so any statement
        # counts as a change (the delivery is recorded in the inbox).
        self._as_it_goes = as_it_goes
        self.now: datetime = unit.messaging.clock.now()
        self.staged: list[StagedEvent] = []
        self._after_commit: list[Callable[[], Awaitable[None]]] = []
        self._on_rollback: list[Callable[[], None]] = []
        self.changed = False
        # What the consumer's prepare step found before the writer took the delivery (a
        # lookup in another service, made without holding up the writer).
        self.prepared: Any = None

    @property
    def shared(self) -> dict[str, Any]:
        """State shared by every handler in one database transaction (a lock a batch's first
        handler took, say)."""
        return self._unit.shared

    @property
    def session(self) -> AsyncSession:
        """SQLAlchemy Core on this transaction (statements built per call: keep them off the
        hot path, where :attr:`conn` with SQL written once is several times cheaper)."""
        self.changed = True
        return self._unit.session()

    @property
    def conn(self) -> asyncpg.Connection:
        """The asyncpg connection this transaction runs on (already open for handlers that
        run SQL as they go; staged handlers use :meth:`connection`)."""
        self.changed = True
        return self._unit.conn

    async def connection(self) -> asyncpg.Connection:
        """The asyncpg connection, beginning the transaction if nothing has yet: a unit of
        work whose handlers found everything in memory and changed nothing never opens one."""
        await self._unit.ensure_open()
        return self._unit.conn

    @property
    def emitted(self) -> list[Envelope]:
        """The committed envelopes (empty until the commit)."""
        return [e.envelope for e in self.staged if e.envelope is not None]

    async def execute(self, sql: str, *args: Any) -> str:
        self.changed = True
        self._unit.messaging.stats.statement()
        return str(await (await self.connection()).execute(sql, *args))

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        if args:
            self.changed = True
            self._unit.messaging.stats.statement(len(args))
            await (await self.connection()).executemany(sql, args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.changed = self.changed or self._as_it_goes
        self._unit.messaging.stats.statement()
        return list(await (await self.connection()).fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self.changed = self.changed or self._as_it_goes
        self._unit.messaging.stats.statement()
        return await (await self.connection()).fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.changed = self.changed or self._as_it_goes
        self._unit.messaging.stats.statement()
        return await (await self.connection()).fetchval(sql, *args)

    def stage(self, key: str, flush: Callable[[Counted], Awaitable[None]], *,
              committed: Callable[[], None] | None = None,
              rolled_back: Callable[[], None] | None = None) -> None:
        """Have ``flush(conn)`` write a repository's changed state once for the whole unit
        of work, just before its events (one statement for every handler's changes), with
        ``committed`` / ``rolled_back`` run once it is known which. Once per ``key``."""
        self.changed = True
        self._unit.stage(key, flush, committed, rolled_back)

    def after_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once this transaction has committed (e.g. send a command to the
        switch about state that is now durable). Not run if it rolls back."""
        self._after_commit.append(action)

    def on_rollback(self, action: Callable[[], None]) -> None:
        """Run ``action`` if this unit of work is undone (so an in-memory mirror of the
        tables can mark itself stale)."""
        self._on_rollback.append(action)

    async def apply(self, effects: Iterable[Effect]) -> None:
        """Carry out ``effects`` in order (see :mod:`shared.effects`)."""
        for effect in effects:
            if isinstance(effect, Emit):
                await self.emit(effect.event, subject=effect.subject,
                                correlationid=effect.correlationid)
            elif isinstance(effect, Wake):
                if effect.due is not None:
                    self.after_commit(_waking(effect.timer, effect.due))
            else:
                self.after_commit(effect.action)

    async def emit(self, event: EventData, *, subject: str,
                   correlationid: str | None = None) -> StagedEvent:
        """Record ``event`` (a catalog model: its type and version come from it) for the
        outbox. Its sequence is the next for (this service, subject), assigned when the batch
        is written."""
        event_type = str(event.event_type)  # type: ignore[attr-defined]
        version = int(event.event_version)  # type: ignore[attr-defined]
        payload = validate_data(event_type, version, event)
        if correlationid is None and self.cause is not None:
            correlationid = self.cause.correlationid
        messaging = self._unit.messaging
        event_id = str(uuid.uuid4())
        body = {
            "specversion": "1.0", "id": event_id, "source": messaging.source,
            "type": event_type, "time": self.now.isoformat(), "subject": subject,
            "datacontenttype": "application/json", "dataversion": version, "sequence": 0,
            "correlationid": correlationid,
            "causationid": self.cause.id if self.cause else None, "data": payload,
        }
        staged = StagedEvent(event_id, event_type, subject, body)
        self.staged.append(staged)
        self.changed = True
        return staged


def _waking(timer: Schedulable, due: datetime) -> Callable[[], Awaitable[None]]:
    async def wake() -> None:
        timer.schedule(due)

    return wake


def raise_if_cancelling() -> None:
    """Inside ``except Exception``: re-raise cancellation that another error masked."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _Unit:
    """One database transaction (a batch of work items, or one standalone unit): the
    SQLAlchemy connection, the asyncpg connection under it, and what it will write."""

    def __init__(self, messaging: Messaging, *, dedicated: bool = False) -> None:
        self.messaging = messaging
        # On the writer's own connection (no pool checkout, no SQLAlchemy session), or on
        # one of the pool's.
        self._dedicated = dedicated
        self._sa: AsyncConnection | None = None
        self._session: AsyncSession | None = None
        self._transaction: Any = None
        self.conn: asyncpg.Connection
        self.shared: dict[str, Any] = {}
        self._hooks: dict[str, tuple[Callable[[Counted], Awaitable[None]],
                                     Callable[[], None] | None, Callable[[], None] | None]] = {}

    @property
    def opened(self) -> bool:
        return self._sa is not None or self._transaction is not None

    async def ensure_open(self) -> None:
        if not self.opened:
            await self.open()

    def stage(self, key: str, flush: Callable[[Counted], Awaitable[None]],
              committed: Callable[[], None] | None,
              rolled_back: Callable[[], None] | None) -> None:
        self._hooks.setdefault(key, (flush, committed, rolled_back))

    async def open(self) -> None:
        if self._dedicated:
            self.conn = await self.messaging.writer_connection()
            transaction = self.conn.transaction()
            try:
                await transaction.start()
            except BaseException:
                await self.messaging.drop_writer_connection()
                raise
            self._transaction = transaction
            return
        sa = await self.messaging.engine.connect()
        try:
            await sa.begin()
            fairy = await sa.get_raw_connection()
            # BEGIN now (SQLAlchemy's asyncpg adapter would only begin at its own first
            # statement), so prepared statements on the driver connection join the same
            # transaction as SQLAlchemy's.
            await fairy.dbapi_connection._start_transaction()  # type: ignore[union-attr]
            self.conn = fairy.driver_connection
        except BaseException:
            # Most likely a connection the server dropped: never hand it out again.
            with contextlib.suppress(Exception):
                await sa.invalidate()
            await sa.close()
            raise
        self._sa = sa

    def session(self) -> AsyncSession:
        if self._dedicated:
            raise RuntimeError("this service's writer runs prepared SQL only (no session)")
        if self._session is None:
            assert self._sa is not None, "the unit of work is not open"
            self._session = AsyncSession(bind=self._sa, expire_on_commit=False)
        return self._session

    async def write(self, txs: Sequence[Transaction], inbox: Sequence[tuple[str, Envelope]]
                    ) -> list[tuple[int, Envelope]]:
        """Write the staged state, the inbox ids and the events of ``txs``; return (outbox
        id, envelope) in emit order. Nothing to write and nothing opened: no transaction."""
        m = self.messaging
        staged = [event for tx in txs for event in tx.staged]
        if not self._hooks and not inbox and not staged:
            return []
        await self.ensure_open()
        if self._hooks:
            counted = Counted(self.conn, m.stats)
            for flush, _, _ in self._hooks.values():
                await flush(counted)
        inbox_columns = ([q for q, _ in inbox], [e.id for _, e in inbox],
                         [e.type for _, e in inbox])
        if not staged:
            if inbox:
                m.stats.statement()
                recorded = len(await self.conn.fetch(m.sql.record_inbox, *inbox_columns))
                if recorded != len(inbox):
                    raise DuplicateDelivery("an event of this batch was handled meanwhile")
            return []
        counts: dict[str, int] = {}
        for event in staged:
            counts[event.subject] = counts.get(event.subject, 0) + 1
        seen: dict[str, int] = {}
        back: list[int] = []
        for event in staged:
            seen[event.subject] = seen.get(event.subject, 0) + 1
            back.append(counts[event.subject] - seen[event.subject])
        m.stats.statement()
        rows = await self.conn.fetch(
            m.sql.write_events, list(counts), list(counts.values()),
            list(range(len(staged))), [e.event_id for e in staged],
            [e.event_type for e in staged], [e.subject for e in staged], back,
            [json.dumps(e.body, ensure_ascii=False, default=str) for e in staged],
            *inbox_columns)
        if rows[0]["recorded"] != len(inbox):
            raise DuplicateDelivery("an event of this batch was handled meanwhile")
        by_id = {row["event_id"]: row for row in rows}
        out: list[tuple[int, Envelope]] = []
        for event in staged:
            row = by_id[event.event_id]
            event.body["sequence"] = row["sequence"]
            event.envelope = Envelope.model_construct(**{
                **event.body, "time": datetime.fromisoformat(event.body["time"])})
            out.append((int(row["id"]), event.envelope))
        return out

    async def commit(self) -> None:
        if self._transaction is not None:
            transaction, self._transaction = self._transaction, None
            try:
                await transaction.commit()
            except BaseException:
                await self.messaging.drop_writer_connection()
                raise
            self.messaging.stats.commit()
        if self._sa is not None:
            try:
                await self._sa.commit()
                self.messaging.stats.commit()
            finally:
                await self.close()
        for _, committed, _ in self._hooks.values():
            if committed is not None:
                committed()

    async def rollback(self) -> None:
        try:
            if self._transaction is not None:
                transaction, self._transaction = self._transaction, None
                try:
                    await transaction.rollback()
                except Exception:
                    await self.messaging.drop_writer_connection()
            if self._sa is not None:
                try:
                    await self._sa.rollback()
                finally:
                    await self.close()
        finally:
            for _, _, rolled_back in self._hooks.values():
                if rolled_back is not None:
                    rolled_back()

    async def close(self) -> None:
        sa, self._sa = self._sa, None
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._session.close()
            self._session = None
        if sa is not None:
            await sa.close()


class RedoUnit(RuntimeError):
    """The unit of work must be redone from the tables (its inputs are still good): another
    process got there first. Raised by a repository's write or the inbox; the writer rolls
    back and runs the work again."""


class DuplicateDelivery(RedoUnit):
    """A concurrent consumer handled an event of this batch first: redo without it."""


REDO_ATTEMPTS = 3
# How long the writer holds its work through a database outage (a restart, a failover)
# before failing it.
OUTAGE_SECONDS = 120.0


class _SqlItemFailed(RuntimeError):
    """A work item that runs SQL as it goes failed: its unit of work is rolled back."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


@dataclass
class _Item:
    """One piece of work for the writer: a delivery from the bus, or a submitted command."""

    work: Callable[[Transaction], Awaitable[Any]]
    cause: Envelope | None = None
    # Staged work writes through tx.stage / tx.emit only: a failure drops what it staged
    # without undoing the rest of the batch, and it may leave the transaction unopened.
    staged: bool = False
    queue: str | None = None
    delivery: Delivery | None = None
    # A delivery whose consumer prepares it: the writer takes it once this is done (later
    # deliveries of the same subject wait behind it; others go ahead).
    ready: asyncio.Future[Any] | None = None
    future: asyncio.Future[Any] | None = None
    tx: Transaction | None = None
    result: Any = None
    error: BaseException | None = None
    duplicate: bool = False
    queued_at: float = field(default_factory=time.monotonic)


Prepare = Callable[[EventData], Awaitable[Any]]


@dataclass
class _Consumer:
    queue: str
    consumes: Consumes
    staged: bool = False
    prepare: Prepare | None = None


class Messaging:
    """The service's unit-of-work runtime: the batching writer, standalone transactions,
    consumers and the publisher."""

    def __init__(self, service: str, engine: AsyncEngine, tables: MessagingTables, bus: Bus,
                 clock: Clock, *, batch: int = 256, stats: DbStats | None = None,
                 writer_sessions: bool = True,
                 on_published: Callable[[Envelope], None] | None = None,
                 on_consumed: Callable[[str, Envelope, str], None] | None = None,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.service = service
        self.source = f"/hotline/{service}"
        self.engine = engine
        self.tables = tables
        self.sql = _Statements(tables.outbox.schema or "public")
        self.bus = bus
        self.clock = clock
        self.max_batch = batch
        self.stats = stats or DbStats()
        # False: the writer's handlers never use SQLAlchemy sessions, so its units run on a
        # connection of its own (one writer, one connection) instead of the pool's.
        self.writer_sessions = writer_sessions
        self._writer_conn: asyncpg.Connection | None = None
        self._on_consumed = on_consumed
        self._on_batch = on_batch
        self.publisher = Publisher(self, on_published=on_published)
        self._consumers: list[_Consumer] = []
        self._consuming = False
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- units of work -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self, cause: Envelope | None = None) -> AsyncIterator[Transaction]:
        """A unit of work committed on its own (REST requests that answer with its result)."""
        unit = _Unit(self)
        await unit.open()
        tx = Transaction(unit, cause)
        try:
            yield tx
            published = await unit.write([tx], [])
            await unit.commit()
        except BaseException:
            for undo in tx._on_rollback:
                undo()
            await unit.rollback()
            raise
        self.publisher.submit(published)
        await _run_after_commit(self.service, tx)

    @contextlib.asynccontextmanager
    async def read_view(self) -> AsyncIterator[Transaction]:
        """A unit of work that is always rolled back: reads that share handler code (a
        standby's read model rebuilt from the tables) and whatever they stage is dropped."""
        unit = _Unit(self)
        await unit.open()
        try:
            yield Transaction(unit, None)
        finally:
            await unit.rollback()

    async def run(self, work: Callable[[Transaction], Awaitable[Any]], *,
                  cause: Envelope | None = None, staged: bool = False) -> Any:
        """Run ``work(tx)`` in the writer's next batch; return its result once committed."""
        return await self.submit(work, cause=cause, staged=staged)

    def submit(self, work: Callable[[Transaction], Awaitable[Any]], *,
               cause: Envelope | None = None, staged: bool = False) -> asyncio.Future[Any]:
        """Queue ``work(tx)`` for the writer without waiting: the future holds its result
        (or error) once committed. Work submitted in order runs in that order."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(_Item(work, cause=cause, future=future, staged=staged))
        return future

    @property
    def backlog(self) -> int:
        """Work items queued for the writer."""
        return len(self._queue)

    async def writer_connection(self) -> asyncpg.Connection:
        if self._writer_conn is None or self._writer_conn.is_closed():
            conn = await asyncpg.connect(driver_url(self.engine))
            # As SQLAlchemy's connections do: JSON travels as text, comes back decoded.
            for kind in ("json", "jsonb"):
                await conn.set_type_codec(kind, encoder=str, decoder=json.loads,
                                          schema="pg_catalog")
            self._writer_conn = conn
        return self._writer_conn

    async def drop_writer_connection(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        self._wake.set()

    # -- consumers ---------------------------------------------------------------------------

    def consume(self, purpose: str, consumes: Consumes, *, staged: bool = False,
                prepare: Prepare | None = None) -> None:
        """Consume on queue ``<service>.<purpose>`` what ``consumes`` has handlers for.
        ``prepare`` (optional) runs on each delivery as it arrives, outside the writer (a
        lookup in another service), with the parsed event; the handler finds its result in
        ``tx.prepared``."""
        self._consumers.append(_Consumer(f"{self.service}.{purpose}", consumes, staged,
                                         prepare))

    @property
    def consuming(self) -> bool:
        return self._consuming

    async def start(self, *, consumers: bool = True) -> None:
        """Publish what a previous run left unsent, then start the writer, the publisher and
        (unless ``consumers`` is false) the consumers."""
        await self.publisher.recover()
        self._tasks = [
            asyncio.create_task(self._run_writer(), name=f"writer:{self.service}"),
            asyncio.create_task(self.publisher.run(), name=f"publisher:{self.service}"),
        ]
        if consumers:
            await self.start_consumers()

    async def start_consumers(self) -> None:
        """Subscribe every registered consumer (once; later calls do nothing). A service whose
        standby must not consume (acd_router) starts the writer first and this on promotion."""
        if self._consuming:
            return
        self._consuming = True
        for consumer in self._consumers:
            await self.bus.consume(consumer.queue, consumer.consumes.routing_keys,
                                   self._delivered(consumer))

    def _delivered(self, consumer: _Consumer) -> Callable[[Delivery], None]:
        def take(delivery: Delivery) -> None:
            envelope = delivery.envelope
            try:
                parsed = consumer.consumes.parse(envelope)
            except ValueError as invalid:
                refused = invalid

                async def fail(_: Transaction) -> None:
                    raise refused

                self._enqueue(_Item(fail, cause=envelope, staged=True, queue=consumer.queue,
                                    delivery=delivery))
                return
            if parsed is None:
                # Bound once, no longer handled here (a binding outlived its handler).
                log.warning("event not handled here; acked", queue=consumer.queue,
                            event_type=envelope.type, version=envelope.dataversion)
                delivery.ack()
                return
            event, handler = parsed
            ready = None
            if consumer.prepare is not None:
                ready = asyncio.ensure_future(consumer.prepare(event))
                ready.add_done_callback(lambda _: self._wake.set())

            async def work(tx: Transaction) -> None:
                if ready is not None:
                    tx.prepared = ready.result()
                await handler(tx, event)

            self._enqueue(_Item(work, cause=envelope, staged=consumer.staged,
                                queue=consumer.queue, delivery=delivery, ready=ready))

        return take

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.publisher.close()
        await self.drop_writer_connection()

    async def pending_count(self) -> int:
        """Events not yet confirmed by the bus (their rows are marked first)."""
        await self.publisher.flush_marks()
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            return int(await raw.driver_connection.fetchval(self.sql.pending))  # type: ignore[union-attr]

    # -- the writer --------------------------------------------------------------------------

    async def _run_writer(self) -> None:
        while True:
            items = self._take()
            if not items:
                self._wake.clear()
                items = self._take()
                if not items:
                    await self._wake.wait()
                    continue
            started = time.perf_counter()
            await self._run_batch(items)
            if self._on_batch is not None:
                self._on_batch(len(items), time.perf_counter() - started)

    def _take(self) -> list[_Item]:
        """The next batch, in queue order: up to ``max_batch`` items, leaving behind those
        still being prepared and, so a subject's order holds, anything after them of their
        subject."""
        if not self._queue:
            return []
        if all(item.ready is None or item.ready.done() for item in self._queue):
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        taken: list[_Item] = []
        kept: deque[_Item] = deque()
        waiting: set[str] = set()
        for item in self._queue:
            subject = item.cause.subject if item.cause is not None else None
            if len(taken) >= self.max_batch or (subject is not None and subject in waiting):
                kept.append(item)
            elif item.ready is not None and not item.ready.done():
                if subject is not None:
                    waiting.add(subject)
                kept.append(item)
            else:
                taken.append(item)
        self._queue = kept
        return taken

    async def _run_batch(self, items: list[_Item]) -> None:
        """Run ``items`` in one transaction; if the transaction itself fails, run them one by
        one so that only the item that cannot commit fails."""
        # A first delivery is rarely a duplicate (a publisher's resend after a lost confirm):
        # the inbox insert at the commit catches one, and the items then run alone, checked
        # first. A redelivery is checked before its handler runs.
        check_seen = any(item.delivery is not None and item.delivery.redelivered
                         for item in items)
        try:
            await self._attempt_through_outage(items, check_seen=check_seen)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise_if_cancelling()
            if len(items) == 1 and not isinstance(error, RedoUnit):
                failed = error.error if isinstance(error, _SqlItemFailed) else error
                self._settle_failed(items[0], failed)
                return
            if len(items) > 1:
                log.warning("batch failed; running its items one by one",
                            service=self.service, items=len(items), error=repr(error))
            for item in items:
                await self._run_alone(item)
            return
        await self._settle(items)

    async def _attempt_through_outage(self, items: list[_Item], *, check_seen: bool) -> None:
        """One attempt at ``items``, again after each database outage it meets: nothing was
        committed and the work is not at fault, so the same work runs once the database
        answers, rather than a switch frame lost or a delivery burnt."""
        while True:
            try:
                await self._attempt(items, check_seen=check_seen)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                raise_if_cancelling()
                if not (database_unavailable(error) and await self._database_back()):
                    raise
                for item in items:
                    self._reset(item)

    async def _database_back(self) -> bool:
        """Hold the writer until the database answers again (True), or give up after
        ``OUTAGE_SECONDS`` (False: the work then fails as any other). Meanwhile its queue
        grows, and the switch socket stops being read once it is long (back-pressure)."""
        await self.drop_writer_connection()  # it died with the server
        log.warning("database unavailable; the writer waits for it", service=self.service)
        deadline = time.monotonic() + OUTAGE_SECONDS
        delay = 0.1
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                probe = await asyncpg.connect(driver_url(self.engine), timeout=5)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                continue
            await probe.close()
            # The pool's connections died with the server: new ones for every later use.
            await self.engine.dispose()
            log.warning("database answers again; the writer resumes", service=self.service)
            return True
        return False

    async def _run_alone(self, item: _Item) -> None:
        for attempt in range(1, REDO_ATTEMPTS + 1):
            self._reset(item)
            try:
                await self._attempt_through_outage([item], check_seen=True)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                raise_if_cancelling()
                if isinstance(error, RedoUnit) and attempt < REDO_ATTEMPTS:
                    continue
                self._settle_failed(item, error.error if isinstance(error, _SqlItemFailed)
                                    else error)
                return
            await self._settle([item])
            return

    @staticmethod
    def _reset(item: _Item) -> None:
        item.tx, item.result, item.error, item.duplicate = None, None, None, False

    async def _attempt(self, items: list[_Item], *, check_seen: bool) -> None:
        unit = _Unit(self, dedicated=not self.writer_sessions)
        try:
            if check_seen:
                await self._mark_duplicates(unit, items)
            for item in items:
                if item.duplicate:
                    continue
                await self._run_item(unit, item)
                if item.error is not None and not item.staged:
                    # Its SQL ran as it went and cannot be taken back alone: undo the whole
                    # unit (the writer then runs each item on its own).
                    raise _SqlItemFailed(item.error)
            done = [item for item in items if item.tx is not None and item.error is None]
            inbox = [(item.queue, item.cause) for item in done
                     if item.queue is not None and item.cause is not None
                     and item.tx is not None and item.tx.changed]
            published = await unit.write([item.tx for item in done if item.tx is not None],
                                         inbox)
            await unit.commit()
        except BaseException:
            for item in items:
                if item.tx is not None:
                    for undo in item.tx._on_rollback:
                        undo()
            await unit.rollback()
            raise
        self.publisher.submit(published)

    async def _mark_duplicates(self, unit: _Unit, items: list[_Item]) -> None:
        keyed = [(item.queue, item.cause.id) for item in items
                 if item.queue is not None and item.cause is not None]
        if not keyed:
            return
        await unit.ensure_open()
        self.stats.statement()
        rows = await unit.conn.fetch(self.sql.seen, [q for q, _ in keyed],
                                     [i for _, i in keyed])
        seen = {(row["consumer"], row["event_id"]) for row in rows}
        for item in items:
            if item.cause is not None and (item.queue, item.cause.id) in seen:
                item.duplicate = True

    async def _run_item(self, unit: _Unit, item: _Item) -> None:
        tx = item.tx = Transaction(unit, item.cause, as_it_goes=not item.staged)
        bound = {"event_type": item.cause.type, "event_id": item.cause.id,
                 "call_id": item.cause.correlationid} if item.cause else {}
        if not item.staged:
            await unit.ensure_open()  # SQL as it goes, on the open transaction
        try:
            with structlog.contextvars.bound_contextvars(**bound):
                item.result = await item.work(tx)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise_if_cancelling()
            item.error = error
            for undo in tx._on_rollback:
                undo()
            tx._on_rollback.clear()
            tx.staged.clear()

    async def _settle(self, items: list[_Item]) -> None:
        """After the commit: answer, ack or nack each item in order, then run its actions."""
        for item in items:
            if item.error is not None:
                self._settle_failed(item, item.error)
                continue
            if item.delivery is not None:
                outcome = "duplicate" if item.duplicate else "handled"
                item.delivery.ack()
                if self._on_consumed and item.queue and item.cause:
                    self._on_consumed(item.queue, item.cause, outcome)
            elif item.future is not None and not item.future.done():
                item.future.set_result(item.result)
            if item.tx is not None:
                await _run_after_commit(self.service, item.tx)

    def _settle_failed(self, item: _Item, error: BaseException) -> None:
        if item.delivery is not None:
            cause = item.cause
            log.warning("delivery failed", service=self.service, queue=item.queue,
                        event_type=cause.type if cause else None,
                        event_id=cause.id if cause else None, error=repr(error),
                        exc_info=error)
            item.delivery.nack()
        elif item.future is not None and not item.future.done():
            item.future.set_exception(error)


async def _run_after_commit(service: str, tx: Transaction) -> None:
    for action in tx._after_commit:
        try:
            await action()
        except Exception:
            log.exception("after-commit action failed", service=service)


class Publisher:
    """Publishes committed events in commit order, many in flight at once (pipelined
    confirms), and marks their outbox rows sent, in one statement for everything confirmed
    within ``mark_seconds`` (losing a mark only means publishing that event again, which
    consumers deduplicate). Rows that a crash left unsent are published at start-up
    (:meth:`recover`) and by a periodic scan for rows older than ``orphan_seconds`` (a
    replica that died after its commit)."""

    def __init__(self, messaging: Messaging, *, round_size: int = 500,
                 orphan_seconds: float = 30.0, mark_seconds: float = 0.5,
                 on_published: Callable[[Envelope], None] | None = None) -> None:
        self.messaging = messaging
        self.round_size = round_size
        self.orphan_seconds = orphan_seconds
        self.mark_seconds = mark_seconds
        self._on_published = on_published
        self._confirmed: list[int] = []
        self._mark_due: float | None = None
        self._queue: deque[tuple[int, Envelope]] = deque()
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lock_key = advisory_key(f"relay:{messaging.service}")

    def submit(self, rows: Sequence[tuple[int, Envelope]]) -> None:
        if rows:
            self._queue.extend(rows)
            self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(driver_url(self.messaging.engine))
            # Marking a row sent twice is harmless and losing the mark only republishes
            # (consumers deduplicate), so these commits need not wait for the disk.
            await self._conn.execute("SET synchronous_commit = off")
        return self._conn

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush_marks()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def flush_marks(self) -> None:
        """Mark every confirmed event's row sent now."""
        ids, self._confirmed, self._mark_due = self._confirmed, [], None
        if ids:
            try:
                await self._mark(ids)
            except BaseException:
                self._confirmed[:0] = ids
                raise

    async def run(self) -> None:
        backoff = 0.1
        next_scan = time.monotonic() + self.orphan_seconds
        while True:
            if not self._queue:
                self._wake.clear()
                until = next_scan if self._mark_due is None else min(next_scan, self._mark_due)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, until - time.monotonic()))
            try:
                if self._queue:
                    await self._round()
                if self._mark_due is not None and (time.monotonic() >= self._mark_due
                                                   or len(self._confirmed) >= 5_000):
                    await self.flush_marks()
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + self.orphan_seconds
                    await self.recover(older_than=self.orphan_seconds)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                raise_if_cancelling()
                log.warning("publishing failed; retrying", service=self.messaging.service,
                            error=repr(error), backlog=len(self._queue))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _round(self) -> None:
        batch = [self._queue[i] for i in range(min(self.round_size, len(self._queue)))]
        confirmed = await self.messaging.bus.publish_many([envelope for _, envelope in batch])
        sent = [row for row, ok in zip(batch, confirmed, strict=True) if ok]
        # Keep the unconfirmed ones, in order, at the head of the queue for the next round.
        for _ in batch:
            self._queue.popleft()
        self._queue.extendleft(reversed([row for row, ok in zip(batch, confirmed, strict=True)
                                         if not ok]))
        if sent:
            self._confirmed.extend(row_id for row_id, _ in sent)
            if self._mark_due is None:
                self._mark_due = time.monotonic() + self.mark_seconds
            if self._on_published:
                for _, envelope in sent:
                    self._on_published(envelope)
        if len(sent) < len(batch):
            raise ConnectionError(f"{len(batch) - len(sent)} events not confirmed")

    async def _mark(self, ids: list[int]) -> None:
        conn = await self._connection()
        self.messaging.stats.statement()
        await conn.execute(self.messaging.sql.mark_published, ids)

    async def recover(self, *, older_than: float = 0.0) -> int:
        """Publish unsent rows (oldest first) left by a crash; one process of the service at
        a time (an advisory lock), so replicas do not interleave the same rows."""
        conn = await self._connection()
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
            return 0
        sent = 0
        try:
            after = 0
            while True:
                rows = await conn.fetch(self.messaging.sql.unpublished, after, older_than, 500)
                if not rows:
                    return sent
                # jsonb arrives as its text on this connection (no codec set): parse it once.
                envelopes = [Envelope.model_validate_json(row["envelope"]) for row in rows]
                confirmed = await self.messaging.bus.publish_many(envelopes)
                ids = [int(row["id"]) for row, ok in zip(rows, confirmed, strict=True) if ok]
                if ids:
                    await self._mark(ids)
                sent += len(ids)
                if len(ids) < len(rows):
                    raise ConnectionError("recovery publish not confirmed")
                after = int(rows[-1]["id"])
        finally:
            with contextlib.suppress(Exception):
                await conn.fetchval("SELECT pg_advisory_unlock($1)", self._lock_key)
