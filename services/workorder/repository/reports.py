"""What reports read: the facts of every case a period touches, the overdue bulletin's
candidate clocks with their history, and the summary's counts. Read-only (SQLAlchemy
Core), one session each; the counting is in ``domain/reports.py``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, union

from services.workorder import db
from services.workorder.domain.callbacks import CallbackState
from services.workorder.domain.orders import OrderAction
from services.workorder.domain.reports import (
    CallbackFacts,
    CaseFacts,
    ClockFacts,
    Resolution,
    SummaryCounts,
    Window,
)
from services.workorder.domain.sla import ClockEvent
from services.workorder.repository.clocks import clock_of
from shared.db import Session


async def touched(session: Session, w: Window) -> list[str]:
    """Ids of cases with anything in the period: created, a transition, a deadline passed,
    a callback owed or answered."""
    o, h, ch, c = db.orders, db.order_history, db.clock_history, db.callbacks
    query = union(
        select(o.c.order_id).where(o.c.created_at >= w.start, o.c.created_at < w.end),
        select(h.c.order_id).where(h.c.at >= w.start, h.c.at < w.end),
        select(ch.c.order_id).where(ch.c.event == "escalated", ch.c.level == 1,
                                    ch.c.due_at >= w.start, ch.c.due_at < w.end),
        select(c.c.order_id).where(or_(
            (c.c.created_at >= w.start) & (c.c.created_at < w.end),
            (c.c.completed_at >= w.start) & (c.c.completed_at < w.end))),
    )
    return list((await session.execute(query)).scalars())


async def case_facts(session: Session, order_ids: Sequence[str]) -> list[CaseFacts]:
    if not order_ids:
        return []
    o, h, ch, c = db.orders, db.order_history, db.clock_history, db.callbacks
    ids = list(order_ids)
    resolutions: dict[str, list[Resolution]] = {i: [] for i in ids}
    closed: dict[str, list[datetime]] = {i: [] for i in ids}
    reopened: dict[str, list[datetime]] = {i: [] for i in ids}
    overdue: dict[str, list[datetime]] = {i: [] for i in ids}
    callbacks: dict[str, list[CallbackFacts]] = {i: [] for i in ids}
    for row in (await session.execute(
            select(h.c.order_id, h.c.action, h.c.from_state, h.c.to_state, h.c.at)
            .where(h.c.order_id.in_(ids)))).all():
        if row.action == OrderAction.RESOLVE.value:
            resolutions[row.order_id].append(Resolution(row.at, row.from_state))
        elif row.action == OrderAction.REOPEN.value:
            reopened[row.order_id].append(row.at)
        if row.to_state == "closed" and row.from_state != "closed":
            closed[row.order_id].append(row.at)
    for row in (await session.execute(
            select(ch.c.order_id, ch.c.due_at)
            .where(ch.c.order_id.in_(ids), ch.c.event == "escalated", ch.c.level == 1,
                   ch.c.due_at.is_not(None)))).all():
        overdue[row.order_id].append(row.due_at)
    for row in (await session.execute(
            select(c.c.order_id, c.c.created_at, c.c.state, c.c.satisfaction, c.c.completed_at)
            .where(c.c.order_id.in_(ids)))).all():
        callbacks[row.order_id].append(CallbackFacts(row.created_at, row.state,
                                                     row.satisfaction, row.completed_at))
    out = []
    for row in (await session.execute(
            select(o.c.order_id, o.c.department, o.c.call_id, o.c.created_at)
            .where(o.c.order_id.in_(ids)).order_by(o.c.order_id))).all():
        i = row.order_id
        out.append(CaseFacts(i, row.department, row.call_id, row.created_at,
                             tuple(resolutions[i]), tuple(closed[i]), tuple(reopened[i]),
                             tuple(overdue[i]), tuple(callbacks[i])))
    return out


async def bulletin_clocks(session: Session, w: Window, as_of: datetime, *,
                          with_history: bool) -> list[ClockFacts]:
    """Candidates for the overdue bulletin: escalated clocks, and running ones past their
    deadline (a fire may be a moment behind); the domain decides which belong to the period.
    ``with_history``: each clock's history up to ``as_of``, to show it as it stood then."""
    o, t = db.orders, db.sla_clocks
    found = (await session.execute(
        select(t, o.c.type.label("order_type"), o.c.state.label("order_state"),
               o.c.department, o.c.owner)
        .join(o, o.c.order_id == t.c.order_id)
        .where(or_(t.c.level > 0, t.c.due_at < as_of),
               or_(t.c.stopped_at.is_(None), t.c.stopped_at >= w.start),
               t.c.started_at < w.end)
        .order_by(t.c.clock_id))).all()
    history: dict[int, list[ClockEvent]] = {}
    if with_history and found:
        h = db.clock_history
        for line in (await session.execute(
                select(h.c.clock_id, h.c.event, h.c.at, h.c.due_at, h.c.budget_seconds,
                       h.c.elapsed_seconds, h.c.level)
                .where(h.c.clock_id.in_([r.clock_id for r in found]),
                       or_(h.c.at <= as_of, h.c.due_at <= as_of))
                .order_by(h.c.id))).all():
            # An urge or escalation counts from when it was due, even if it fired late.
            at = line.due_at if line.event in ("urged", "escalated") and line.due_at else line.at
            history.setdefault(line.clock_id, []).append(ClockEvent(
                line.event, at, line.budget_seconds, line.elapsed_seconds, line.level))
    return [ClockFacts(r.order_id, r.order_type, r.order_state, r.department, r.owner,
                       clock_of(r), r.round, r.started_at, r.stopped_at,
                       tuple(history.get(r.clock_id, ()))) for r in found]


async def summary_counts(session: Session) -> SummaryCounts:
    o, h, c = db.orders, db.order_history, db.callbacks
    by_type_state = [(t, s, n) for t, s, n in (await session.execute(
        select(o.c.type, o.c.state, func.count()).group_by(o.c.type, o.c.state))).all()]
    resolved = (await session.execute(select(func.count()).select_from(o)
                                      .where(o.c.resolution > 0))).scalar_one()
    reopened = (await session.execute(select(func.count(func.distinct(h.c.order_id)))
                                      .where(h.c.action == OrderAction.REOPEN.value)
                                      )).scalar_one()
    callback_states: dict[str, Any] = dict((await session.execute(
        select(c.c.state, func.count()).group_by(c.c.state))).tuples().all())
    satisfaction: dict[str | None, Any] = dict((await session.execute(
        select(c.c.satisfaction, func.count())
        .where(c.c.state == CallbackState.COMPLETED.value)
        .group_by(c.c.satisfaction))).tuples().all())
    return SummaryCounts(by_type_state, resolved, reopened, callback_states, satisfaction)
