"""Report measures, sans-IO: one definition of each, used by every report that shows it.

A report covers a *period* — a local day, an ISO week (Monday to Sunday) or a calendar month in
the calendar's time zone (Asia/Shanghai) — as a half-open interval ``[start, end)`` of instants.
The edge loads the facts of every case with something in the period (:class:`CaseFacts`) and
these functions count; nothing here reads a database or a clock.

Measures, per department (the department holding the case when the report is made; a case
never dispatched has none, ``None``: the front line that took the call):

- ``created``: cases created in the period.
- ``resolved``: cases resolved (at least once) in the period.
- ``closed``: cases closed in the period.
- ``reopened``: cases reopened in the period (by a callback or a supervisor).
- ``overdue``: cases with a clock whose deadline passed in the period (the level-1 escalation,
  通报, is due then).
- callback completion: of the callbacks owed for resolutions made in the period (one per
  resolution that owes a survey), those ``completed`` plus those ``escalated`` (unreachable,
  so the case was reopened for people to handle) over all of them; ``pending`` ones count
  against the rate until they settle. ``None`` when nothing was owed.
- satisfaction: survey answers given in the period, by answer.
- first-contact resolution: cases whose *first* resolution fell in the period, filed on an
  inbound call (``call_id``) and resolved straight from ``created`` — on the originating call,
  without any dispatch; the rate is over all cases filed on a call first resolved in the period.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from services.workorder.domain.calendar import WorkCalendar
from services.workorder.domain.callbacks import ACTIVE_STATES, CallbackState
from services.workorder.domain.orders import SATISFACTIONS, OrderState
from services.workorder.domain.sla import Clock, ClockEvent, ClockState, remaining
from services.workorder.domain.sla import as_of as clock_as_of
from shared.errors import Invalid
from shared.limits import YEARS_MESSAGE, year_in_range


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Window:
    period: Period
    day: date          # the first local day of the period
    start: datetime    # inclusive, aware
    end: datetime      # exclusive, aware

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.start <= moment < self.end

    @property
    def label(self) -> str:
        """``2026-07-15``, ``2026-W29`` or ``2026-07``: for file names and headings."""
        if self.period is Period.DAY:
            return self.day.isoformat()
        if self.period is Period.WEEK:
            year, week, _ = self.day.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{self.day.year}-{self.day.month:02d}"


def window(period: Period, day: date, cal: WorkCalendar) -> Window:
    """The period containing local ``day``: that day, its Monday-to-Sunday week, its month."""
    if not year_in_range(day):
        raise Invalid("date", YEARS_MESSAGE)
    if period is Period.DAY:
        first, last = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=7)
    else:
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    tz = cal.tz
    # Local midnights, so a day is 24 h and a Shanghai report never splits at UTC midnight.
    return Window(period, first, datetime.combine(first, time(0), tzinfo=tz),
                  datetime.combine(last, time(0), tzinfo=tz))


# -- facts of a case ------------------------------------------------------------------------

@dataclass(frozen=True)
class Resolution:
    at: datetime
    from_state: str | None


@dataclass(frozen=True)
class CallbackFacts:
    created_at: datetime          # = the resolution it is owed for
    state: str                    # pending | dialing | completed | unreachable
    satisfaction: str | None
    completed_at: datetime | None


@dataclass(frozen=True)
class CaseFacts:
    order_id: str
    department: str | None
    call_id: str | None
    created_at: datetime
    resolutions: tuple[Resolution, ...] = ()
    closed: tuple[datetime, ...] = ()
    reopened: tuple[datetime, ...] = ()
    # When each of the case's clocks passed its deadline (level-1 escalation due).
    overdue: tuple[datetime, ...] = ()
    callbacks: tuple[CallbackFacts, ...] = ()


# -- the measures, one case at a time -------------------------------------------------------

def created(case: CaseFacts, w: Window) -> bool:
    return w.holds(case.created_at)


def resolved(case: CaseFacts, w: Window) -> bool:
    return any(w.holds(r.at) for r in case.resolutions)


def closed(case: CaseFacts, w: Window) -> bool:
    return any(w.holds(at) for at in case.closed)


def reopened(case: CaseFacts, w: Window) -> bool:
    return any(w.holds(at) for at in case.reopened)


def overdue(case: CaseFacts, w: Window) -> bool:
    return any(w.holds(at) for at in case.overdue)


def first_resolved_in(case: CaseFacts, w: Window) -> bool:
    first = min((r.at for r in case.resolutions), default=None)
    return w.holds(first)


def first_contact_candidate(case: CaseFacts, w: Window) -> bool:
    """The FCR denominator: filed on an inbound call, first resolved in the period."""
    return case.call_id is not None and first_resolved_in(case, w)


def first_contact_resolved(case: CaseFacts, w: Window) -> bool:
    """Resolved on the originating call: the first resolution came straight from ``created``."""
    if not first_contact_candidate(case, w):
        return False
    first = min(case.resolutions, key=lambda r: r.at)
    return first.from_state == "created"


def callbacks_owed(case: CaseFacts, w: Window) -> list[CallbackFacts]:
    return [c for c in case.callbacks if w.holds(c.created_at)]


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def callback_completion_rate(completed: int, escalated: int, owed: int) -> float | None:
    """Callbacks completed or properly escalated (unreachable → reopened) over those owed."""
    return rate(completed + escalated, owed)


# -- the department report ------------------------------------------------------------------

@dataclass
class DepartmentRow:
    department: str | None
    created: int = 0
    resolved: int = 0
    closed: int = 0
    reopened: int = 0
    overdue: int = 0
    callbacks_owed: int = 0
    callbacks_completed: int = 0
    callbacks_escalated: int = 0
    callbacks_pending: int = 0
    satisfaction: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SATISFACTIONS})
    first_contact_candidates: int = 0
    first_contact_resolved: int = 0

    @property
    def callback_completion_rate(self) -> float | None:
        return callback_completion_rate(self.callbacks_completed, self.callbacks_escalated,
                                        self.callbacks_owed)

    @property
    def first_contact_resolution_rate(self) -> float | None:
        return rate(self.first_contact_resolved, self.first_contact_candidates)

    def add(self, case: CaseFacts, w: Window) -> None:
        self.created += created(case, w)
        self.resolved += resolved(case, w)
        self.closed += closed(case, w)
        self.reopened += reopened(case, w)
        self.overdue += overdue(case, w)
        for callback in callbacks_owed(case, w):
            self.callbacks_owed += 1
            if callback.state == "completed":
                self.callbacks_completed += 1
            elif callback.state == "unreachable":
                self.callbacks_escalated += 1
            else:
                self.callbacks_pending += 1
        for callback in case.callbacks:
            if (callback.state == "completed" and w.holds(callback.completed_at)
                    and callback.satisfaction in self.satisfaction):
                self.satisfaction[callback.satisfaction] += 1
        self.first_contact_candidates += first_contact_candidate(case, w)
        self.first_contact_resolved += first_contact_resolved(case, w)

    def merge(self, other: DepartmentRow) -> None:
        for name in ("created", "resolved", "closed", "reopened", "overdue", "callbacks_owed",
                     "callbacks_completed", "callbacks_escalated", "callbacks_pending",
                     "first_contact_candidates", "first_contact_resolved"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for key, count in other.satisfaction.items():
            self.satisfaction[key] = self.satisfaction.get(key, 0) + count

    def is_empty(self) -> bool:
        return not (self.created or self.resolved or self.closed or self.reopened
                    or self.overdue or self.callbacks_owed or any(self.satisfaction.values())
                    or self.first_contact_candidates)

    def as_dict(self) -> dict[str, Any]:
        return {"department": self.department, "created": self.created,
                "resolved": self.resolved, "closed": self.closed, "reopened": self.reopened,
                "overdue": self.overdue, "callbacks_owed": self.callbacks_owed,
                "callbacks_completed": self.callbacks_completed,
                "callbacks_escalated": self.callbacks_escalated,
                "callbacks_pending": self.callbacks_pending,
                "callback_completion_rate": self.callback_completion_rate,
                "satisfaction": dict(self.satisfaction),
                "first_contact_candidates": self.first_contact_candidates,
                "first_contact_resolved": self.first_contact_resolved,
                "first_contact_resolution_rate": self.first_contact_resolution_rate}


def department_report(cases: Iterable[CaseFacts], w: Window
                      ) -> tuple[list[DepartmentRow], DepartmentRow]:
    """Rows per department (sorted, the front line ``None`` first) and the total row."""
    rows: dict[str | None, DepartmentRow] = {}
    for case in cases:
        row = rows.setdefault(case.department, DepartmentRow(case.department))
        row.add(case, w)
    kept = [r for r in rows.values() if not r.is_empty()]
    kept.sort(key=lambda r: (r.department is not None, r.department or ""))
    total = DepartmentRow(None)
    for row in kept:
        total.merge(row)
    return kept, total


DEPARTMENT_COLUMNS = (
    "department", "created", "resolved", "closed", "reopened", "overdue", "callbacks_owed",
    "callbacks_completed", "callbacks_escalated", "callbacks_pending",
    "callback_completion_rate", *(f"satisfaction_{s}" for s in SATISFACTIONS),
    "first_contact_candidates", "first_contact_resolved", "first_contact_resolution_rate")


def department_csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k != "satisfaction"}
    for key, count in row["satisfaction"].items():
        flat[f"satisfaction_{key}"] = count
    return flat


# -- the overdue bulletin (通报) ------------------------------------------------------------

@dataclass(frozen=True)
class ClockFacts:
    """One clock of a case, as stored, plus what the bulletin prints about its case."""

    order_id: str
    order_type: str
    order_state: str
    department: str | None
    owner: str | None
    clock: Clock
    round: int
    started_at: datetime
    stopped_at: datetime | None
    # The clock's history, so a past period's bulletin shows it as it stood then.
    history: tuple[ClockEvent, ...] = ()


def overdue_seconds(clock: Clock, as_of: datetime, cal: WorkCalendar) -> float:
    """How far past its budget the clock is at ``as_of`` (seconds of its basis; 0 if not)."""
    return max(0.0, -remaining(clock, as_of, cal))


def in_bulletin(facts: ClockFacts, w: Window, as_of: datetime, cal: WorkCalendar) -> bool:
    """Overdue at some moment of the period: past its budget by ``as_of`` (the period's end, or
    now for the current period) and not stopped before the period began. A clock escalated
    (level ≥ 1) is overdue even when paused or stopped since. ``facts.clock`` is the clock as
    it stood at ``as_of``."""
    if facts.stopped_at is not None and facts.stopped_at < w.start:
        return False
    if facts.started_at >= w.end:
        return False
    return facts.clock.level > 0 or overdue_seconds(facts.clock, as_of, cal) > 0


def bulletin_item(facts: ClockFacts, as_of: datetime, cal: WorkCalendar,
                  level_names: tuple[str, ...]) -> dict[str, Any]:
    clock = facts.clock
    level = clock.level
    return {"department": facts.department, "order_id": facts.order_id,
            "type": facts.order_type, "case_state": facts.order_state, "owner": facts.owner,
            "clock": clock.name, "round": facts.round, "clock_state": clock.state.value,
            "basis": clock.basis.value, "budget_seconds": clock.budget,
            "due_at": clock.due_at,
            "overdue_seconds": round(overdue_seconds(clock, as_of, cal), 3),
            "level": level,
            "level_name": level_names[level - 1] if 0 < level <= len(level_names) else None,
            "still_running": clock.state is ClockState.RUNNING}


def bulletin(clocks: Iterable[ClockFacts], w: Window, as_of: datetime, cal: WorkCalendar,
             level_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per department (front line first), the overdue clocks, most overdue first."""
    by_department: dict[str | None, list[dict[str, Any]]] = {}
    for stored in clocks:
        facts = replace(stored, clock=clock_as_of(stored.clock, stored.history, as_of))
        if in_bulletin(facts, w, as_of, cal):
            by_department.setdefault(facts.department, []).append(
                bulletin_item(facts, as_of, cal, level_names))
    out = []
    for department in sorted(by_department, key=lambda d: (d is not None, d or "")):
        items = sorted(by_department[department],
                       key=lambda i: (-i["level"], -i["overdue_seconds"], i["order_id"]))
        levels: dict[str, int] = {}
        for item in items:
            levels[str(item["level"])] = levels.get(str(item["level"]), 0) + 1
        out.append({"department": department, "cases": len({i["order_id"] for i in items}),
                    "clocks": len(items), "by_level": levels, "items": items})
    return out


BULLETIN_COLUMNS = ("department", "order_id", "type", "case_state", "owner", "clock", "round",
                    "clock_state", "basis", "budget_seconds", "due_at", "overdue_seconds",
                    "level", "level_name", "still_running")



# -- the summary ----------------------------------------------------------------------------

@dataclass(frozen=True)
class SummaryCounts:
    """Counts over every case and callback stored, as grouped by the database."""

    by_type_state: list[tuple[str, str, int]]  # (order type, state, cases)
    resolved: int  # cases resolved at least once
    reopened: int  # cases reopened at least once
    callback_states: Mapping[str, int]
    satisfaction: Mapping[str | None, int]  # answers of completed callbacks


def summary(counts: SummaryCounts) -> dict[str, Any]:
    by_type: dict[str, dict[str, int]] = {}
    by_state: dict[str, int] = {}
    for order_type, state, count in counts.by_type_state:
        by_type.setdefault(order_type, {})[state] = count
        by_state[state] = by_state.get(state, 0) + count
    states = counts.callback_states
    completed = states.get(CallbackState.COMPLETED.value, 0)
    unreachable = states.get(CallbackState.UNREACHABLE.value, 0)
    pending = sum(states.get(s.value, 0) for s in ACTIVE_STATES)
    callbacks_total = completed + unreachable + pending
    return {
        "orders": {"total": sum(by_state.values()), "by_type": by_type, "by_state": by_state},
        "resolved": counts.resolved,
        "closed": by_state.get(OrderState.CLOSED.value, 0),
        "reopened": counts.reopened,
        "callbacks": {"total": callbacks_total, "completed": completed,
                      "unreachable": unreachable, "pending": pending},
        # One callback is owed per resolution, so resolutions are the denominator.
        "callback_completion_rate": callback_completion_rate(completed, unreachable,
                                                             callbacks_total),
        "satisfaction": {s: counts.satisfaction.get(s, 0) for s in SATISFACTIONS},
    }


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


def to_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """RFC 4180 (CRLF) with a UTF-8 byte-order mark: Excel, which the bulletin usually lands
    in, otherwise reads department names in Chinese as mojibake."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return "\ufeff" + buffer.getvalue()


def departments_csv(report: Mapping[str, Any]) -> str:
    rows = [department_csv_row(r) for r in report["departments"]]
    rows.append({**department_csv_row(report["total"]), "department": "(total)"})
    return to_csv(DEPARTMENT_COLUMNS, rows)


def bulletin_csv(report: Mapping[str, Any]) -> str:
    return to_csv(BULLETIN_COLUMNS, (item for d in report["departments"] for item in d["items"]))
