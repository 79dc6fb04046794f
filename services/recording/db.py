"""Tables of the ``recording`` schema, and the REST reads on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    false,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

SCHEMA = "recording"
metadata = MetaData(schema=SCHEMA)

recordings = Table(
    "recordings", metadata,
    Column("recording_id", String(64), primary_key=True),
    # One recording per call until transfers record separate segments.
    Column("call_id", String(128), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("connected", Boolean, nullable=False, default=False),
    Column("agent_id", String(64), nullable=True, index=True),
    Column("team", String(64), nullable=True),
    Column("department", String(64), nullable=True),
    Column("caller", String(64), nullable=True),
    Column("callee", String(64), nullable=True),
    Column("connected_at", DateTime(timezone=True), nullable=True),
    Column("call_ended_at", DateTime(timezone=True), nullable=True),
    Column("ended_unbridged", Boolean, nullable=False, server_default=false()),
    Column("media_started_at", DateTime(timezone=True), nullable=True),
    Column("media_ended_at", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True, index=True),
    Column("sample_rate", Integer, nullable=True),
    Column("samples", BigInteger, nullable=False, default=0),
    Column("duration_seconds", Float, nullable=True),
    Column("size_bytes", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    # Relative to the storage directory, so the directory can move.
    Column("path", String(512), nullable=True),
    Column("stored_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

access_audit = Table(
    "access_audit", metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("recording_id", String(64), nullable=False, index=True),
    Column("action", String(32), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("scopes", String(256), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)


async def get(session: AsyncSession, recording_id: str) -> Any:
    return (await session.execute(
        select(recordings).where(recordings.c.recording_id == recording_id))).first()


async def search(session: AsyncSession, *, call_id: str | None, agent_id: str | None,
                 limit: int, team: str | None = None, department: str | None = None
                 ) -> list[Any]:
    """Newest first; ``team`` / ``department``: only the recordings of that team's or that
    department's agents (either matches)."""
    query = select(recordings)
    if call_id is not None:
        query = query.where(recordings.c.call_id == call_id)
    if agent_id is not None:
        query = query.where(recordings.c.agent_id == agent_id)
    oversight = [column == value for column, value in
                 ((recordings.c.team, team), (recordings.c.department, department))
                 if value is not None]
    if oversight:
        query = query.where(or_(*oversight))
    query = query.order_by(recordings.c.started_at.desc().nulls_last(),
                           recordings.c.created_at.desc()).limit(limit)
    return list((await session.execute(query)).all())
