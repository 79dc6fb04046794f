"""Tables of the ``recording`` schema and the mapping between rows and the domain object."""

from __future__ import annotations

import uuid
from datetime import datetime
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
    select,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.recording.domain import Recording, RecordingState

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


def new_recording_id() -> str:
    return f"rec-{uuid.uuid4().hex}"


def to_domain(row: Any) -> Recording:
    return Recording(
        recording_id=row.recording_id, call_id=row.call_id, state=RecordingState(row.state),
        connected=bool(row.connected), agent_id=row.agent_id, caller=row.caller,
        callee=row.callee, connected_at=row.connected_at, call_ended_at=row.call_ended_at,
        ended_unbridged=bool(row.ended_unbridged), media_started_at=row.media_started_at, media_ended_at=row.media_ended_at,
        sample_rate=row.sample_rate, samples=row.samples, size_bytes=row.size_bytes,
        sha256=row.sha256, path=row.path, stored_at=row.stored_at,
    )


def _values(rec: Recording) -> dict[str, Any]:
    return {
        "state": rec.state.value, "connected": rec.connected, "agent_id": rec.agent_id,
        "caller": rec.caller, "callee": rec.callee, "connected_at": rec.connected_at,
        "call_ended_at": rec.call_ended_at, "ended_unbridged": rec.ended_unbridged,
        "media_started_at": rec.media_started_at,
        "media_ended_at": rec.media_ended_at, "started_at": rec.started_at,
        "sample_rate": rec.sample_rate, "samples": rec.samples,
        "duration_seconds": rec.duration_seconds, "size_bytes": rec.size_bytes,
        "sha256": rec.sha256, "path": rec.path, "stored_at": rec.stored_at,
    }


async def lock_or_create(session: AsyncSession, call_id: str, now: datetime) -> Recording:
    """The call's recording, row-locked for this transaction; created (pending) if absent.

    Insert-then-lock makes the media socket and the event consumer serialize on one row
    whichever of them arrives first."""
    await session.execute(
        insert(recordings).values(recording_id=new_recording_id(), call_id=call_id,
                                  state=RecordingState.PENDING.value, connected=False, samples=0,
                                  created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["call_id"]))
    row = (await session.execute(
        select(recordings).where(recordings.c.call_id == call_id).with_for_update())).one()
    return to_domain(row)


async def lock_existing(session: AsyncSession, call_id: str) -> Recording | None:
    row = (await session.execute(
        select(recordings).where(recordings.c.call_id == call_id).with_for_update())).first()
    return to_domain(row) if row is not None else None


async def save(session: AsyncSession, rec: Recording, now: datetime) -> None:
    await session.execute(recordings.update()
                          .where(recordings.c.recording_id == rec.recording_id)
                          .values(**_values(rec), updated_at=now))


async def get(session: AsyncSession, recording_id: str) -> Any:
    return (await session.execute(
        select(recordings).where(recordings.c.recording_id == recording_id))).first()


async def search(session: AsyncSession, *, call_id: str | None, agent_id: str | None,
                 limit: int) -> list[Any]:
    query = select(recordings)
    if call_id is not None:
        query = query.where(recordings.c.call_id == call_id)
    if agent_id is not None:
        query = query.where(recordings.c.agent_id == agent_id)
    query = query.order_by(recordings.c.started_at.desc().nulls_last(),
                           recordings.c.created_at.desc()).limit(limit)
    return list((await session.execute(query)).all())
