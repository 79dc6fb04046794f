"""SLA policies and clocks, sans-IO.

A case runs several clocks (acceptance, dispatch, arrival, resolution, reply, callback). Each
clock has a *budget* in seconds of its basis — wall (``calendar``) seconds, or seconds on working
days (``working``) — and accumulates ``elapsed`` while running. Every deadline of a clock is a
point in elapsed time: the urge (催办) at ``urge_share * budget``, overdue and the first
escalation (通报) at ``budget``, each further level ``escalation_step * budget`` later. The clock
turns the next such point into a wall time, ``next_fire_at``, which the edge persists and a
timer loop fires.

Because progress is kept as elapsed time, pausing (waiting for the customer), a new priority or
a new policy version only changes what the remaining budget is, never the time already run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from services.workorder.domain.calendar import WorkCalendar
from shared.errors import IllegalTransition, Invalid

TIMERS = ("dispatch", "acceptance", "arrival", "resolution", "reply", "callback")
PRIORITIES = ("normal", "urgent")
AREA_CLASSES = ("urban", "rural", "remote")
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "working_days": 86400}


class Basis(StrEnum):
    CALENDAR = "calendar"
    WORKING = "working"


class ClockState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class TimerSpec:
    basis: Basis
    # Seconds of budget per area class ("*" applies to any class not listed).
    budgets: Mapping[str, float]

    def budget(self, area_class: str) -> float:
        return self.budgets.get(area_class, self.budgets.get("*", next(iter(self.budgets.values()))))


@dataclass(frozen=True)
class SlaPolicy:
    version: int
    urge_share: float
    escalation_levels: tuple[str, ...]
    escalation_step: float
    default_area_class: str
    area_classes: tuple[tuple[str, str], ...]
    # (type, priority) -> timer name -> spec; "*" type is the default for all types.
    timers: Mapping[tuple[str, str], Mapping[str, TimerSpec | None]]
    document: Mapping[str, Any]

    def area_class(self, area: str | None) -> str:
        for pattern, cls in self.area_classes:
            if area is not None and fnmatch.fnmatchcase(area, pattern):
                return cls
        return self.default_area_class

    def timer(self, order_type: str, priority: str, name: str) -> TimerSpec | None:
        """Most specific wins: (type, priority), (type, normal), (*, priority), (*, normal)."""
        for key in ((order_type, priority), (order_type, "normal"), ("*", priority), ("*", "normal")):
            timers = self.timers.get(key)
            if timers is not None and name in timers:
                return timers[name]
        return None


def _spec(raw: Any, loc: str) -> TimerSpec | None:
    if raw is None:
        return None  # explicitly switched off for this type / priority
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise Invalid(loc, "a timer is one of {seconds|minutes|hours|working_days: N} or null")
    unit, value = next(iter(raw.items()))
    if unit not in UNITS:
        raise Invalid(loc, f"unknown unit {unit!r}; use one of {sorted(UNITS)}")
    values = value if isinstance(value, Mapping) else {"*": value}
    budgets: dict[str, float] = {}
    for cls, amount in values.items():
        if cls != "*" and cls not in AREA_CLASSES:
            raise Invalid(f"{loc}.{unit}.{cls}", f"area class must be one of {AREA_CLASSES}")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            raise Invalid(f"{loc}.{unit}", "a timer's amount must be a positive number")
        budgets[cls] = float(amount) * UNITS[unit]
    return TimerSpec(Basis.WORKING if unit == "working_days" else Basis.CALENDAR, budgets)


def _timers(raw: Any, loc: str) -> dict[str, TimerSpec | None]:
    if not isinstance(raw, Mapping):
        raise Invalid(loc, "expected a mapping of timer name to timer")
    out = {}
    for name, spec in raw.items():
        if name not in TIMERS:
            raise Invalid(f"{loc}.{name}", f"unknown timer; use one of {TIMERS}")
        out[name] = _spec(spec, f"{loc}.{name}")
    return out


def parse_policy(doc: Mapping[str, Any], version: int, known_types: tuple[str, ...]) -> SlaPolicy:
    """Validate a policy document (see the README for the format); :class:`Invalid` names the
    offending field with a dotted path."""
    allowed = {"urge_share", "escalation_levels", "escalation_step", "area_classes",
               "default_area_class", "defaults", "types", "description"}
    for key in doc:
        if key not in allowed:
            raise Invalid(str(key), "unknown field")
    urge = doc.get("urge_share", 0.8)
    if isinstance(urge, bool) or not isinstance(urge, int | float) or not 0 < urge < 1:
        raise Invalid("urge_share", "urge_share must be between 0 and 1 (exclusive)")
    levels = doc.get("escalation_levels", ["team_lead", "department_head", "center"])
    if not isinstance(levels, list) or not levels or not all(isinstance(x, str) and x for x in levels):
        raise Invalid("escalation_levels", "a non-empty list of level names")
    step = doc.get("escalation_step", 0.5)
    if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
        raise Invalid("escalation_step", "escalation_step must be a positive share of the budget")
    default_cls = doc.get("default_area_class", "urban")
    if default_cls not in AREA_CLASSES:
        raise Invalid("default_area_class", f"one of {AREA_CLASSES}")
    classes: list[tuple[str, str]] = []
    raw_classes = doc.get("area_classes", {})
    if not isinstance(raw_classes, Mapping):
        raise Invalid("area_classes", "a mapping of area pattern to class")
    for pattern, cls in raw_classes.items():
        if cls not in AREA_CLASSES:
            raise Invalid(f"area_classes.{pattern}", f"one of {AREA_CLASSES}")
        classes.append((str(pattern), cls))
    timers: dict[tuple[str, str], Mapping[str, TimerSpec | None]] = {
        ("*", "normal"): _timers(doc.get("defaults", {}), "defaults")}
    raw_types = doc.get("types", {})
    if not isinstance(raw_types, Mapping):
        raise Invalid("types", "a mapping of case type to priorities")
    for order_type, by_priority in raw_types.items():
        if order_type not in known_types:
            raise Invalid(f"types.{order_type}", f"unknown case type; use one of {known_types}")
        if not isinstance(by_priority, Mapping):
            raise Invalid(f"types.{order_type}", "a mapping of priority to timers")
        for priority, raw in by_priority.items():
            if priority not in PRIORITIES:
                raise Invalid(f"types.{order_type}.{priority}", f"priority one of {PRIORITIES}")
            timers[(order_type, priority)] = _timers(raw, f"types.{order_type}.{priority}")
    return SlaPolicy(version, float(urge), tuple(levels), float(step), default_cls,
                     tuple(classes), timers, dict(doc))


# -- clocks ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Clock:
    name: str
    basis: Basis
    budget: float
    state: ClockState = ClockState.RUNNING
    elapsed: float = 0.0
    running_since: datetime | None = None
    urged: bool = False
    level: int = 0
    next_fire_at: datetime | None = None
    due_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.state is ClockState.RUNNING

    @property
    def paused(self) -> bool:
        return self.state is ClockState.PAUSED


@dataclass(frozen=True)
class Fired:
    """What a clock's timer produced: an urge, and/or escalations to these levels."""

    urged: bool
    levels: tuple[int, ...]
    threshold_at: datetime | None
    # When each point fired now was due: the urge's, and one per level in ``levels`` (a late
    # fire catches up several; each keeps its own due time for the audit and the reports).
    urge_at: datetime | None = None
    level_at: tuple[datetime, ...] = ()


def _measure(cal: WorkCalendar, basis: Basis, start: datetime, end: datetime) -> float:
    if end <= start:
        return 0.0
    if basis is Basis.CALENDAR:
        return (end - start).total_seconds()
    return cal.working_seconds(start, end)


def _advance(cal: WorkCalendar, basis: Basis, start: datetime, seconds: float) -> datetime:
    if basis is Basis.CALENDAR:
        return start + timedelta(seconds=max(0.0, seconds))
    return cal.add_working_seconds(start, seconds)


def elapsed_at(clock: Clock, now: datetime, cal: WorkCalendar) -> float:
    if clock.state is not ClockState.RUNNING or clock.running_since is None:
        return clock.elapsed
    return clock.elapsed + _measure(cal, clock.basis, clock.running_since, now)


def _thresholds(clock: Clock, policy: SlaPolicy) -> list[tuple[float, str]]:
    """Pending points in elapsed time: ("urge"), then ("level") for each escalation left."""
    points: list[tuple[float, str]] = []
    if not clock.urged:
        points.append((policy.urge_share * clock.budget, "urge"))
    for level in range(clock.level + 1, len(policy.escalation_levels) + 1):
        points.append((clock.budget * (1 + (level - 1) * policy.escalation_step), "level"))
    return points


def _plan(clock: Clock, policy: SlaPolicy, cal: WorkCalendar) -> Clock:
    if clock.state is not ClockState.RUNNING or clock.running_since is None:
        return replace(clock, next_fire_at=None, due_at=None)
    since, done = clock.running_since, clock.elapsed
    due = _advance(cal, clock.basis, since, clock.budget - done)
    points = _thresholds(clock, policy)
    nxt = (_advance(cal, clock.basis, since, min(p for p, _ in points) - done) if points else None)
    return replace(clock, next_fire_at=nxt, due_at=due)


def start(name: str, spec: TimerSpec, area_class: str, *, now: datetime, policy: SlaPolicy,
          cal: WorkCalendar) -> Clock:
    clock = Clock(name=name, basis=spec.basis, budget=spec.budget(area_class), running_since=now)
    return _plan(clock, policy, cal)


def _fold(clock: Clock, now: datetime, cal: WorkCalendar) -> Clock:
    """Bank the running segment into ``elapsed`` and restart the segment at ``now``."""
    if clock.state is not ClockState.RUNNING:
        return clock
    return replace(clock, elapsed=elapsed_at(clock, now, cal), running_since=now)


def pause(clock: Clock, *, now: datetime, cal: WorkCalendar) -> Clock:
    if clock.state is not ClockState.RUNNING:
        raise IllegalTransition("clock", clock.state.value, "pause", _clock_actions(clock))
    folded = _fold(clock, now, cal)
    return replace(folded, state=ClockState.PAUSED, running_since=None, next_fire_at=None,
                   due_at=None)


def resume(clock: Clock, *, now: datetime, policy: SlaPolicy, cal: WorkCalendar) -> Clock:
    if clock.state is not ClockState.PAUSED:
        raise IllegalTransition("clock", clock.state.value, "resume", _clock_actions(clock))
    return _plan(replace(clock, state=ClockState.RUNNING, running_since=now), policy, cal)


def stop(clock: Clock, *, now: datetime, cal: WorkCalendar) -> Clock:
    if clock.state is ClockState.STOPPED:
        return clock
    folded = _fold(clock, now, cal)
    return replace(folded, state=ClockState.STOPPED, running_since=None, next_fire_at=None)


def rebudget(clock: Clock, budget: float, *, now: datetime, policy: SlaPolicy,
             cal: WorkCalendar) -> Clock:
    """A new priority or policy: new budget, same time already run, same urges and levels."""
    if clock.state is ClockState.STOPPED:
        return clock
    return _plan(replace(_fold(clock, now, cal), budget=budget), policy, cal)


def fire(clock: Clock, *, now: datetime, policy: SlaPolicy, cal: WorkCalendar
         ) -> tuple[Clock, Fired]:
    """The clock's timer is due: urge and/or escalate for every point its elapsed time passed."""
    if clock.state is not ClockState.RUNNING or clock.next_fire_at is None or clock.next_fire_at > now:
        raise IllegalTransition("clock", clock.state.value, "fire", _clock_actions(clock))
    elapsed = elapsed_at(clock, now, cal)
    urged, level, levels = clock.urged, clock.level, []
    first: float | None = None
    since = clock.running_since
    assert since is not None  # running

    def at(point: float) -> datetime:
        return _advance(cal, clock.basis, since, point - clock.elapsed)

    urge_at: datetime | None = None
    level_at: list[datetime] = []
    for point, kind in _thresholds(clock, policy):
        if elapsed + 1e-6 < point:
            continue
        first = point if first is None else min(first, point)
        if kind == "urge":
            urged = True
            urge_at = at(point)
        else:
            level += 1
            levels.append(level)
            level_at.append(at(point))
    after = _plan(replace(clock, urged=urged, level=level), policy, cal)
    threshold_at = at(first) if first is not None else None
    return after, Fired(urged and not clock.urged, tuple(levels), threshold_at,
                        urge_at if urged and not clock.urged else None, tuple(level_at))


@dataclass(frozen=True)
class ClockEvent:
    """One line of a clock's history as stored: the event and the clock's figures after it."""

    event: str  # started, paused, resumed, rebudgeted, urged, escalated, stopped
    at: datetime
    budget: float
    elapsed: float
    level: int


def as_of(clock: Clock, history: Iterable[ClockEvent], when: datetime) -> Clock:
    """The clock as it stood at ``when``, replayed from its history (events after ``when``
    are ignored). Without history before ``when`` the clock as stored is the answer.

    A history line's ``elapsed`` is the time banked when its segment began; only pause,
    resume, rebudget and stop bank the running segment, so urges and escalations do not move
    the segment's start."""
    state: Clock | None = None
    for line in sorted(history, key=lambda e: e.at):
        if line.at > when:
            break
        if line.event == "started" or state is None:
            state = replace(clock, state=ClockState.RUNNING, elapsed=line.elapsed,
                            running_since=line.at, budget=line.budget, level=line.level,
                            urged=False, next_fire_at=None)
        elif line.event == "paused":
            state = replace(state, state=ClockState.PAUSED, elapsed=line.elapsed,
                            running_since=None)
        elif line.event == "resumed":
            state = replace(state, state=ClockState.RUNNING, elapsed=line.elapsed,
                            running_since=line.at)
        elif line.event == "rebudgeted":
            # A running clock banks its segment; a paused one stays paused.
            running = state.state is ClockState.RUNNING
            state = replace(state, elapsed=line.elapsed, budget=line.budget,
                            running_since=line.at if running else None)
        elif line.event == "stopped":
            state = replace(state, state=ClockState.STOPPED, elapsed=line.elapsed,
                            running_since=None)
        elif line.event in ("urged", "escalated"):
            state = replace(state, urged=True, level=max(state.level, line.level))
    return clock if state is None else state


def remaining(clock: Clock, now: datetime, cal: WorkCalendar) -> float:
    """Budget left in seconds of the clock's basis (negative when overdue)."""
    return clock.budget - elapsed_at(clock, now, cal)


def _clock_actions(clock: Clock) -> list[str]:
    return {ClockState.RUNNING: ["pause", "stop", "fire"], ClockState.PAUSED: ["resume", "stop"],
            ClockState.STOPPED: []}[clock.state]
