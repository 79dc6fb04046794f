"""The ``ivr`` schema: one row per IVR session, keyed by call id.

The interpreter's whole state lives in ``state`` (JSONB); the columns beside it are what is
queried: the due no-input deadlines and the status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from sqlalchemy.dialects.postgresql import JSONB, insert
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
)
Index("ix_sessions_deadline", sessions.c.deadline, postgresql_where=text("deadline IS NOT NULL"))


def _columns(state: SessionState, now: datetime) -> dict[str, Any]:
    return {"status": state.status, "node": state.node, "outcome": state.outcome,
            "deadline": state.deadline, "state": state.model_dump(mode="json"),
            "updated_at": now, "ended_at": state.ended_at}


async def insert_session(session: AsyncSession, state: SessionState, now: datetime) -> bool:
    """Insert a new session; False if the call already has one (a redelivered start)."""
    row = (await session.execute(
        insert(sessions).values(call_id=state.call_id, session_id=state.session_id,
                                purpose=state.purpose, menu=state.menu,
                                menu_version=state.menu_version, started_at=state.started_at,
                                **_columns(state, now))
        .on_conflict_do_nothing(index_elements=["call_id"]).returning(sessions.c.call_id)
    )).first()
    return row is not None


async def save_session(session: AsyncSession, state: SessionState, now: datetime) -> None:
    await session.execute(sessions.update().where(sessions.c.call_id == state.call_id)
                          .values(**_columns(state, now)))


async def load_session(session: AsyncSession, call_id: str, *, lock: bool = False,
                       skip_locked: bool = False) -> SessionState | None:
    query = select(sessions.c.state).where(sessions.c.call_id == call_id)
    if lock:
        query = query.with_for_update(skip_locked=skip_locked)
    raw = (await session.execute(query)).scalar_one_or_none()
    return None if raw is None else SessionState.model_validate(raw)


async def due_call_ids(session: AsyncSession, now: datetime, limit: int = 100) -> list[str]:
    return list((await session.execute(
        select(sessions.c.call_id).where(sessions.c.deadline.is_not(None),
                                         sessions.c.deadline <= now)
        .order_by(sessions.c.deadline).limit(limit)
    )).scalars())


async def next_deadline(session: AsyncSession) -> datetime | None:
    """The earliest no-input deadline of any session (due or not)."""
    return (await session.execute(select(func.min(sessions.c.deadline)))).scalar()
