"""The ``ivr`` schema: one row per IVR session, keyed by call id.

The interpreter's whole state lives in ``state`` (JSONB); the columns beside it are what is
queried: the due no-input deadlines and the status.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.ivr_engine.domain import SessionState

SCHEMA = "ivr"
metadata = MetaData(schema=SCHEMA)

sessions = Table(
    "sessions", metadata,
    Column("call_id", String(128), primary_key=True),
    Column("session_id", String(64), nullable=False, unique=True),
    Column("purpose", String(16), nullable=False),
    Column("menu", String(128), nullable=False),
    Column("menu_version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("node", String(128), nullable=True),
    Column("outcome", String(32), nullable=True),
    Column("deadline", DateTime(timezone=True), nullable=True),
    Column("state", JSONB, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    # Bumped by every write; a write checks the version it read (repository.py).
    Column("version", Integer, nullable=False, server_default="0"),
)
Index("ix_sessions_deadline", sessions.c.deadline, postgresql_where=text("deadline IS NOT NULL"))


async def load_session(session: AsyncSession, call_id: str) -> SessionState | None:
    """A session as last committed (REST reads; the handlers use :mod:`.repository`)."""
    query = select(sessions.c.state).where(sessions.c.call_id == call_id)
    raw = (await session.execute(query)).scalar_one_or_none()
    return None if raw is None else SessionState.model_validate(raw)


async def next_deadline(session: AsyncSession) -> datetime | None:
    """The earliest no-input deadline of any session (due or not)."""
    deadline: datetime | None = (await session.execute(
        select(func.min(sessions.c.deadline)))).scalar()
    return deadline
