"""Recordings as rows: row ⇄ domain, the row lock both halves serialize on, the save.

SQL written once (prepared by asyncpg on the unit of work's connection): a call's connect and
release, and each media stream's start and stop, are on the call's path.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.recording.db import SCHEMA
from services.recording.domain import Recording, RecordingState
from shared.messaging import Transaction

# Created pending if absent, and row-locked either way, in one statement: the media socket
# and the event consumer then serialize on one row whichever of them arrives first. (The
# no-op update is what takes the lock on an existing row and returns it.)
LOCK_OR_CREATE = f"""
    INSERT INTO {SCHEMA}.recordings AS r (recording_id, call_id, state, connected, samples,
                                          ended_unbridged, created_at, updated_at)
    VALUES ($1, $2, '{RecordingState.PENDING.value}', false, 0, false, $3, $3)
    ON CONFLICT (call_id) DO UPDATE SET call_id = r.call_id
    RETURNING *"""

LOCK_EXISTING = f"SELECT * FROM {SCHEMA}.recordings WHERE call_id = $1 FOR UPDATE"

SAVE = f"""
    UPDATE {SCHEMA}.recordings
       SET state = $2, connected = $3, agent_id = $4, caller = $5, callee = $6,
           connected_at = $7, call_ended_at = $8, ended_unbridged = $9,
           media_started_at = $10, media_ended_at = $11, started_at = $12, sample_rate = $13,
           samples = $14, duration_seconds = $15, size_bytes = $16, sha256 = $17, path = $18,
           stored_at = $19, updated_at = $20, team = $21, department = $22
     WHERE recording_id = $1"""


def new_recording_id() -> str:
    return f"rec-{uuid.uuid4().hex}"


def to_domain(row: Any) -> Recording:
    return Recording(
        recording_id=row["recording_id"], call_id=row["call_id"],
        state=RecordingState(row["state"]), connected=bool(row["connected"]),
        agent_id=row["agent_id"], team=row["team"], department=row["department"],
        caller=row["caller"], callee=row["callee"],
        connected_at=row["connected_at"], call_ended_at=row["call_ended_at"],
        ended_unbridged=bool(row["ended_unbridged"]),
        media_started_at=row["media_started_at"], media_ended_at=row["media_ended_at"],
        sample_rate=row["sample_rate"], samples=row["samples"], size_bytes=row["size_bytes"],
        sha256=row["sha256"], path=row["path"], stored_at=row["stored_at"],
    )


async def lock_or_create(tx: Transaction, call_id: str, now: datetime) -> Recording:
    """The call's recording, row-locked for this transaction; created (pending) if absent."""
    row = await tx.fetchrow(LOCK_OR_CREATE, new_recording_id(), call_id, now)
    assert row is not None, "an upsert returns its row"
    return to_domain(row)


async def lock_existing(tx: Transaction, call_id: str) -> Recording | None:
    row = await tx.fetchrow(LOCK_EXISTING, call_id)
    return None if row is None else to_domain(row)


async def save(tx: Transaction, rec: Recording, now: datetime) -> None:
    await tx.execute(
        SAVE, rec.recording_id, rec.state.value, rec.connected, rec.agent_id, rec.caller,
        rec.callee, rec.connected_at, rec.call_ended_at, rec.ended_unbridged,
        rec.media_started_at, rec.media_ended_at, rec.started_at, rec.sample_rate,
        rec.samples, rec.duration_seconds, rec.size_bytes, rec.sha256, rec.path,
        rec.stored_at, now, rec.team, rec.department)
