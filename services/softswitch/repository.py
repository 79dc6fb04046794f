"""Replays as rows: a replay (its state, progress, report), the lines of its trace it could
not read, one row per trace call with how that call went, and the audit of resets.

A running replay lives in memory (:mod:`services.softswitch.replay`) and is journaled here:
inserted when it starts, its progress and the calls that changed saved every second, its
report when it ends. A replay that is no longer running is read back from these rows. The
caller opens the session (and its transaction, for writes) and passes it in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.softswitch.db import line_errors, replay_calls, replays, resets
from services.softswitch.trace import LineError

# How many replays the list shows, newest first.
LISTED = 200

# What a save rewrites of a call row that is already there: how the call went so far (its
# ids and trace time are fixed when the replay starts).
CALL_PROGRESS = ("placed_at", "queued_at", "connected_at", "ended_at", "outcome", "agent_id",
                 "talk", "order_id", "callback")

INSERT_REPLAY = replays.insert()
INSERT_LINE_ERRORS = line_errors.insert()
INSERT_CALLS = replay_calls.insert()
INSERT_RESET = resets.insert()

_upsert_calls = insert(replay_calls)
UPSERT_CALLS = _upsert_calls.on_conflict_do_update(
    index_elements=["replay_id", "trace_call_id"],
    set_={k: _upsert_calls.excluded[k] for k in CALL_PROGRESS})

LATEST_REPLAYS = select(replays).order_by(replays.c.created_at.desc()).limit(LISTED)


# -- writes ----------------------------------------------------------------------------------

async def abandon_active_replays(session: AsyncSession, active_states: Iterable[str], *,
                                 now: datetime, failure: str) -> None:
    """At startup: replays left active by a stopped process cannot resume (their calls went
    with the switch connection), so they end failed."""
    await session.execute(
        update(replays).where(replays.c.state.in_(tuple(active_states)))
        .values(state="failed", finished_at=now, failure=failure))


async def record_reset(session: AsyncSession, *, at: datetime, actor: str,
                       released: list[str], withdrawn: list[str]) -> None:
    """Who closed earlier replays' leftovers, when, and which calls: the audit of a reset."""
    await session.execute(INSERT_RESET, {
        "at": at, "actor": actor, "calls_released": len(released),
        "entries_withdrawn": len(withdrawn),
        "call_ids": {"released": released, "withdrawn": withdrawn}})


async def insert_replay(session: AsyncSession, *, replay_id: str, name: str | None,
                        trace_name: str | None, speed: float, state: str, calls_total: int,
                        created_at: datetime, progress: dict[str, Any],
                        errors: Sequence[LineError], calls: list[dict[str, Any]]) -> None:
    """A replay as it starts, in one transaction: its row, the trace lines it skipped, and a
    row per trace call for the saves to fill in."""
    await session.execute(INSERT_REPLAY, {
        "id": replay_id, "name": name, "trace_name": trace_name, "speed": speed,
        "state": state, "calls_total": calls_total, "created_at": created_at,
        "progress": progress})
    if errors:
        await session.execute(INSERT_LINE_ERRORS, [
            {"replay_id": replay_id, "line": e.line, "kind": e.kind, "error": e.error}
            for e in errors])
    if calls:
        await session.execute(INSERT_CALLS, calls)


async def save_progress(session: AsyncSession, replay_id: str, *, state: str,
                        progress: dict[str, Any], report: dict[str, Any] | None,
                        failure: str | None, finished_at: datetime | None,
                        calls: list[dict[str, Any]]) -> None:
    """Where a replay stands (state, progress, and once it ends its report or failure), with
    the calls that changed since the last save; a call row missing is written whole."""
    await session.execute(update(replays).where(replays.c.id == replay_id).values(
        state=state, progress=progress, report=report, failure=failure,
        finished_at=finished_at))
    if calls:
        await session.execute(UPSERT_CALLS, calls)


# -- reads -----------------------------------------------------------------------------------

async def list_replays(session: AsyncSession) -> Sequence[RowMapping]:
    """The latest replays' rows, newest first."""
    return (await session.execute(LATEST_REPLAYS)).mappings().all()


async def replay_with_errors(session: AsyncSession, replay_id: str
                             ) -> tuple[RowMapping, Sequence[RowMapping]] | None:
    """A replay's row and its skipped trace lines (by line number); None if there is none."""
    row = (await session.execute(select(replays).where(replays.c.id == replay_id))
           ).mappings().first()
    if row is None:
        return None
    errors = (await session.execute(
        select(line_errors).where(line_errors.c.replay_id == replay_id)
        .order_by(line_errors.c.line))).mappings().all()
    return row, errors


async def calls_of(session: AsyncSession, replay_id: str) -> list[dict[str, Any]] | None:
    """A replay's call rows in trace order; None if there is no such replay (a replay with no
    calls has an empty list)."""
    if (await session.execute(select(replays.c.id).where(replays.c.id == replay_id))
            ).first() is None:
        return None
    return [dict(r) for r in (await session.execute(
        select(replay_calls).where(replay_calls.c.replay_id == replay_id)
        .order_by(replay_calls.c.at))).mappings().all()]
