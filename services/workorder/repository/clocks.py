"""SLA clocks as rows: row ⇄ :class:`Clock`, the batch insert and save (one statement for
every clock a unit of work touches), the timer's due rows, and the stored configuration the
clocks run on (policy versions, calendar years). SQL written once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from services.workorder import db
from services.workorder.domain import sla
from services.workorder.domain.calendar import WorkCalendar
from services.workorder.domain.sla import Basis, Clock, ClockState
from shared.db import Queries, Row, Session, rows

S = db.SCHEMA

POLICY_VERSION = f"SELECT max(version) FROM {S}.sla_policies"
POLICY_DOCUMENT = f"SELECT document FROM {S}.sla_policies WHERE version = $1"

INSERT_CLOCKS = f"""
    INSERT INTO {S}.sla_clocks (order_id, round, callback_id, policy_version, priority,
                                started_at, name, basis, budget_seconds, elapsed_seconds,
                                running_since, state, urged, level, due_at, next_fire_at)
    SELECT $1, $2, $3, $4, $5, $6, c.*
      FROM unnest($7::text[], $8::text[], $9::float8[], $10::float8[], $11::timestamptz[],
                  $12::text[], $13::bool[], $14::int[], $15::timestamptz[],
                  $16::timestamptz[]) AS c
    RETURNING clock_id, name"""

OPEN_CLOCKS = f"""
    SELECT * FROM {S}.sla_clocks
     WHERE order_id = $1 AND state <> 'stopped'
       AND ($2::text[] IS NULL OR name = ANY($2::text[]))
       AND ($3::text IS NULL OR callback_id = $3)
     ORDER BY clock_id FOR UPDATE"""

SAVE_CLOCKS = f"""
    UPDATE {S}.sla_clocks c
       SET basis = v.basis, budget_seconds = v.budget, elapsed_seconds = v.elapsed,
           running_since = v.since, state = v.state, urged = v.urged, level = v.level,
           due_at = v.due, next_fire_at = v.next, priority = v.priority,
           policy_version = v.version, stopped_at = coalesce(v.stopped, c.stopped_at)
      FROM unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[], $5::timestamptz[],
                  $6::text[], $7::bool[], $8::int[], $9::timestamptz[], $10::timestamptz[],
                  $11::text[], $12::int[], $13::timestamptz[])
           AS v(clock_id, basis, budget, elapsed, since, state, urged, level, due, next,
                priority, version, stopped)
     WHERE c.clock_id = v.clock_id"""

DUE_CLOCKS = f"""
    SELECT * FROM {S}.sla_clocks WHERE next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2
       FOR UPDATE SKIP LOCKED"""

# Read without a lock: the order's own handlers lock it first and clocks second.
ORDERS_OF_CLOCKS = f"""
    SELECT order_id, department, owner, call_id FROM {S}.orders WHERE order_id = ANY($1::text[])"""

EARLIEST_DUE = f"""
    SELECT least((SELECT min(next_fire_at) FROM {S}.sla_clocks),
                 (SELECT min(due_at) FROM {S}.callbacks WHERE state IN ('pending', 'dialing')))"""

CALENDAR_STAMP = text(
    f"SELECT coalesce(md5(string_agg(year::text || ':' || document::text, ',' "
    f"ORDER BY year)), '') FROM {S}.calendars")


def clock_of(row: Any) -> Clock:
    return Clock(name=row.name, basis=Basis(row.basis), budget=row.budget_seconds,
                 state=ClockState(row.state), elapsed=row.elapsed_seconds,
                 running_since=row.running_since, urged=row.urged, level=row.level,
                 next_fire_at=row.next_fire_at, due_at=row.due_at)


def _values(clock: Clock) -> tuple[Any, ...]:
    """The clock's columns in INSERT_CLOCKS / SAVE_CLOCKS order (after the id)."""
    return (clock.basis.value, clock.budget, clock.elapsed, clock.running_since,
            clock.state.value, clock.urged, clock.level, clock.due_at, clock.next_fire_at)


async def insert_clocks(db: Queries, clocks: dict[str, Clock], *, order_id: str, round_: int,
                        callback_id: str | None, version: int, priority: str,
                        started_at: datetime) -> dict[str, int]:
    """Insert the named clocks of one case in one statement; their ids by name."""
    columns = [list(column) for column in zip(*(
        (name, *_values(clock)) for name, clock in clocks.items()), strict=True)]
    return {r["name"]: r["clock_id"] for r in await db.fetch(
        INSERT_CLOCKS, order_id, round_, callback_id, version, priority, started_at,
        *columns)}


async def lock_open_clocks(db: Queries, order_id: str, names: Iterable[str] | None,
                           callback_id: str | None = None) -> list[Row]:
    """The case's clocks still open (all, or the named ones, or one callback's), locked."""
    return await rows(db, OPEN_CLOCKS, order_id, None if names is None else list(names),
                      callback_id)


# (row, its new clock, priority, policy version, stopped at)
ClockSave = tuple[Row, Clock, str, int, datetime | None]


async def save_clocks(db: Queries, saves: Sequence[ClockSave]) -> None:
    """Write every clock's new state in one statement."""
    if saves:
        await db.execute(SAVE_CLOCKS, *map(list, zip(*(
            (row.clock_id, *_values(clock), priority, version, stopped)
            for row, clock, priority, version, stopped in saves), strict=True)))


async def lock_due_clocks(db: Queries, now: datetime, limit: int) -> list[Row]:
    """The earliest clocks due by ``now`` that no other worker holds, locked."""
    return await rows(db, DUE_CLOCKS, now, limit)


async def orders_of_clocks(db: Queries, order_ids: Iterable[str]) -> dict[str, Row]:
    """What a fired clock's events say about its case, for each case id."""
    return {r.order_id: r for r in await rows(db, ORDERS_OF_CLOCKS, list(set(order_ids)))}


async def earliest_due(db: Queries) -> datetime | None:
    """The next SLA deadline or callback due, whichever is first."""
    due: datetime | None = await db.fetchval(EARLIEST_DUE)
    return due


async def latest_policy_version(db: Queries) -> int | None:
    version: int | None = await db.fetchval(POLICY_VERSION)
    return version


async def policy_document(db: Queries, version: int) -> dict[str, Any]:
    document = await db.fetchval(POLICY_DOCUMENT, version)
    # jsonb arrives as text unless the connection has a codec for it.
    return dict(json.loads(document) if isinstance(document, str) else document)


async def calendar_years(session: Session, *, unless_stamp: str | None
                         ) -> tuple[str, list[tuple[int, dict[str, Any]]]] | None:
    """The stored calendar years (year, document) with a digest of them all, or None when
    the digest is still ``unless_stamp`` (nothing changed since that read)."""
    stamp = (await session.execute(CALENDAR_STAMP)).scalar_one()
    if stamp == unless_stamp:
        return None
    c = db.calendars
    found = (await session.execute(select(c.c.year, c.c.document).order_by(c.c.year))).all()
    return stamp, [(row.year, row.document) for row in found]


def clock_view(row: Any, now: datetime, cal: WorkCalendar) -> dict[str, Any]:
    """A clock as the API shows it, with its time run and left as of ``now``."""
    clock = clock_of(row)
    remaining = sla.remaining(clock, now, cal)
    return {"clock_id": row.clock_id, "name": row.name, "round": row.round,
            "state": row.state, "basis": row.basis, "budget_seconds": row.budget_seconds,
            "elapsed_seconds": sla.elapsed_at(clock, now, cal),
            "remaining_seconds": remaining,
            "due_at": row.due_at, "urged": row.urged, "level": row.level,
            "overdue": remaining < 0 or row.level > 0,
            "priority": row.priority,
            "policy_version": row.policy_version, "started_at": row.started_at,
            "stopped_at": row.stopped_at, "callback_id": row.callback_id}
