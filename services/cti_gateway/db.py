"""The ``cti`` schema: the calls table, and the reads REST serves from it (the handlers keep
calls in memory and write them through :mod:`services.cti_gateway.repository`)."""

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
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from services.cti_gateway.domain import Call, CallState, LegState

SCHEMA = "cti"
metadata = MetaData(schema=SCHEMA)

calls = Table(
    "calls", metadata,
    Column("call_id", String(64), primary_key=True),
    Column("direction", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("from_number", String(64), nullable=False),
    Column("to_number", String(64), nullable=False),
    # The switch connection that carries the call (in-memory id; see README).
    Column("switch_id", String(64), nullable=True),
    Column("party_leg", String(16), nullable=False),
    Column("agent_leg", String(16), nullable=False),
    Column("agent_id", String(64), nullable=True),
    Column("agent_device", String(128), nullable=True),
    Column("team", String(64), nullable=True),
    Column("department", String(64), nullable=True),
    Column("reservation_id", String(128), nullable=True),
    Column("queue", String(64), nullable=True),
    Column("context", JSONB, nullable=False),
    Column("last_prompt_id", String(128), nullable=True),
    Column("request_id", String(128), nullable=True, unique=True),
    Column("party_invite_cseq", Integer, nullable=True),
    Column("agent_invite_cseq", Integer, nullable=True),
    Column("ring_deadline", DateTime(timezone=True), nullable=True),
    Column("offered_at", DateTime(timezone=True), nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=True),
    Column("connected_at", DateTime(timezone=True), nullable=True),
    Column("released_at", DateTime(timezone=True), nullable=True),
    Column("cause", String(32), nullable=True),
    # Bumped by every write; a write checks the version it read (repository.py).
    Column("version", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
           onupdate=func.now()),
    Index("ix_calls_state", "state"),
    Index("ix_calls_offered_at", "offered_at"),
    Index("ix_calls_switch_live", "switch_id", postgresql_where=text("state <> 'released'")),
    Index("ix_calls_ring_deadline", "ring_deadline",
          postgresql_where=text("ring_deadline IS NOT NULL")),
)

_FIELDS = [c.name for c in calls.columns if c.name not in ("updated_at", "version")]


def from_row(row: Any) -> Call:
    values = {name: getattr(row, name) for name in _FIELDS}
    values["state"] = CallState(values["state"])
    values["party_leg"] = LegState(values["party_leg"])
    values["agent_leg"] = LegState(values["agent_leg"])
    values["context"] = dict(values["context"] or {})
    return Call(**values)


async def load(session: AsyncSession, call_id: str) -> Call | None:
    """A call as last committed (REST reads; the handlers use :mod:`.repository`)."""
    row = (await session.execute(select(calls).where(calls.c.call_id == call_id))).first()
    return from_row(row) if row else None


async def list_calls(session: AsyncSession, state: CallState | None, limit: int, *,
                     live: bool = False, agent_id: str | None = None,
                     team: str | None = None, department: str | None = None) -> list[Call]:
    """Newest first; ``team`` / ``department``: only the calls of that team's or that
    department's agents (either matches)."""
    query = select(calls).order_by(calls.c.offered_at.desc(), calls.c.call_id).limit(limit)
    if agent_id is not None:
        query = query.where(calls.c.agent_id == agent_id)
    oversight = [column == value for column, value in
                 ((calls.c.team, team), (calls.c.department, department)) if value is not None]
    if oversight:
        query = query.where(or_(*oversight))
    if state is not None:
        query = query.where(calls.c.state == state.value)
    if live:
        query = query.where(calls.c.state != CallState.RELEASED.value)
    return [from_row(row) for row in (await session.execute(query)).all()]


async def next_ring_deadline(session: AsyncSession) -> datetime | None:
    query = select(func.min(calls.c.ring_deadline)).where(
        calls.c.ring_deadline.is_not(None),
        calls.c.state.in_([CallState.ALERTING.value, CallState.DIALING.value]))
    deadline: datetime | None = (await session.execute(query)).scalar()
    return deadline
