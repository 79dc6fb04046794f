"""Transactional outbox and inbox.

A handler changes state and records the events it emits in one database transaction
(:meth:`Messaging.transaction`); a relay publishes recorded events in order and marks them
sent only once the bus has them. Consumers record each processed event id in the same
transaction as their state change, so a redelivered event is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus import Bus
from shared.clock import Clock
from shared.db import advisory_key
from shared.envelope import Envelope, routing_key
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
    import sqlalchemy as sa

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


class Transaction:
    """One unit of work: a session plus the events to publish if (and only if) it commits."""

    def __init__(self, session: AsyncSession, messaging: Messaging,
                 cause: Envelope | None = None) -> None:
        self.session = session
        self._messaging = messaging
        self.cause = cause
        self.emitted: list[Envelope] = []
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    def after_commit(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once this transaction has committed (e.g. send a command to the
        switch about state that is now durable). Not run if the transaction rolls back."""
        self._after_commit.append(action)

    @property
    def now(self) -> datetime:
        return self._messaging.clock.now()

    async def emit(self, event_type: str, data: EventData | dict[str, Any], *, subject: str,
                   correlationid: str | None = None, version: int = 1) -> Envelope:
        """Record an event in the outbox. Its sequence is the next for (this service, subject);
        the row lock taken here orders concurrent emitters of one subject."""
        payload = validate_data(event_type, version, data)
        tables = self._messaging.tables
        sequence = (await self.session.execute(
            insert(tables.sequences).values(subject=subject, last=1)
            .on_conflict_do_update(index_elements=["subject"],
                                   set_={"last": tables.sequences.c["last"] + 1})
            .returning(tables.sequences.c["last"])
        )).scalar_one()
        if correlationid is None and self.cause is not None:
            correlationid = self.cause.correlationid
        envelope = Envelope(
            id=str(uuid.uuid4()), source=f"/hotline/{self._messaging.service}", type=event_type,
            time=self._messaging.clock.now(), subject=subject, dataversion=version,
            sequence=sequence, correlationid=correlationid,
            causationid=self.cause.id if self.cause else None, data=payload,
        )
        await self.session.execute(tables.outbox.insert().values(
            event_id=envelope.id, type=event_type, subject=subject, sequence=sequence,
            envelope=envelope.model_dump(mode="json"),
        ))
        self.emitted.append(envelope)
        return envelope


ConsumerHandler = Callable[[Transaction, Envelope], Awaitable[None]]


def raise_if_cancelling() -> None:
    """Inside ``except Exception``: re-raise cancellation that another error masked."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass
class _Consumer:
    queue: str
    binding_keys: list[str]
    handler: ConsumerHandler


class Messaging:
    def __init__(self, service: str, engine: AsyncEngine, tables: MessagingTables, bus: Bus,
                 clock: Clock, *, poll_interval: float = 0.5, batch: int = 200,
                 on_published: Callable[[Envelope], None] | None = None,
                 on_consumed: Callable[[str, Envelope, str], None] | None = None) -> None:
        self.service = service
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.tables = tables
        self.bus = bus
        self.clock = clock
        self.poll_interval = poll_interval
        self.batch = batch
        self._consumers: list[_Consumer] = []
        self._consuming = False
        self._wake = asyncio.Event()
        self._relay: asyncio.Task[None] | None = None
        self._on_published = on_published
        self._on_consumed = on_consumed

    @contextlib.asynccontextmanager
    async def transaction(self, cause: Envelope | None = None) -> AsyncIterator[Transaction]:
        async with self.sessions() as session, session.begin():
            tx = Transaction(session, self, cause)
            yield tx
        if tx.emitted:
            self._wake.set()
        for action in tx._after_commit:
            try:
                await action()
            except Exception:
                log.exception("after-commit action failed", service=self.service)

    def consumer(self, purpose: str, *event_types: str | tuple[str, int]
                 ) -> Callable[[ConsumerHandler], ConsumerHandler]:
        """Register ``handler(tx, envelope)`` on queue ``<service>.<purpose>``."""
        keys = [routing_key(t, 1) if isinstance(t, str) else routing_key(*t) for t in event_types]

        def register(handler: ConsumerHandler) -> ConsumerHandler:
            self._consumers.append(_Consumer(f"{self.service}.{purpose}", keys, handler))
            return handler

        return register

    async def start(self, *, consumers: bool = True) -> None:
        """Start the outbox relay and (unless ``consumers`` is false) the consumers."""
        if consumers:
            await self.start_consumers()
        self._relay = asyncio.create_task(self._run_relay(), name=f"outbox:{self.service}")

    @property
    def consuming(self) -> bool:
        return self._consuming

    async def start_consumers(self) -> None:
        """Subscribe every registered consumer (once; later calls do nothing). A service whose
        standby must not consume (acd_router) starts the relay first and this on promotion."""
        if self._consuming:
            return
        self._consuming = True
        for consumer in self._consumers:
            await self.bus.subscribe(consumer.queue, consumer.binding_keys,
                                     self._deduplicating(consumer))

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
            self._relay = None

    def _deduplicating(self, consumer: _Consumer) -> Callable[[Envelope], Awaitable[None]]:
        inbox = self.tables.inbox

        async def handle(envelope: Envelope) -> None:
            with structlog.contextvars.bound_contextvars(
                call_id=envelope.correlationid, event_type=envelope.type, event_id=envelope.id
            ):
                async with self.transaction(cause=envelope) as tx:
                    first_time = (await tx.session.execute(
                        insert(inbox).values(consumer=consumer.queue, event_id=envelope.id,
                                             event_type=envelope.type)
                        .on_conflict_do_nothing().returning(inbox.c.event_id)
                    )).first()
                    if first_time is None:
                        outcome = "duplicate"
                    else:
                        await consumer.handler(tx, envelope)
                        outcome = "handled"
                if self._on_consumed:
                    self._on_consumed(consumer.queue, envelope, outcome)

        return handle

    async def _run_relay(self) -> None:
        backoff = self.poll_interval
        while True:
            try:
                sent = await self.relay_once()
                backoff = self.poll_interval
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A query interrupted by cancellation can surface as another error; stop anyway.
                raise_if_cancelling()
                log.warning("outbox relay failed; retrying", service=self.service, error=str(error))
                sent = 0
                backoff = min(backoff * 2, 5.0)
            if sent:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)

    async def relay_once(self) -> int:
        """Publish a batch of unsent events in outbox order; return how many were sent.

        One relay per service publishes at a time (an advisory lock), so replicas cannot
        reorder a subject's events. Rows are marked sent as they are confirmed; a failure
        keeps the rest for the next round."""
        outbox = self.tables.outbox
        sent_ids: list[int] = []
        async with self.engine.connect() as conn:
            locked = (await conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                         {"key": advisory_key(f"relay:{self.service}")})).scalar()
            if not locked:
                await conn.rollback()
                return 0
            try:
                rows = (await conn.execute(
                    select(outbox.c.id, outbox.c.envelope)
                    .where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(self.batch)
                )).all()
                await conn.commit()
                try:
                    for row in rows:
                        envelope = Envelope.model_validate(row.envelope)
                        await self.bus.publish(envelope)
                        sent_ids.append(row.id)
                        if self._on_published:
                            self._on_published(envelope)
                finally:
                    if sent_ids:
                        await conn.execute(update(outbox).where(outbox.c.id.in_(sent_ids))
                                           .values(published_at=func.now()))
                        await conn.commit()
            finally:
                # If this fails the connection is discarded, which releases the lock too.
                with contextlib.suppress(Exception):
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                                       {"key": advisory_key(f"relay:{self.service}")})
                    await conn.commit()
        return len(sent_ids)

    async def pending_count(self) -> int:
        outbox = self.tables.outbox
        async with self.engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            )).scalar_one())
