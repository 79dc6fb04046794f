"""SLA clocks at the edge: the runtime (policies, calendar, the timer loop's wake signal) and
the persistence of clocks. The arithmetic is in ``domain/sla.py``; this module loads rows,
lets the domain decide, saves and records events, inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db, journal
from services.workorder.domain import sla
from services.workorder.domain.calendar import WorkCalendar, YearSchedule, parse_year
from services.workorder.domain.callbacks import CallbackPolicy
from services.workorder.domain.dialing import CallingRules
from services.workorder.domain.orders import OrderType
from services.workorder.domain.sla import Basis, Clock, ClockState, SlaPolicy
from shared.db import Queries, Row, rows
from shared.effects import Wake
from shared.events.workorder import SlaEscalated, SlaUrged
from shared.messaging import Transaction

WORK_CLOCKS = ("dispatch", "acceptance", "arrival", "resolution")
POLICY_VERSION = f"SELECT max(version) FROM {db.SCHEMA}.sla_policies"
POLICY_DOCUMENT = f"SELECT document FROM {db.SCHEMA}.sla_policies WHERE version = $1"
KNOWN_TYPES = tuple(t.value for t in OrderType)
POLICY_KEY = "workorder.sla_policy"


class Waker:
    """Tells the timer loop of a deadline once the transaction that wrote it has committed
    (the loop wakes early if it is nearer than its planned wake-up)."""

    def __init__(self) -> None:
        self.listener: Callable[[datetime], None] | None = None

    def schedule(self, due: datetime | None) -> None:
        if due is not None and self.listener is not None:
            self.listener(due)


@dataclass
class Runtime:
    callback_policy: CallbackPolicy
    rules: CallingRules
    calendar: WorkCalendar
    callback_team: str = "callback_team"
    repeat_complaint_days: float = 30
    waker: Waker = field(default_factory=Waker)
    _policies: dict[int, SlaPolicy] = field(default_factory=dict)
    # The shipped year files; years stored over REST are laid over them on every reload.
    base_calendar: WorkCalendar | None = None
    calendar_stamp: str | None = None

    async def refresh_calendars(self, session: AsyncSession) -> bool:
        """Reload the stored calendar years if they changed since the last look (a digest of
        every stored document: a PUT on any replica changes it). True when reloaded."""
        c = db.calendars
        stamp = (await session.execute(text(
            f"SELECT coalesce(md5(string_agg(year::text || ':' || document::text, ',' "
            f"ORDER BY year)), '') FROM {db.SCHEMA}.calendars"))).scalar_one()
        if stamp == self.calendar_stamp:
            return False
        calendar = self.base_calendar or self.calendar
        for row in (await session.execute(select(c).order_by(c.c.year))).all():
            calendar = calendar.with_year(parse_year(row.document, row.year))
        # Deadlines already planned keep their times; new plans use the new years.
        self.calendar, self.calendar_stamp = calendar, stamp
        return True

    async def sla_policy(self, db: Queries) -> SlaPolicy:
        """The newest version, checked once per transaction so every replica uses the same
        one (the document is read and parsed once per version)."""
        if isinstance(db, Transaction) and POLICY_KEY in db.shared:
            cached: SlaPolicy = db.shared[POLICY_KEY]
            return cached
        version = await db.fetchval(POLICY_VERSION)
        if version is None:
            raise RuntimeError("no SLA policy loaded")
        policy = self._policies.get(version)
        if policy is None:
            document = await db.fetchval(POLICY_DOCUMENT, version)
            if isinstance(document, str):
                document = json.loads(document)
            policy = sla.parse_policy(document, version, KNOWN_TYPES)
            self._policies[version] = policy
        if isinstance(db, Transaction):
            db.shared[POLICY_KEY] = policy
        return policy

    async def wake_after_commit(self, tx: Transaction, due: datetime | None) -> None:
        await tx.apply([Wake(self.waker, due)])


def load_calendar_files(directory: Path, tz_name: str) -> WorkCalendar:
    schedules: list[YearSchedule] = []
    for path in sorted(directory.glob("*.yaml")):
        schedules.append(parse_year(yaml.safe_load(path.read_text()) or {}, int(path.stem)))
    return WorkCalendar.of(schedules, tz_name)


def read_policy_file(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text()) or {}
    sla.parse_policy(doc, 0, KNOWN_TYPES)  # fail at startup, not at the first case
    return dict(doc)


# -- persistence ----------------------------------------------------------------------------

S = db.SCHEMA

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


def clock_of(row: Any) -> Clock:
    return Clock(name=row.name, basis=Basis(row.basis), budget=row.budget_seconds,
                 state=ClockState(row.state), elapsed=row.elapsed_seconds,
                 running_since=row.running_since, urged=row.urged, level=row.level,
                 next_fire_at=row.next_fire_at, due_at=row.due_at)


def _values(clock: Clock) -> tuple[Any, ...]:
    """The clock's columns in INSERT_CLOCKS / SAVE_CLOCKS order (after the id)."""
    return (clock.basis.value, clock.budget, clock.elapsed, clock.running_since,
            clock.state.value, clock.urged, clock.level, clock.due_at, clock.next_fire_at)


def _history(tx: Transaction, clock_id: int, order_id: str, clock: Clock, event: str, *,
             actor: str, priority: str, version: int, reason: str | None = None,
             due_at: datetime | None = None, level: int | None = None) -> None:
    journal.clock_event(tx, clock_id=clock_id, order_id=order_id, name=clock.name, event=event,
                        actor=actor, reason=reason, budget=clock.budget,
                        elapsed=clock.elapsed, priority=priority, version=version,
                        level=clock.level if level is None else level, due_at=due_at,
                        at=tx.now)


async def start_clocks(tx: Transaction, rt: Runtime, order: Any, names: Iterable[str], *,
                       round_: int, actor: str, callback_id: str | None = None) -> None:
    """Start the named clocks the policy has for this case's type and priority (one
    statement for all of them)."""
    get = order.get if isinstance(order, dict) else order._mapping.get
    policy = await rt.sla_policy(tx)
    order_id = str(get("order_id"))
    order_type, priority = str(get("type")), str(get("priority") or "normal")
    area_class = policy.area_class(get("area"))
    started: dict[str, Clock] = {}
    for name in names:
        spec = policy.timer(order_type, priority, name)
        if spec is not None:
            started[name] = sla.start(name, spec, area_class, now=tx.now, policy=policy,
                                      cal=rt.calendar)
    if not started:
        return
    columns = [list(column) for column in zip(*(
        (name, *_values(clock)) for name, clock in started.items()), strict=True)]
    ids = {r["name"]: r["clock_id"] for r in await tx.fetch(
        INSERT_CLOCKS, order_id, round_, callback_id, policy.version, priority, tx.now,
        *columns)}
    for name, clock in started.items():
        _history(tx, ids[name], order_id, clock, "started", actor=actor, priority=priority,
                 version=policy.version)
        await rt.wake_after_commit(tx, clock.next_fire_at)


async def _open_clocks(tx: Transaction, order_id: str, names: Iterable[str] | None,
                       callback_id: str | None = None) -> list[Row]:
    return await rows(tx, OPEN_CLOCKS, order_id, None if names is None else list(names),
                      callback_id)


async def _save(tx: Transaction,
                saves: Sequence[tuple[Row, Clock, str, int, datetime | None]]) -> None:
    """Write each (row, its new clock, priority, policy version, stopped at) in one
    statement."""
    if saves:
        await tx.execute(SAVE_CLOCKS, *map(list, zip(*(
            (row.clock_id, *_values(clock), priority, version, stopped)
            for row, clock, priority, version, stopped in saves), strict=True)))


async def stop_clocks(tx: Transaction, rt: Runtime, order_id: str, names: Iterable[str] | None,
                      *, actor: str, reason: str | None = None,
                      callback_id: str | None = None) -> None:
    saves = []
    for row in await _open_clocks(tx, order_id, names, callback_id):
        clock = sla.stop(clock_of(row), now=tx.now, cal=rt.calendar)
        saves.append((row, clock, row.priority, row.policy_version, tx.now))
        _history(tx, row.clock_id, order_id, clock, "stopped", actor=actor,
                 priority=row.priority, version=row.policy_version, reason=reason)
    await _save(tx, saves)


async def pause_clocks(tx: Transaction, rt: Runtime, order_id: str, *, actor: str,
                       reason: str) -> int:
    saves = []
    for row in await _open_clocks(tx, order_id, None):
        if row.state != ClockState.RUNNING.value:
            continue
        clock = sla.pause(clock_of(row), now=tx.now, cal=rt.calendar)
        saves.append((row, clock, row.priority, row.policy_version, None))
        _history(tx, row.clock_id, order_id, clock, "paused", actor=actor,
                 priority=row.priority, version=row.policy_version, reason=reason)
    await _save(tx, saves)
    return len(saves)


async def resume_clocks(tx: Transaction, rt: Runtime, order_id: str, *, actor: str,
                        reason: str | None) -> int:
    policy = await rt.sla_policy(tx)
    saves = []
    for row in await _open_clocks(tx, order_id, None):
        if row.state != ClockState.PAUSED.value:
            continue
        clock = sla.resume(clock_of(row), now=tx.now, policy=policy, cal=rt.calendar)
        saves.append((row, clock, row.priority, row.policy_version, None))
        _history(tx, row.clock_id, order_id, clock, "resumed", actor=actor,
                 priority=row.priority, version=row.policy_version, reason=reason)
        await rt.wake_after_commit(tx, clock.next_fire_at)
    await _save(tx, saves)
    return len(saves)


async def rebudget_clocks(tx: Transaction, rt: Runtime, order: Any, priority: str, *,
                          actor: str, reason: str | None, policy: SlaPolicy | None = None) -> None:
    """New priority or policy version: each open clock gets its new budget and keeps the time
    already run (a clock the new policy no longer has keeps its old budget)."""
    policy = policy or await rt.sla_policy(tx)
    area_class = policy.area_class(order.area)
    saves = []
    for row in await _open_clocks(tx, order.order_id, None):
        spec = policy.timer(order.type, priority, row.name)
        budget = spec.budget(area_class) if spec is not None else row.budget_seconds
        clock = sla.rebudget(clock_of(row), budget, now=tx.now, policy=policy, cal=rt.calendar)
        saves.append((row, clock, priority, policy.version, None))
        _history(tx, row.clock_id, order.order_id, clock, "rebudgeted", actor=actor,
                 priority=priority, version=policy.version, reason=reason)
        await rt.wake_after_commit(tx, clock.next_fire_at)
    await _save(tx, saves)


# -- the timer ------------------------------------------------------------------------------

DUE_CLOCKS = f"""
    SELECT * FROM {S}.sla_clocks WHERE next_fire_at <= $1 ORDER BY next_fire_at LIMIT $2
       FOR UPDATE SKIP LOCKED"""

# Read without a lock: the order's own handlers lock it first and clocks second.
ORDERS_OF_CLOCKS = f"""
    SELECT order_id, department, owner, call_id FROM {S}.orders WHERE order_id = ANY($1::text[])"""

EARLIEST_DUE = f"""
    SELECT least((SELECT min(next_fire_at) FROM {S}.sla_clocks),
                 (SELECT min(due_at) FROM {S}.callbacks WHERE state IN ('pending', 'dialing')))"""


async def fire_due(tx: Transaction, rt: Runtime, actor: str, limit: int) -> int:
    """Fire up to ``limit`` of the earliest due clocks nobody else holds, in this transaction;
    return how many. A batch pays the transaction, the policy read and the order read once:
    a burst of deadlines (every case filed in the morning rush) is what makes timers late."""
    due = await rows(tx, DUE_CLOCKS, tx.now, limit)
    if not due:
        return 0
    policy = await rt.sla_policy(tx)
    orders = {r.order_id: r for r in await rows(tx, ORDERS_OF_CLOCKS,
                                                 list({r.order_id for r in due}))}
    saves = []
    for row in due:
        clock = await _fire_row(tx, rt, actor, row, policy, orders[row.order_id])
        saves.append((row, clock, row.priority, row.policy_version, None))
    await _save(tx, saves)
    return len(due)


async def _fire_row(tx: Transaction, rt: Runtime, actor: str, row: Row, policy: SlaPolicy,
                    order: Row) -> Clock:
    """Fire one clock: record its history and events; return its new state (the caller
    saves the whole batch at once)."""
    now = tx.now
    # Firing moves only the urge, the level and the next deadlines (time run is unchanged).
    clock, fired = sla.fire(clock_of(row), now=now, policy=policy, cal=rt.calendar)
    subject = f"ticket/{row.order_id}"
    if fired.urged:
        _history(tx, row.clock_id, row.order_id, clock, "urged", actor=actor,
                 priority=row.priority, version=row.policy_version, due_at=fired.urge_at,
                 level=row.level)
        await tx.emit(SlaUrged(
            order_id=row.order_id, clock=row.name, department=order.department,
            owner=order.owner, due_at=clock.due_at, budget_seconds=clock.budget,
            elapsed_seconds=sla.elapsed_at(clock, now, rt.calendar),
        ), subject=subject, correlationid=order.call_id)
    for level, level_due in zip(fired.levels, fired.level_at, strict=True):
        # One row per level reached, with that level's own due time: the overdue reports
        # read the level-1 row as "the deadline passed at due_at".
        _history(tx, row.clock_id, row.order_id, clock, "escalated", actor=actor,
                 priority=row.priority, version=row.policy_version, due_at=level_due,
                 level=level, reason=policy.escalation_levels[level - 1])
        await tx.emit(SlaEscalated(
            order_id=row.order_id, clock=row.name, level=level,
            level_name=policy.escalation_levels[level - 1], department=order.department,
            owner=order.owner, due_at=clock.due_at,
            overdue_seconds=-sla.remaining(clock, now, rt.calendar),
        ), subject=subject, correlationid=order.call_id)
    return clock


async def earliest_due(db: Queries) -> datetime | None:
    """The next SLA deadline or callback due, whichever is first."""
    due: datetime | None = await db.fetchval(EARLIEST_DUE)
    return due


def clock_view(row: Any, now: datetime, cal: WorkCalendar) -> dict[str, Any]:
    clock = clock_of(row)
    return {"clock_id": row.clock_id, "name": row.name, "round": row.round,
            "state": row.state, "basis": row.basis, "budget_seconds": row.budget_seconds,
            "elapsed_seconds": sla.elapsed_at(clock, now, cal),
            "remaining_seconds": sla.remaining(clock, now, cal),
            "due_at": row.due_at, "urged": row.urged, "level": row.level,
            "overdue": sla.remaining(clock, now, cal) < 0 or row.level > 0,
            "priority": row.priority,
            "policy_version": row.policy_version, "started_at": row.started_at,
            "stopped_at": row.stopped_at, "callback_id": row.callback_id}
