"""A discrete-event simulation of the hotline floor on a virtual clock.

One heap of timed events (agent login/logout, a caller hanging up, the ring ending in an
answer, the end of talk, the end of wrap-up, a routing tick) plus the calls in order of
joining the queue. Every routing choice is made by the :class:`~.router.Router` — by default
the ACD's own engine — exactly as the service would be asked: agent ready, call arrived,
call left. No randomness inside: the scenario carries every time, so a scenario gives the
same records on every run (the generators are seeded).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from .measures import SERVICE_LEVEL_SECONDS, Measures, compute_measures
from .model import CallRecord, Scenario, SimAgent
from .router import OVERFLOWED, RESERVED, Assignment, Router

# Event kinds; ints so heap tuples compare cheaply. Ties at the same instant run in the
# order they were scheduled (the sequence number), which keeps a run deterministic.
_LOGIN, _LOGOUT, _ABANDON, _ANSWER, _RELEASE, _WRAP_END, _TICK = range(7)

_OFF, _READY, _RESERVED, _TALKING, _WRAPUP = range(5)


@dataclass(slots=True)
class _AgentState:
    spec: SimAgent
    state: int = _OFF
    call: int = -1                       # index of the call it is reserved for / serving
    busy_since: float = 0.0
    login_at: float = 0.0
    busy: float = 0.0                    # accumulated reserved + talk + wrap-up seconds
    staffed: float = 0.0                 # accumulated logged-in seconds
    leaving: bool = False                # logout requested while busy: leave after the call
    ready_since: float = 0.0


@dataclass
class SimResult:
    scenario: str
    router: str
    records: list[CallRecord]
    busy_seconds: float
    staffed_seconds: float
    events: int
    wall_seconds: float
    end: float
    per_agent: dict[str, dict[str, float]] = field(default_factory=dict)

    def measures(self, threshold: float = SERVICE_LEVEL_SECONDS) -> Measures:
        return compute_measures(self.records, busy_seconds=self.busy_seconds,
                                staffed_seconds=self.staffed_seconds, threshold=threshold)

    def summary(self, threshold: float = SERVICE_LEVEL_SECONDS) -> dict[str, Any]:
        vip = [r for r in self.records if r.vip]
        regular = [r for r in self.records if not r.vip]
        queues = sorted({r.queue for r in self.records if r.queue is not None})
        return {
            "scenario": self.scenario,
            "router": self.router,
            "measures": self.measures(threshold).as_dict(),
            "vip": compute_measures(vip, threshold=threshold).as_dict() if vip else None,
            "regular": compute_measures(regular, threshold=threshold).as_dict(),
            "queues": {q: compute_measures([r for r in self.records if r.queue == q],
                                           threshold=threshold).as_dict() for q in queues},
            "simulated_seconds": round(self.end, 1),
            "events": self.events,
            "wall_seconds": round(self.wall_seconds, 3),
        }


class Simulator:
    def __init__(self, scenario: Scenario, router: Router) -> None:
        self.scenario = scenario
        self.router = router

    def run(self) -> SimResult:
        started = time.perf_counter()
        router = self.router
        calls = sorted(self.scenario.calls, key=lambda c: c.queued_at)
        records = [CallRecord(c.id, c.queue, c.vip, c.at) for c in calls]
        index = {c.id: i for i, c in enumerate(calls)}
        agents = {a.id: _AgentState(a) for a in self.scenario.agents}
        heap: list[tuple[float, int, int, int, str]] = []
        seq = itertools.count()
        push = heapq.heappush
        pop = heapq.heappop
        for spec in self.scenario.agents:
            push(heap, (spec.login, next(seq), _LOGIN, -1, spec.id))
            if spec.logout is not None:
                push(heap, (spec.logout, next(seq), _LOGOUT, -1, spec.id))

        waiting = 0          # queued calls not yet given an agent
        ready = 0            # agents ready and idle
        tick_at: float | None = None
        events = 0
        now = 0.0

        def assign(decisions: list[Assignment], now: float) -> None:
            nonlocal waiting, ready
            for decision in decisions:
                i = index[decision.call_id]
                record = records[i]
                if record.routed is not None or record.outcome != "waiting":
                    raise RuntimeError(f"router decided on call {decision.call_id} twice or "
                                       f"after it ended")
                if decision.kind == OVERFLOWED:
                    record.overflowed_to = decision.queue
                    continue
                if decision.kind != RESERVED or decision.agent_id is None:
                    # A queue limit turned the caller away (callback offer or release).
                    record.outcome = decision.kind
                    record.ended = now
                    waiting -= 1
                    continue
                agent = agents[decision.agent_id]
                if agent.state != _READY:
                    raise RuntimeError(f"router assigned agent {decision.agent_id}, who is "
                                       "not ready")
                record.routed = now
                record.agent = decision.agent_id
                waiting -= 1
                ready -= 1
                agent.state = _RESERVED
                agent.call = i
                agent.busy_since = now
                delay = agent.spec.answer_after
                if delay > 0:
                    push(heap, (now + delay, next(seq), _ANSWER, i, decision.agent_id))
                else:
                    answer(i, agent, now)

        def answer(i: int, agent: _AgentState, now: float) -> None:
            record = records[i]
            call = calls[i]
            record.answered = now
            record.talk = call.talk
            record.wrapup = agent.spec.wrapup
            agent.state = _TALKING
            router.call_answered(call.id, agent.spec.id, now)
            router.agent_busy(agent.spec.id, now)
            push(heap, (now + call.talk, next(seq), _RELEASE, i, agent.spec.id))

        def become_ready(agent: _AgentState, now: float, *, cancelled: bool = False) -> None:
            nonlocal ready
            if agent.state in (_RESERVED, _TALKING, _WRAPUP):
                agent.busy += now - agent.busy_since
            agent.call = -1
            if agent.leaving:
                log_out(agent, now)
                return
            agent.state = _READY
            ready += 1
            # A reservation whose caller hung up cost the agent nothing: they keep their
            # place in the idle line (as the service does).
            since = agent.ready_since if cancelled else None
            if not cancelled:
                agent.ready_since = now
            assign(router.agent_ready(agent.spec.id, now, since), now)

        def log_out(agent: _AgentState, now: float) -> None:
            agent.state = _OFF
            agent.leaving = False
            agent.staffed += now - agent.login_at
            router.agent_logged_out(agent.spec.id, now)

        position = 0
        total = len(calls)
        while True:
            next_call = calls[position].queued_at if position < total else None
            if heap and (next_call is None or heap[0][0] <= next_call):
                now, _, kind, i, agent_id = pop(heap)
                events += 1
                if kind == _ABANDON:
                    record = records[i]
                    if record.answered is None and record.outcome == "waiting":
                        record.outcome = "abandoned"
                        record.ended = now
                        router.call_left(record.id, now)
                        if record.agent is None:
                            waiting -= 1
                        else:
                            # Hung up while the agent's phone rang: the reservation is
                            # cancelled and the agent is free again at once.
                            holder = agents[record.agent]
                            if holder.call == i and holder.state == _RESERVED:
                                become_ready(holder, now, cancelled=True)
                elif kind == _ANSWER:
                    agent = agents[agent_id]
                    if agent.call == i and agent.state == _RESERVED:
                        answer(i, agent, now)
                elif kind == _RELEASE:
                    agent = agents[agent_id]
                    record = records[i]
                    record.outcome = "answered"
                    record.ended = now
                    router.call_finished(agent_id, record.talk, now)
                    if agent.spec.wrapup > 0:
                        agent.state = _WRAPUP
                        push(heap, (now + agent.spec.wrapup, next(seq), _WRAP_END, i,
                                    agent_id))
                    else:
                        become_ready(agent, now)
                elif kind == _WRAP_END:
                    become_ready(agents[agent_id], now)
                elif kind == _LOGIN:
                    agent = agents[agent_id]
                    if agent.state == _OFF:
                        spec = agent.spec
                        agent.login_at = now
                        router.agent_logged_in(spec.id, spec.skills, spec.team,
                                               spec.department, now)
                        agent.state = _WRAPUP  # so become_ready does not count busy time
                        agent.busy_since = now
                        become_ready(agent, now)
                elif kind == _LOGOUT:
                    agent = agents[agent_id]
                    if agent.state == _READY:
                        ready -= 1
                        log_out(agent, now)
                    elif agent.state != _OFF:
                        agent.leaving = True
                elif kind == _TICK:
                    if now == tick_at:
                        tick_at = None
                    assign(router.tick(now), now)
            elif next_call is not None:
                call = calls[position]
                i = position
                position += 1
                now = next_call
                events += 1
                record = records[i]
                if call.queue is None:
                    record.outcome = "self_served"
                    record.ended = now
                    continue
                record.queued = now
                waiting += 1
                assign(router.call_arrived(call.id, call.queue, call.vip, call.customer, now),
                       now)
                if record.routed is None and call.patience is not None:
                    push(heap, (now + call.patience, next(seq), _ABANDON, i, ""))
            else:
                break
            # The router's own timers (widening steps, preferred-agent timeouts, maximum
            # waits) come due at its next deadline; one pending tick at a time, moved
            # earlier when the router's deadline moves earlier.
            deadline = router.next_deadline()
            if deadline is not None and (tick_at is None or deadline < tick_at):
                tick_at = max(deadline, now)
                push(heap, (tick_at, next(seq), _TICK, -1, ""))

        end = now
        for record in records:
            if record.outcome == "waiting":
                record.outcome = "unserved"
        per_agent: dict[str, dict[str, float]] = {}
        for agent in agents.values():
            if agent.state != _OFF:
                if agent.state != _READY:
                    agent.busy += end - agent.busy_since
                agent.staffed += end - agent.login_at
            per_agent[agent.spec.id] = {"busy": agent.busy, "staffed": agent.staffed}
        return SimResult(
            scenario=self.scenario.name, router=router.name, records=records,
            busy_seconds=sum(a.busy for a in agents.values()),
            staffed_seconds=sum(a.staffed for a in agents.values()), events=events,
            wall_seconds=time.perf_counter() - started, end=end, per_agent=per_agent)


def simulate(scenario: Scenario, router: Router, **options: Any) -> SimResult:
    return Simulator(scenario, router, **options).run()
