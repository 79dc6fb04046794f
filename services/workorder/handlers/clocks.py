"""SLA clocks: lock a case's open clocks, let ``domain/sla.py`` move them, save them in one
statement and record their history and events, inside the caller's transaction; the timer
fires the due ones in batches."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from services.workorder.domain import sla
from services.workorder.domain.sla import Clock, SlaPolicy
from services.workorder.handlers import Runtime
from services.workorder.repository import clocks as clock_rows
from services.workorder.repository import journal
from services.workorder.repository.clocks import ClockSave, clock_of
from shared.db import Row
from shared.events.workorder import SlaEscalated, SlaUrged
from shared.messaging import Transaction

# The clocks on the work itself (a reply or a callback clock runs on a callback).
WORK_CLOCKS = ("dispatch", "acceptance", "arrival", "resolution")


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
    ids = await clock_rows.insert_clocks(tx, started, order_id=order_id, round_=round_,
                                         callback_id=callback_id, version=policy.version,
                                         priority=priority, started_at=tx.now)
    for name, clock in started.items():
        _history(tx, ids[name], order_id, clock, "started", actor=actor, priority=priority,
                 version=policy.version)
        await rt.wake_after_commit(tx, clock.next_fire_at)


async def stop_clocks(tx: Transaction, rt: Runtime, order_id: str, names: Iterable[str] | None,
                      *, actor: str, reason: str | None = None,
                      callback_id: str | None = None) -> None:
    saves: list[ClockSave] = []
    for row in await clock_rows.lock_open_clocks(tx, order_id, names, callback_id):
        clock = sla.stop(clock_of(row), now=tx.now, cal=rt.calendar)
        saves.append((row, clock, row.priority, row.policy_version, tx.now))
        _history(tx, row.clock_id, order_id, clock, "stopped", actor=actor,
                 priority=row.priority, version=row.policy_version, reason=reason)
    await clock_rows.save_clocks(tx, saves)


async def pause_clocks(tx: Transaction, rt: Runtime, order_id: str, *, actor: str,
                       reason: str) -> int:
    saves: list[ClockSave] = []
    for row in await clock_rows.lock_open_clocks(tx, order_id, None):
        current = clock_of(row)
        if not current.running:
            continue
        clock = sla.pause(current, now=tx.now, cal=rt.calendar)
        saves.append((row, clock, row.priority, row.policy_version, None))
        _history(tx, row.clock_id, order_id, clock, "paused", actor=actor,
                 priority=row.priority, version=row.policy_version, reason=reason)
    await clock_rows.save_clocks(tx, saves)
    return len(saves)


async def resume_clocks(tx: Transaction, rt: Runtime, order_id: str, *, actor: str,
                        reason: str | None) -> int:
    policy = await rt.sla_policy(tx)
    saves: list[ClockSave] = []
    for row in await clock_rows.lock_open_clocks(tx, order_id, None):
        current = clock_of(row)
        if not current.paused:
            continue
        clock = sla.resume(current, now=tx.now, policy=policy, cal=rt.calendar)
        saves.append((row, clock, row.priority, row.policy_version, None))
        _history(tx, row.clock_id, order_id, clock, "resumed", actor=actor,
                 priority=row.priority, version=row.policy_version, reason=reason)
        await rt.wake_after_commit(tx, clock.next_fire_at)
    await clock_rows.save_clocks(tx, saves)
    return len(saves)


async def rebudget_clocks(tx: Transaction, rt: Runtime, order: Any, priority: str, *,
                          actor: str, reason: str | None, policy: SlaPolicy | None = None) -> None:
    """New priority or policy version: each open clock gets its new budget and keeps the time
    already run (a clock the new policy no longer has keeps its old budget)."""
    policy = policy or await rt.sla_policy(tx)
    area_class = policy.area_class(order.area)
    saves: list[ClockSave] = []
    for row in await clock_rows.lock_open_clocks(tx, order.order_id, None):
        spec = policy.timer(order.type, priority, row.name)
        budget = spec.budget(area_class) if spec is not None else row.budget_seconds
        clock = sla.rebudget(clock_of(row), budget, now=tx.now, policy=policy, cal=rt.calendar)
        saves.append((row, clock, priority, policy.version, None))
        _history(tx, row.clock_id, order.order_id, clock, "rebudgeted", actor=actor,
                 priority=priority, version=policy.version, reason=reason)
        await rt.wake_after_commit(tx, clock.next_fire_at)
    await clock_rows.save_clocks(tx, saves)


# -- the timer ------------------------------------------------------------------------------

async def fire_due(tx: Transaction, rt: Runtime, actor: str, limit: int) -> int:
    """Fire up to ``limit`` of the earliest due clocks nobody else holds, in this transaction;
    return how many. A batch pays the transaction, the policy read and the order read once:
    a burst of deadlines (every case filed in the morning rush) is what makes timers late."""
    due = await clock_rows.lock_due_clocks(tx, tx.now, limit)
    if not due:
        return 0
    policy = await rt.sla_policy(tx)
    orders = await clock_rows.orders_of_clocks(tx, (r.order_id for r in due))
    saves: list[ClockSave] = []
    for row in due:
        clock = await _fire_row(tx, rt, actor, row, policy, orders[row.order_id])
        saves.append((row, clock, row.priority, row.policy_version, None))
    await clock_rows.save_clocks(tx, saves)
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
