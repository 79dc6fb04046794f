"""Reports at the edge: load the facts of the cases a period touches, let
``domain/reports.py`` count, and shape JSON or CSV. Read-only, one session each."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db
from services.workorder.clocks import Runtime, clock_of
from services.workorder.domain import callbacks as cbd
from services.workorder.domain import orders as od
from services.workorder.domain import reports as rd
from services.workorder.domain.callbacks import CallbackState
from services.workorder.domain.orders import OrderAction, OrderState
from services.workorder.domain.reports import (
    CallbackFacts,
    CaseFacts,
    ClockFacts,
    Period,
    Resolution,
    Window,
    callback_completion_rate,
)
from services.workorder.domain.sla import ClockEvent, SlaPolicy


async def _touched(session: AsyncSession, w: Window) -> list[str]:
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


async def case_facts(session: AsyncSession, order_ids: Sequence[str]) -> list[CaseFacts]:
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


def _header(w: Window, now: datetime) -> dict[str, Any]:
    return {"period": w.period.value, "date": w.day, "label": w.label, "start": w.start,
            "end": w.end, "generated_at": now}


async def departments(session: AsyncSession, rt: Runtime, period: Period, day: date,
                      now: datetime) -> dict[str, Any]:
    w = rd.window(period, day, rt.calendar)
    facts = await case_facts(session, await _touched(session, w))
    rows, total = rd.department_report(facts, w)
    return {**_header(w, now), "departments": [r.as_dict() for r in rows],
            "total": total.as_dict()}


async def overdue_bulletin(session: AsyncSession, rt: Runtime, policy: SlaPolicy,
                           period: Period, day: date, now: datetime) -> dict[str, Any]:
    w = rd.window(period, day, rt.calendar)
    as_of = min(now, w.end).astimezone(rt.calendar.tz)
    o, t = db.orders, db.sla_clocks
    # Candidates: escalated clocks, and running ones past their deadline (a fire may be a
    # moment behind); the domain decides which belong to this period.
    rows = (await session.execute(
        select(t, o.c.type.label("order_type"), o.c.state.label("order_state"),
               o.c.department, o.c.owner)
        .join(o, o.c.order_id == t.c.order_id)
        .where(or_(t.c.level > 0, t.c.due_at < as_of),
               or_(t.c.stopped_at.is_(None), t.c.stopped_at >= w.start),
               t.c.started_at < w.end)
        .order_by(t.c.clock_id))).all()
    history: dict[int, list[ClockEvent]] = {}
    if as_of < now and rows:
        # A past period: each clock as it stood at the period's end, from its history.
        h = db.clock_history
        for line in (await session.execute(
                select(h.c.clock_id, h.c.event, h.c.at, h.c.due_at, h.c.budget_seconds,
                       h.c.elapsed_seconds, h.c.level)
                .where(h.c.clock_id.in_([r.clock_id for r in rows]),
                       or_(h.c.at <= as_of, h.c.due_at <= as_of))
                .order_by(h.c.id))).all():
            # An urge or escalation counts from when it was due, even if it fired late.
            at = line.due_at if line.event in ("urged", "escalated") and line.due_at else line.at
            history.setdefault(line.clock_id, []).append(ClockEvent(
                line.event, at, line.budget_seconds, line.elapsed_seconds, line.level))
    facts = [ClockFacts(r.order_id, r.order_type, r.order_state, r.department, r.owner,
                        clock_of(r), r.round, r.started_at, r.stopped_at,
                        tuple(history.get(r.clock_id, ()))) for r in rows]
    departments = rd.bulletin(facts, w, as_of, rt.calendar, policy.escalation_levels)
    return {**_header(w, now), "as_of": as_of, "departments": departments,
            "total": {"cases": sum(d["cases"] for d in departments),
                      "clocks": sum(d["clocks"] for d in departments)}}


# -- CSV ------------------------------------------------------------------------------------

def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def to_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """RFC 4180 (CRLF) with a UTF-8 byte-order mark: Excel, which the bulletin usually lands
    in, otherwise reads department names in Chinese as mojibake."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return "\ufeff" + buffer.getvalue()


def departments_csv(report: dict[str, Any]) -> str:
    rows = [rd.department_csv_row(r) for r in report["departments"]]
    rows.append({**rd.department_csv_row(report["total"]), "department": "(total)"})
    return to_csv(rd.DEPARTMENT_COLUMNS, rows)


def bulletin_csv(report: dict[str, Any]) -> str:
    return to_csv(rd.BULLETIN_COLUMNS,
                  (item for d in report["departments"] for item in d["items"]))


async def summary(session: AsyncSession) -> dict[str, Any]:
    o, h, c = db.orders, db.order_history, db.callbacks
    by_type: dict[str, dict[str, int]] = {}
    by_state: dict[str, int] = {}
    total = 0
    for order_type, state, count in (await session.execute(
            select(o.c.type, o.c.state, func.count()).group_by(o.c.type, o.c.state))).all():
        by_type.setdefault(order_type, {})[state] = count
        by_state[state] = by_state.get(state, 0) + count
        total += count
    resolved = (await session.execute(select(func.count()).select_from(o)
                                      .where(o.c.resolution > 0))).scalar_one()
    reopened = (await session.execute(select(func.count(func.distinct(h.c.order_id)))
                                      .where(h.c.action == od.OrderAction.REOPEN.value)
                                      )).scalar_one()
    callback_states = dict((await session.execute(
        select(c.c.state, func.count()).group_by(c.c.state))).tuples().all())
    satisfaction = {s: 0 for s in od.SATISFACTIONS}
    for value, count in (await session.execute(
            select(c.c.satisfaction, func.count()).where(c.c.state == CallbackState.COMPLETED.value)
            .group_by(c.c.satisfaction))).all():
        if value in satisfaction:
            satisfaction[value] = count
    completed = callback_states.get(CallbackState.COMPLETED.value, 0)
    unreachable = callback_states.get(CallbackState.UNREACHABLE.value, 0)
    pending = sum(callback_states.get(s.value, 0) for s in cbd.ACTIVE_STATES)
    callbacks_total = completed + unreachable + pending
    return {
        "orders": {"total": total, "by_type": by_type, "by_state": by_state},
        "resolved": resolved,
        "closed": by_state.get(OrderState.CLOSED.value, 0),
        "reopened": reopened,
        "callbacks": {"total": callbacks_total, "completed": completed,
                      "unreachable": unreachable, "pending": pending},
        # One callback is owed per resolution, so resolutions are the denominator.
        "callback_completion_rate": callback_completion_rate(completed, unreachable,
                                                             callbacks_total),
        "satisfaction": satisfaction,
    }
