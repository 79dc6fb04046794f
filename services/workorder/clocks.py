"""SLA clocks at the edge: the runtime (policies, calendar, the timer loop's wake signal) and
the persistence of clocks. The arithmetic is in ``domain/sla.py``; this module loads rows,
lets the domain decide, saves and records events, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db
from services.workorder.domain import sla
from services.workorder.domain.calendar import WorkCalendar, YearSchedule, parse_year
from services.workorder.domain.callbacks import CallbackPolicy
from services.workorder.domain.dialing import CallingRules
from services.workorder.domain.orders import OrderType
from services.workorder.domain.sla import Basis, Clock, ClockState, SlaPolicy
from shared.messaging import Transaction

WORK_CLOCKS = ("dispatch", "acceptance", "arrival", "resolution")
KNOWN_TYPES = tuple(t.value for t in OrderType)


class Waker:
    """Tells the timer loop of a deadline once the transaction that wrote it has committed
    (the loop wakes early if it is nearer than its planned wake-up)."""

    def __init__(self) -> None:
        self.listener: Callable[[datetime], None] | None = None

    def notify(self, due: datetime | None) -> None:
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

    async def sla_policy(self, session: AsyncSession) -> SlaPolicy:
        """The newest version, read each time so every replica uses the same one."""
        row = (await session.execute(select(db.sla_policies.c.version, db.sla_policies.c.document)
                                     .order_by(db.sla_policies.c.version.desc()).limit(1))).first()
        if row is None:
            raise RuntimeError("no SLA policy loaded")
        policy = self._policies.get(row.version)
        if policy is None:
            policy = sla.parse_policy(row.document, row.version, KNOWN_TYPES)
            self._policies[row.version] = policy
        return policy

    def woken_after_commit(self, tx: Transaction, due: datetime | None) -> None:
        if due is None:
            return
        waker = self.waker

        async def wake() -> None:
            waker.notify(due)

        tx.after_commit(wake)


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

def clock_of(row: Row[Any]) -> Clock:
    return Clock(name=row.name, basis=Basis(row.basis), budget=row.budget_seconds,
                 state=ClockState(row.state), elapsed=row.elapsed_seconds,
                 running_since=row.running_since, urged=row.urged, level=row.level,
                 next_fire_at=row.next_fire_at, due_at=row.due_at)


def _values(clock: Clock) -> dict[str, Any]:
    return {"basis": clock.basis.value, "budget_seconds": clock.budget,
            "elapsed_seconds": clock.elapsed, "running_since": clock.running_since,
            "state": clock.state.value, "urged": clock.urged, "level": clock.level,
            "due_at": clock.due_at, "next_fire_at": clock.next_fire_at}


async def _history(tx: Transaction, clock_id: int, order_id: str, clock: Clock, event: str, *,
                   actor: str, priority: str, version: int, reason: str | None = None,
                   due_at: datetime | None = None, level: int | None = None) -> None:
    await tx.session.execute(db.clock_history.insert().values(
        clock_id=clock_id, order_id=order_id, name=clock.name, event=event, actor=actor,
        reason=reason, budget_seconds=clock.budget, elapsed_seconds=clock.elapsed,
        priority=priority, policy_version=version,
        level=clock.level if level is None else level, due_at=due_at, at=tx.now))


async def start_clocks(tx: Transaction, rt: Runtime, order: Row[Any] | dict[str, Any],
                       names: Iterable[str], *, round_: int, actor: str,
                       callback_id: str | None = None) -> None:
    """Start the named clocks the policy has for this case's type and priority."""
    get = order.get if isinstance(order, dict) else order._mapping.get
    policy = await rt.sla_policy(tx.session)
    order_type, priority = str(get("type")), str(get("priority") or "normal")
    area_class = policy.area_class(get("area"))
    for name in names:
        spec = policy.timer(order_type, priority, name)
        if spec is None:
            continue
        clock = sla.start(name, spec, area_class, now=tx.now, policy=policy, cal=rt.calendar)
        clock_id = (await tx.session.execute(db.sla_clocks.insert().values(
            order_id=get("order_id"), name=name, round=round_, callback_id=callback_id,
            policy_version=policy.version, priority=priority, started_at=tx.now,
            **_values(clock)).returning(db.sla_clocks.c.clock_id))).scalar_one()
        await _history(tx, clock_id, str(get("order_id")), clock, "started", actor=actor,
                       priority=priority, version=policy.version)
        rt.woken_after_commit(tx, clock.next_fire_at)


async def _open_clocks(tx: Transaction, order_id: str, names: Iterable[str] | None,
                       callback_id: str | None = None) -> list[Row[Any]]:
    t = db.sla_clocks
    query = (select(t).where(t.c.order_id == order_id, t.c.state != ClockState.STOPPED.value)
             .order_by(t.c.clock_id).with_for_update())
    if names is not None:
        query = query.where(t.c.name.in_(list(names)))
    if callback_id is not None:
        query = query.where(t.c.callback_id == callback_id)
    return list((await tx.session.execute(query)).all())


async def _save(tx: Transaction, row: Row[Any], clock: Clock, **extra: Any) -> None:
    await tx.session.execute(update(db.sla_clocks).where(db.sla_clocks.c.clock_id == row.clock_id)
                             .values(**_values(clock), **extra))


async def stop_clocks(tx: Transaction, rt: Runtime, order_id: str, names: Iterable[str] | None,
                      *, actor: str, reason: str | None = None,
                      callback_id: str | None = None) -> None:
    for row in await _open_clocks(tx, order_id, names, callback_id):
        clock = sla.stop(clock_of(row), now=tx.now, cal=rt.calendar)
        await _save(tx, row, clock, stopped_at=tx.now)
        await _history(tx, row.clock_id, order_id, clock, "stopped", actor=actor,
                       priority=row.priority, version=row.policy_version, reason=reason)


async def pause_clocks(tx: Transaction, rt: Runtime, order_id: str, *, actor: str,
                       reason: str) -> int:
    paused = 0
    for row in await _open_clocks(tx, order_id, None):
        if row.state != ClockState.RUNNING.value:
            continue
        clock = sla.pause(clock_of(row), now=tx.now, cal=rt.calendar)
        await _save(tx, row, clock)
        await _history(tx, row.clock_id, order_id, clock, "paused", actor=actor,
                       priority=row.priority, version=row.policy_version, reason=reason)
        paused += 1
    return paused


async def resume_clocks(tx: Transaction, rt: Runtime, order_id: str, *, actor: str,
                        reason: str | None) -> int:
    policy = await rt.sla_policy(tx.session)
    resumed = 0
    for row in await _open_clocks(tx, order_id, None):
        if row.state != ClockState.PAUSED.value:
            continue
        clock = sla.resume(clock_of(row), now=tx.now, policy=policy, cal=rt.calendar)
        await _save(tx, row, clock)
        await _history(tx, row.clock_id, order_id, clock, "resumed", actor=actor,
                       priority=row.priority, version=row.policy_version, reason=reason)
        rt.woken_after_commit(tx, clock.next_fire_at)
        resumed += 1
    return resumed


async def rebudget_clocks(tx: Transaction, rt: Runtime, order: Row[Any], priority: str, *,
                          actor: str, reason: str | None, policy: SlaPolicy | None = None) -> None:
    """New priority or policy version: each open clock gets its new budget and keeps the time
    already run (a clock the new policy no longer has keeps its old budget)."""
    policy = policy or await rt.sla_policy(tx.session)
    area_class = policy.area_class(order.area)
    for row in await _open_clocks(tx, order.order_id, None):
        spec = policy.timer(order.type, priority, row.name)
        budget = spec.budget(area_class) if spec is not None else row.budget_seconds
        clock = sla.rebudget(clock_of(row), budget, now=tx.now, policy=policy, cal=rt.calendar)
        await _save(tx, row, clock, priority=priority, policy_version=policy.version)
        await _history(tx, row.clock_id, order.order_id, clock, "rebudgeted", actor=actor,
                       priority=priority, version=policy.version, reason=reason)
        rt.woken_after_commit(tx, clock.next_fire_at)


# -- the timer ------------------------------------------------------------------------------

async def fire_one(tx: Transaction, rt: Runtime, actor: str) -> bool:
    """Take the earliest due clock nobody else holds and fire it. False when none is due."""
    return await fire_due(tx, rt, actor, 1) > 0


async def fire_due(tx: Transaction, rt: Runtime, actor: str, limit: int) -> int:
    """Fire up to ``limit`` of the earliest due clocks nobody else holds, in this transaction;
    return how many. A batch pays the transaction, the policy read and the order read once:
    a burst of deadlines (every case filed in the morning rush) is what makes timers late."""
    t = db.sla_clocks
    rows = (await tx.session.execute(
        select(t).where(t.c.next_fire_at <= tx.now).order_by(t.c.next_fire_at).limit(limit)
        .with_for_update(skip_locked=True))).all()
    if not rows:
        return 0
    policy = await rt.sla_policy(tx.session)
    # Read without a lock: the order's own handlers lock it first and clocks second.
    o = db.orders
    orders = {r.order_id: r for r in (await tx.session.execute(
        select(o.c.order_id, o.c.department, o.c.owner, o.c.call_id)
        .where(o.c.order_id.in_({r.order_id for r in rows})))).all()}
    saved: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for row in rows:
        await _fire_row(tx, rt, actor, row, policy, orders[row.order_id], saved, history)
    # One executemany each rather than a round trip per clock: the batch's whole point.
    await tx.session.execute(
        update(t).where(t.c.clock_id == bindparam("b_clock_id"))
        .values(urged=bindparam("b_urged"), level=bindparam("b_level"),
                next_fire_at=bindparam("b_next_fire_at"), due_at=bindparam("b_due_at")), saved)
    if history:
        await tx.session.execute(db.clock_history.insert(), history)
    return len(rows)


async def _fire_row(tx: Transaction, rt: Runtime, actor: str, row: Row[Any], policy: SlaPolicy,
                    order: Row[Any], saved: list[dict[str, Any]],
                    history: list[dict[str, Any]]) -> None:
    """Fire one clock: its new state and history rows go to ``saved`` / ``history`` (written
    by the caller for the whole batch); its events are recorded now."""
    now = tx.now
    clock, fired = sla.fire(clock_of(row), now=now, policy=policy, cal=rt.calendar)
    # Firing moves only the urge, the level and the next deadlines (time run is unchanged).
    saved.append({"b_clock_id": row.clock_id, "b_urged": clock.urged, "b_level": clock.level,
                  "b_next_fire_at": clock.next_fire_at, "b_due_at": clock.due_at})
    subject = f"ticket/{row.order_id}"

    def record(event: str, level: int, due_at: datetime | None, reason: str | None) -> None:
        history.append({"clock_id": row.clock_id, "order_id": row.order_id, "name": clock.name,
                        "event": event, "actor": actor, "reason": reason,
                        "budget_seconds": clock.budget, "elapsed_seconds": clock.elapsed,
                        "priority": row.priority, "policy_version": row.policy_version,
                        "level": level, "due_at": due_at, "at": now})

    if fired.urged:
        record("urged", row.level, fired.urge_at, None)
        await tx.emit("workorder.sla.urged", {
            "order_id": row.order_id, "clock": row.name, "department": order.department,
            "owner": order.owner, "due_at": clock.due_at, "budget_seconds": clock.budget,
            "elapsed_seconds": sla.elapsed_at(clock, now, rt.calendar),
        }, subject=subject, correlationid=order.call_id)
    for level, level_due in zip(fired.levels, fired.level_at, strict=True):
        # One row per level reached, with that level's own due time: the overdue reports
        # read the level-1 row as "the deadline passed at due_at".
        record("escalated", level, level_due, policy.escalation_levels[level - 1])
        await tx.emit("workorder.sla.escalated", {
            "order_id": row.order_id, "clock": row.name, "level": level,
            "level_name": policy.escalation_levels[level - 1], "department": order.department,
            "owner": order.owner, "due_at": clock.due_at,
            "overdue_seconds": -sla.remaining(clock, now, rt.calendar),
        }, subject=subject, correlationid=order.call_id)


async def earliest_due(session: AsyncSession) -> datetime | None:
    t, c = db.sla_clocks, db.callbacks
    clocks = (await session.execute(select(func.min(t.c.next_fire_at)))).scalar()
    callbacks = (await session.execute(
        select(func.min(c.c.due_at)).where(c.c.state.in_(["pending", "dialing"])))).scalar()
    due = [d for d in (clocks, callbacks) if d is not None]
    return min(due) if due else None


def clock_view(row: Row[Any], now: datetime, cal: WorkCalendar) -> dict[str, Any]:
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
