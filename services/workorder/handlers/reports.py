"""Reports: load the facts of the cases a period touches, let ``domain/reports.py`` count.
Read-only, one session each."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from services.workorder.domain import reports as rd
from services.workorder.domain.reports import Period, Window
from services.workorder.domain.sla import SlaPolicy
from services.workorder.handlers import Runtime
from services.workorder.repository import reports as report_rows
from shared.db import Session


def _header(w: Window, now: datetime) -> dict[str, Any]:
    return {"period": w.period.value, "date": w.day, "label": w.label, "start": w.start,
            "end": w.end, "generated_at": now}


async def departments(session: Session, rt: Runtime, period: Period, day: date,
                      now: datetime) -> dict[str, Any]:
    w = rd.window(period, day, rt.calendar)
    facts = await report_rows.case_facts(session, await report_rows.touched(session, w))
    rows, total = rd.department_report(facts, w)
    return {**_header(w, now), "departments": [r.as_dict() for r in rows],
            "total": total.as_dict()}


async def overdue_bulletin(session: Session, rt: Runtime, policy: SlaPolicy,
                           period: Period, day: date, now: datetime) -> dict[str, Any]:
    w = rd.window(period, day, rt.calendar)
    as_of = min(now, w.end).astimezone(rt.calendar.tz)
    # A past period shows each clock as it stood at the period's end, from its history.
    facts = await report_rows.bulletin_clocks(session, w, as_of, with_history=as_of < now)
    departments = rd.bulletin(facts, w, as_of, rt.calendar, policy.escalation_levels)
    return {**_header(w, now), "as_of": as_of, "departments": departments,
            "total": {"cases": sum(d["cases"] for d in departments),
                      "clocks": sum(d["clocks"] for d in departments)}}


async def summary(session: Session) -> dict[str, Any]:
    return rd.summary(await report_rows.summary_counts(session))
