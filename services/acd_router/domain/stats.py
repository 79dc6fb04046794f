"""Statistics per queue, skill and agent over a time range, from what the ACD persists.

Sans-IO: the edge loads rows for the range and passes them in; every measure comes from
``shared.measures`` so the real-time stream and the historical reports agree (DESIGN §8).
Times are POSIX seconds.

Attribution: a call counts in the range in which it *left the queue* (answered, abandoned or
turned away), so every counted call is settled and a range's numbers never change after it
closes, except AHT, which includes a call's wrap-up once it has ended. Calls still waiting at
the range's end appear only as ``waiting_now`` / ``longest_waiting_now``. Occupancy is agent
time reserved, on call or in wrap-up over time logged in, within the range. A ring no answer
is a reservation that rang out or failed (not because the caller left).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.errors import Invalid
from shared.limits import YEARS_MESSAGE, year_in_range
from shared.measures import CallFacts, Counters, measures

BUSY_STATES = frozenset({"reserved", "on_call", "wrap_up"})
RING_NO_ANSWER_OUTCOMES = frozenset({"ring_failed", "expired"})

# The sliding windows and the intervals a range can be asked as (seconds of each window).
LENGTHS = {"5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400}
Window = Literal["5m", "15m", "30m", "1h", "4h", "1d"]
Interval = Literal["15m", "1h", "1d"]


@dataclass(frozen=True)
class CallRow:
    call_id: str
    queue: str
    state: str          # waiting, reserved, answered, abandoned, rejected
    enqueued_at: float
    agent_id: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    wrapup_ended_at: float | None = None


@dataclass(frozen=True)
class StateRow:
    agent_id: str
    at: float
    previous: str
    state: str


@dataclass(frozen=True)
class ReservationRow:
    agent_id: str | None
    queue: str
    decided_at: float
    outcome: str
    outcome_reason: str | None = None
    outcome_at: float | None = None


@dataclass(frozen=True)
class Range:
    start: float
    end: float

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, int | float) and self.start <= moment < self.end


def posix(moment: datetime | None) -> float | None:
    """A row's moment as the POSIX seconds the measures take (a missing one stays None)."""
    return None if moment is None else moment.timestamp()


def resolve_range(now: datetime, zone: ZoneInfo, window: Window | None,
                  interval: Interval | None, start: datetime | None
                  ) -> tuple[Range, dict[str, Any]]:
    """A sliding window ending now, or one interval (15 min, hour, day in the ACD's time
    ``zone``) containing ``start`` (default: the current one); with what the answer says
    about it."""
    if window is not None and (interval is not None or start is not None):
        raise Invalid("window", "give either window or interval (with start), not both")
    if interval is None:
        length = LENGTHS[window or "15m"]
        begin = now - timedelta(seconds=length)
        return Range(begin.timestamp(), now.timestamp()), {
            "kind": "window", "length": window or "15m", "start": begin, "end": now}
    if start is not None and start.tzinfo is None:
        raise Invalid("start", "start needs a time zone offset")
    if start is not None and not year_in_range(start):
        raise Invalid("start", YEARS_MESSAGE)
    local = (start or now).astimezone(zone)
    if interval == "1d":
        # Wall-clock days in the ACD's zone (a DST day is 23 or 25 hours long).
        begin = datetime.combine(local.date(), time(0), tzinfo=zone)
        end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=zone)
    else:
        minutes = 15 if interval == "15m" else 60
        begin = local.replace(minute=local.minute - local.minute % minutes, second=0,
                              microsecond=0)
        end = begin + timedelta(minutes=minutes)
    begin_utc, end_utc = begin.astimezone(UTC), end.astimezone(UTC)
    return Range(begin_utc.timestamp(), end_utc.timestamp()), {
        "kind": "interval", "length": interval, "start": begin_utc, "end": end_utc,
        "complete": end_utc <= now}


def settled(call: CallRow) -> tuple[float, CallFacts] | None:
    """When the call left the queue and what it counts as; None while it is still queued."""
    if call.state == "answered" and call.answered_at is not None:
        handle = (call.wrapup_ended_at - call.answered_at
                  if call.wrapup_ended_at is not None else None)
        return call.answered_at, CallFacts("answered", call.answered_at - call.enqueued_at,
                                           handle)
    if call.ended_at is None:
        return None
    if call.state == "abandoned":
        return call.ended_at, CallFacts("abandoned", call.ended_at - call.enqueued_at)
    return call.ended_at, CallFacts("other")


def agent_time(changes: Iterable[StateRow], span: Range) -> dict[str, tuple[float, float]]:
    """Per agent, (busy seconds, logged-in seconds) within the range. ``changes`` must hold
    each agent's last change before the range (its state at the start) and those inside."""
    by_agent: dict[str, list[StateRow]] = defaultdict(list)
    for change in changes:
        by_agent[change.agent_id].append(change)
    out = {}
    for agent_id, rows in by_agent.items():
        rows.sort(key=lambda r: r.at)
        before = [r for r in rows if r.at < span.start]
        state = before[-1].state if before else rows[0].previous
        since = span.start
        busy = staffed = 0.0
        for row in rows:
            if row.at < span.start:
                continue
            if row.at >= span.end:
                break
            busy, staffed = _accrue(state, row.at - since, busy, staffed)
            state, since = row.state, row.at
        busy, staffed = _accrue(state, span.end - since, busy, staffed)
        out[agent_id] = (busy, staffed)
    return out


def _accrue(state: str, seconds: float, busy: float, staffed: float) -> tuple[float, float]:
    if state != "logged_out":
        staffed += seconds
        if state in BUSY_STATES:
            busy += seconds
    return busy, staffed


def ring_no_answer(row: ReservationRow, span: Range) -> bool:
    return (row.outcome in RING_NO_ANSWER_OUTCOMES and row.outcome_reason != "caller_gone"
            and row.outcome_at in span)


def _view(counters: Counters, **extra: Any) -> dict[str, Any]:
    m = measures(counters).as_dict(4)
    m.pop("threshold")
    m.pop("short_abandon")
    return {**extra, **m}


def queue_stats(calls: Iterable[CallRow], reservations: Iterable[ReservationRow],
                span: Range, *, threshold: float, queues: Iterable[str] = ()
                ) -> dict[str, dict[str, Any]]:
    counters: dict[str, Counters] = defaultdict(lambda: Counters(threshold=threshold))
    waiting: dict[str, list[float]] = defaultdict(list)
    rna: dict[str, int] = defaultdict(int)
    for name in queues:
        # A configured queue with no calls still reports (zeros, not absence).
        counters.setdefault(name, Counters(threshold=threshold))
    for call in calls:
        found = settled(call)
        if found is not None and found[0] in span:
            counters[call.queue].add(found[1])
        elif call.enqueued_at < span.end and (found is None or found[0] >= span.end):
            waiting[call.queue].append(span.end - call.enqueued_at)
            counters.setdefault(call.queue, Counters(threshold=threshold))
    for row in reservations:
        if ring_no_answer(row, span):
            rna[row.queue] += 1
            counters.setdefault(row.queue, Counters(threshold=threshold))
    return {name: _view(c, queue=name, ring_no_answer=rna[name],
                        waiting_now=len(waiting[name]),
                        longest_waiting_now=round(max(waiting[name], default=0.0), 3))
            for name, c in sorted(counters.items())}


def skill_stats(calls: Iterable[CallRow], reservations: Iterable[ReservationRow],
                changes: Iterable[StateRow], span: Range, *, threshold: float,
                queue_skills: Mapping[str, Iterable[str]],
                agent_skills: Mapping[str, Iterable[str]]) -> dict[str, dict[str, Any]]:
    """A skill's calls are those of the queues requiring it; its occupancy is that of the
    agents holding it."""
    calls, reservations = list(calls), list(reservations)
    by_queue = queue_stats(calls, reservations, span, threshold=threshold)
    per_queue: dict[str, Counters] = defaultdict(lambda: Counters(threshold=threshold))
    for call in calls:
        found = settled(call)
        if found is not None and found[0] in span:
            per_queue[call.queue].add(found[1])
    skills: dict[str, Counters] = defaultdict(lambda: Counters(threshold=threshold))
    rna: dict[str, int] = defaultdict(int)
    for queue, needed in queue_skills.items():
        for skill in needed:
            skills[skill] = skills[skill].merge(
                per_queue.get(queue, Counters(threshold=threshold)))
            rna[skill] += by_queue.get(queue, {}).get("ring_no_answer", 0)
    times = agent_time(changes, span)
    for agent_id, held in agent_skills.items():
        busy, staffed = times.get(agent_id, (0.0, 0.0))
        for skill in held:
            skills[skill].add_agent_time(busy=busy, staffed=staffed)
    return {name: _view(c, skill=name, ring_no_answer=rna[name])
            for name, c in sorted(skills.items())}


def agent_stats(calls: Iterable[CallRow], reservations: Iterable[ReservationRow],
                changes: Iterable[StateRow], span: Range, *, threshold: float,
                agents: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Per agent: offered (reservations made to them), answered, ASA and AHT of the calls
    they answered, occupancy, ring no answer."""
    reservations = list(reservations)
    counters: dict[str, Counters] = defaultdict(lambda: Counters(threshold=threshold))
    offered: dict[str, int] = defaultdict(int)
    rna: dict[str, int] = defaultdict(int)
    for agent_id in agents:
        counters.setdefault(agent_id, Counters(threshold=threshold))
    for call in calls:
        found = settled(call)
        if (call.agent_id is not None and found is not None and found[0] in span
                and found[1].outcome == "answered"):
            counters[call.agent_id].add(found[1])
    for row in reservations:
        if row.agent_id is None:
            continue
        if row.decided_at in span:
            offered[row.agent_id] += 1
        if ring_no_answer(row, span):
            rna[row.agent_id] += 1
    for agent_id, (busy, staffed) in agent_time(changes, span).items():
        counters[agent_id].add_agent_time(busy=busy, staffed=staffed)
    out = {}
    for agent_id, c in sorted(counters.items()):
        m = measures(c)
        out[agent_id] = {
            "agent_id": agent_id, "offered": offered[agent_id], "answered": m.answered,
            "ring_no_answer": rna[agent_id], "asa": _round(m.asa), "aht": _round(m.aht),
            "occupancy": _round(m.occupancy), "busy_seconds": round(c.busy_seconds, 3),
            "staffed_seconds": round(c.staffed_seconds, 3)}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
