"""The routing engine: an in-memory, incremental matcher of waiting calls and ready agents.

Pure and synchronous (sans-IO). Times are seconds (float) on the caller's clock, passed in as
``now``; the service passes POSIX seconds, the simulator its virtual clock. Every method
leaves the engine in a state where **no waiting call could be given to a ready agent** under
the current rules, so each event only has to look at what it changed:

- a call arriving (or coming back, or widening a step) is offered to the best ready agent
  that qualifies for it;
- an agent becoming ready takes the best waiting call it qualifies for.

Indices keep both lookups cheap, whatever the number of agents and calls:

- ready agents by ``(skill, level, ranking)`` in sorted lists: the best agent for a
  requirement is the head of at most ten lists (one per level at or above the minimum);
- waiting calls by ``(queue, step)`` in sorted lists keyed by their *effective arrival*
  ``arrived - credit / wait_weight`` (ordering by score = credit + weight * waited is the same
  as ordering by that key, and the key never changes while the call waits, so a call keeps
  its place across widening steps and ring-no-answer requeues); FIFO within equal scores
  by arrival sequence;
- requirements by skill: an agent only looks at the (queue, step) buckets whose requirement
  starts with a skill it holds.

Timers (widening steps, preferred-agent timeouts, maximum wait) are a heap of deadlines that
:meth:`RoutingEngine.tick` pops.

The decision a method returns has already been applied inside the engine (call reserved,
agent out of the ready index); the caller persists it and acts on it. Whatever the caller
later learns goes back in through the other methods: the agent answered (:meth:`call_left`),
the ring failed (:meth:`requeue` and :meth:`agent_busy`), the agent is free
(:meth:`agent_ready`).
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_left, insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from .config import LimitAction, QueueConfig, RoutingConfig, Strategy, requirements

# Decision kinds.
RESERVED = "reserved"
OVERFLOWED = "overflowed"
CALLBACK = "callback"
RELEASED = "released"

# Rankings of the ready-agent index (best_skill walks the levels top down over "idle").
_RANKINGS = ("idle", "calls", "talk", "rr")
_RANKING_OF = {
    Strategy.LONGEST_IDLE: "idle", Strategy.BEST_SKILL: "idle",
    Strategy.FEWEST_CALLS: "calls", Strategy.LEAST_TALK: "talk", Strategy.ROUND_ROBIN: "rr",
}
_MAX_LEVEL = 10
# Overflow chains (queue full → overflow queue full → ...) stop here.
_MAX_OVERFLOW_HOPS = 4


@dataclass(frozen=True)
class AgentSpec:
    """An agent as routing sees it: skills with levels 1-10, team and department."""

    id: str
    skills: Mapping[str, int]
    team: str | None = None
    department: str | None = None


@dataclass(frozen=True)
class CallSpec:
    """A call to route.

    ``vip``, ``green_channel``, ``near_breach`` and ``priority`` earn the queue's configured
    credits (:class:`~.config.Credits`). ``customer`` keys the engine's memory of who served
    the caller (preferred agent); ``preferred_agents`` adds explicit ones (e.g. the owner of
    the caller's open work order). ``arrived_at`` restores a call queued earlier (rebuild
    after a restart): it keeps that place and skips the arrival limits.
    """

    id: str
    queue: str
    vip: bool = False
    green_channel: bool = False
    near_breach: bool = False
    priority: int = 0
    customer: str | None = None
    preferred_agents: tuple[str, ...] = ()
    arrived_at: float | None = None


@dataclass(frozen=True)
class Candidate:
    """An agent considered for a call: ``metric`` is what the strategy ranks by (idle or
    talk seconds, calls today, skill level, assignments since its last call)."""

    agent_id: str
    metric: str
    value: float
    level: int
    chosen: bool = False


@dataclass(frozen=True)
class Explanation:
    trigger: str  # call_arrived, agent_ready, requeue, tick, limit
    rule: str  # the strategy, "preferred_agent", or the limit hit (max_length ...)
    step: int
    step_name: str
    requirements: tuple[Mapping[str, int], ...]
    call_score: float
    candidates: tuple[Candidate, ...] = ()
    # Other waiting calls the agent could have taken (when an agent picked a call): score.
    competing_calls: tuple[tuple[str, float], ...] = ()
    # (agent or call id, why it was not chosen)
    excluded: tuple[tuple[str, str], ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger, "rule": self.rule, "step": self.step,
            "step_name": self.step_name,
            "requirements": [dict(r) for r in self.requirements],
            "call_score": round(self.call_score, 3),
            "candidates": [{"agent_id": c.agent_id, "metric": c.metric,
                            "value": round(c.value, 3), "level": c.level, "chosen": c.chosen}
                           for c in self.candidates],
            "competing_calls": [{"call_id": cid, "score": round(s, 3)}
                                for cid, s in self.competing_calls],
            "excluded": [{"id": i, "reason": r} for i, r in self.excluded],
            "note": self.note,
        }


@dataclass(frozen=True)
class Decision:
    """What the engine decided about one call.

    ``kind`` is ``reserved`` (``agent_id`` is set: ring that agent), ``overflowed`` (the call
    moved to ``target_queue`` and keeps waiting there), ``callback`` (offer a callback; the
    call has left the engine) or ``released`` (play ``announcement`` and release; the call
    has left the engine). ``reason`` names the queue limit behind the last three.
    """

    call_id: str
    agent_id: str | None
    queue: str
    step: int
    explanation: Explanation
    kind: str = RESERVED
    target_queue: str | None = None
    reason: str | None = None
    announcement: str | None = None


@dataclass
class _Agent:
    spec: AgentSpec
    ready: bool = False
    ready_since: float = 0.0
    calls_today: int = 0
    day: date | None = None
    talk_seconds: float = 0.0
    last_assigned: int = 0
    # (index key, entry) pairs this agent currently sits in.
    entries: list[tuple[tuple[str, int, str], tuple[Any, ...]]] = field(default_factory=list)


@dataclass
class _Call:
    spec: CallSpec
    queue: str
    arrived: float
    seq: int
    key: tuple[float, int]
    step_origin: float
    state: str = "waiting"  # waiting, reserved
    step: int = 0
    bucket: tuple[str, int] | None = None
    pinned_to: tuple[str, ...] = ()
    pin_until: float | None = None
    agent_id: str | None = None
    timer_gen: int = 0


class RoutingEngine:
    """See the module docstring. Not thread-safe: one caller at a time."""

    def __init__(self, config: RoutingConfig) -> None:
        self._config = config
        self._seq = itertools.count(1)
        self._agents: dict[str, _Agent] = {}
        self._calls: dict[str, _Call] = {}
        self._ready_idx: dict[tuple[str, int, str], list[tuple[Any, ...]]] = {}
        self._buckets: dict[tuple[str, int], list[tuple[tuple[float, int], str]]] = {}
        self._waiting: dict[str, list[tuple[tuple[float, int], str]]] = {}
        self._pinned: dict[str, list[tuple[tuple[float, int], str]]] = {}
        self._timers: list[tuple[float, int, str, str, int]] = []
        self._history: dict[str, tuple[str, float]] = {}
        self._assignments = 0
        self._rematch = False
        self._zone = ZoneInfo(config.timezone)
        # Per queue: requirement alternatives per step; skill → [(queue, step, need)].
        self._reqs: dict[str, list[list[dict[str, int]]]] = {}
        self._by_skill: dict[str, list[tuple[str, int, dict[str, int]]]] = {}
        self._staffed: dict[str, int] = {}
        for name in config.queues:
            self._register_queue(name)

    # -- configuration ------------------------------------------------------------------------

    @property
    def config(self) -> RoutingConfig:
        return self._config

    def set_config(self, config: RoutingConfig) -> None:
        """Apply a new configuration live. Waiting calls keep their arrival (their place);
        their score, step and bucket are recomputed under the new rules. Matches the new
        rules make possible are made by the next :meth:`tick`."""
        self._config = config
        self._zone = ZoneInfo(config.timezone)
        names = set(config.queues) | set(self._reqs) | {c.queue for c in self._calls.values()}
        self._reqs, self._by_skill, self._staffed = {}, {}, {}
        for name in sorted(names):
            self._register_queue(name)
        for agent in self._agents.values():
            if agent.ready:
                self._unindex_agent(agent)
                self._index_agent(agent)
        self._buckets, self._waiting, self._pinned = {}, {}, {}
        for call in self._calls.values():
            if call.state != "waiting":
                continue
            call.key = self._key(call)
            call.timer_gen += 1
            call.bucket = None
            insort(self._waiting.setdefault(call.queue, []), (call.key, call.spec.id))
            if call.pinned_to and call.pin_until is not None:
                for agent_id in call.pinned_to:
                    insort(self._pinned.setdefault(agent_id, []), (call.key, call.spec.id))
                self._push_timer(call.pin_until, call, "pin")
            else:
                call.pinned_to = ()
                # The step is re-derived by the next tick: an overdue step timer fires then.
                self._place(call, call.step_origin, call.step)
            self._schedule_max_wait(call)
        self._rematch = True

    def queue_names(self) -> list[str]:
        return sorted(self._reqs)

    # -- agents -------------------------------------------------------------------------------

    def remember_served(self, customer: str, agent_id: str, at: float) -> None:
        """Seed the preferred-agent history (a rebuild after a restart or failover): the
        latest of what is remembered and what is told wins."""
        known = self._history.get(customer)
        if known is None or known[1] < at:
            self._history[customer] = (agent_id, at)

    @property
    def history_days(self) -> float:
        """How far back the preferred-agent history matters: the longest window of any
        queue that prefers agents."""
        return max((q.preferred_agent.within_days for q in self.config.queues.values()
                    if q.preferred_agent.enabled), default=0.0)

    def agent_logged_in(self, agent: AgentSpec, now: float, *, calls_today: int = 0,
                        talk_seconds: float = 0.0) -> None:
        """The agent is staffed (not yet ready). Logging in again updates skills and team.
        ``calls_today`` and ``talk_seconds`` restore the counters after a restart."""
        known = self._agents.get(agent.id)
        if known is not None:
            self._staff(known, -1)
            if known.ready:
                self._unindex_agent(known)
            known.spec = agent
        else:
            known = self._agents[agent.id] = _Agent(agent, calls_today=calls_today,
                                                    talk_seconds=talk_seconds,
                                                    day=self._day(now))
        self._staff(known, +1)
        if known.ready:
            self._index_agent(known)

    def agent_logged_out(self, agent_id: str, now: float) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        if agent.ready:
            self._unindex_agent(agent)
        self._staff(agent, -1)

    def agent_ready(self, agent_id: str, now: float, *, since: float | None = None
                    ) -> list[Decision]:
        """The agent can take a call. ``since`` keeps an earlier idle start (a reservation
        whose caller hung up cost the agent nothing, or a restart)."""
        agent = self._agents.get(agent_id)
        if agent is None:
            raise KeyError(f"agent {agent_id} is not logged in")
        if agent.ready:
            self._unindex_agent(agent)
        agent.ready, agent.ready_since = True, now if since is None else since
        self._index_agent(agent)
        decision = self._match_agent(agent, now, "agent_ready")
        return [decision] if decision else []

    def agent_busy(self, agent_id: str, now: float) -> None:
        """Reserved by someone else, on a call, in wrap-up or not ready."""
        agent = self._agents.get(agent_id)
        if agent is not None and agent.ready:
            self._unindex_agent(agent)
            agent.ready = False

    def record_talk(self, agent_id: str, seconds: float, now: float) -> None:
        """Add handled time (for the least_talk strategy)."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            was_ready = agent.ready
            if was_ready:
                self._unindex_agent(agent)
            agent.talk_seconds += max(0.0, seconds)
            if was_ready:
                self._index_agent(agent)

    def is_ready(self, agent_id: str, since: float | None = None) -> bool:
        agent = self._agents.get(agent_id)
        return agent is not None and agent.ready and (since is None
                                                      or agent.ready_since == since)

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    def ready_agents(self) -> list[str]:
        return sorted(a.spec.id for a in self._agents.values() if a.ready)

    # -- calls --------------------------------------------------------------------------------

    def call_arrived(self, call: CallSpec, now: float) -> list[Decision]:
        """Queue a call: arrival limits first (closed, nobody staffed, queue full), then the
        preferred agent, then the best ready agent under the queue's strategy."""
        if call.id in self._calls:
            raise ValueError(f"call {call.id} is already in the engine")
        self._register_queue(call.queue)
        arrived = now if call.arrived_at is None else call.arrived_at
        entry = _Call(spec=call, queue=call.queue, arrived=arrived, seq=next(self._seq),
                      key=(0.0, 0), step_origin=arrived)
        entry.key = self._key(entry)
        decisions: list[Decision] = []
        if call.arrived_at is None:
            limited = self._arrival_limits(entry, now, decisions)
            if limited is None:
                return decisions
            entry = limited
        self._calls[call.id] = entry
        self._enqueue(entry, now, trigger="call_arrived", decisions=decisions)
        return decisions

    def call_reserved(self, call: CallSpec, agent_id: str, now: float) -> None:
        """Restore a call already reserved to an agent (rebuild after a restart)."""
        self._register_queue(call.queue)
        arrived = now if call.arrived_at is None else call.arrived_at
        entry = _Call(spec=call, queue=call.queue, arrived=arrived, seq=next(self._seq),
                      key=(0.0, 0), step_origin=arrived, state="reserved", agent_id=agent_id)
        entry.key = self._key(entry)
        self._calls[call.id] = entry
        self.agent_busy(agent_id, now)

    def call_left(self, call_id: str, now: float) -> None:
        """The call is no longer routable: answered, abandoned or released."""
        call = self._calls.pop(call_id, None)
        if call is not None and call.state == "waiting":
            self._unwait(call)

    def requeue(self, call_id: str, now: float) -> list[Decision]:
        """The reservation fell through (ring no answer, expiry): the call is back at its
        place. The agent it was reserved to stays busy until told otherwise."""
        call = self._calls.get(call_id)
        if call is None or call.state != "reserved":
            return []
        call.state, call.agent_id = "waiting", None
        decisions: list[Decision] = []
        self._enqueue(call, now, trigger="requeue", decisions=decisions, pin=False)
        return decisions

    def tick(self, now: float) -> list[Decision]:
        """Fire due timers: widening steps, preferred-agent timeouts, maximum waits; and,
        after :meth:`set_config`, every match the new rules allow."""
        decisions: list[Decision] = []
        if self._rematch:
            self._rematch = False
            for agent in sorted((a for a in self._agents.values() if a.ready),
                                key=lambda a: (a.ready_since, a.spec.id)):
                if agent.ready:
                    found = self._match_agent(agent, now, "config")
                    if found:
                        decisions.append(found)
        while self._timers and self._timers[0][0] <= now:
            _, _, call_id, kind, gen = heapq.heappop(self._timers)
            call = self._calls.get(call_id)
            if call is None or call.state != "waiting" or call.timer_gen != gen:
                continue
            if kind == "pin":
                self._unpin(call)
                self._place(call, now, self._step_at(call, now))
                found = self._match_call(call, now, "tick", note="preferred agent timed out")
            elif kind == "step":
                step = self._step_at(call, now)
                if call.bucket is None or step == call.step:
                    continue
                self._unbucket(call)
                self._place(call, now, step)
                found = self._match_call(call, now, "tick")
            else:  # max_wait
                action = self._queue(call.queue).limits.on_max_wait
                if action is None:
                    continue
                self._unwait(call)
                del self._calls[call_id]
                moved = self._apply_limit(call, action, "max_wait", now, decisions, hops=0)
                if moved is not None:
                    self._calls[call_id] = moved
                    self._enqueue(moved, now, trigger="limit", decisions=decisions, pin=False)
                continue
            if found:
                decisions.append(found)
        return decisions

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (may be early: stale timers)."""
        return self._timers[0][0] if self._timers else None

    # -- estimates ----------------------------------------------------------------------------

    def position(self, call_id: str, now: float) -> int:
        """1-based place among the calls waiting in the call's queue; 0 if not waiting."""
        call = self._calls.get(call_id)
        if call is None or call.state != "waiting":
            return 0
        return bisect_left(self._waiting.get(call.queue, []), (call.key, call_id)) + 1

    def estimated_wait(self, call_id: str, now: float) -> float | None:
        """Seconds until an agent is likely free for this call: the calls up to and including
        it, each taking one average handle time, shared across the agents staffed for the
        queue. 0 when reserved; None when unknown or nobody is staffed."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        if call.state == "reserved":
            return 0.0
        staffed = self._staffed.get(call.queue, 0)
        if staffed <= 0:
            return None
        handle = self._queue(call.queue).handle_seconds
        return round(self.position(call_id, now) * handle / staffed, 1)

    def waiting(self, queue: str) -> int:
        return len(self._waiting.get(queue, []))

    def staffed(self, queue: str) -> int:
        return self._staffed.get(queue, 0)

    def waiting_calls(self, queue: str) -> list[str]:
        """Call ids in routing order."""
        return [cid for _, cid in self._waiting.get(queue, [])]

    def score(self, call_id: str, now: float) -> float | None:
        call = self._calls.get(call_id)
        return None if call is None else self._score(call, now)

    def has_call(self, call_id: str) -> bool:
        return call_id in self._calls

    # -- internals: queues --------------------------------------------------------------------

    def _queue(self, name: str) -> QueueConfig:
        queue = self._config.queue(name)
        # An unknown queue with auto_queues off still routes by the skill of its name: a call
        # must never be lost for want of configuration.
        return queue if queue is not None else QueueConfig(skills={name: 1})

    def _register_queue(self, name: str) -> None:
        if name in self._reqs:
            return
        reqs = requirements(self._config, name) or [[dict(self._queue(name).skills)]]
        self._reqs[name] = reqs
        for step, alternatives in enumerate(reqs):
            for need in alternatives:
                primary = next(iter(need))
                self._by_skill.setdefault(primary, []).append((name, step, need))
        self._staffed[name] = sum(1 for a in self._agents.values() if self._serves(a, name))
        # Overflow targets (add_queues, limit actions) must exist for their buckets.
        queue = self._queue(name)
        for configured in queue.steps:
            for other in configured.add_queues:
                self._register_queue(other)
        for action in (queue.limits.on_max_length, queue.limits.on_max_wait,
                       queue.limits.on_no_agents, queue.limits.on_closed):
            if action is not None and action.queue:
                self._register_queue(action.queue)

    def _serves(self, agent: _Agent, queue: str) -> bool:
        skills = agent.spec.skills
        return any(all(skills.get(s, 0) >= lvl for s, lvl in need.items())
                   for alternatives in self._reqs.get(queue, []) for need in alternatives)

    def _staff(self, agent: _Agent, delta: int) -> None:
        for name in self._reqs:
            if self._serves(agent, name):
                self._staffed[name] = self._staffed.get(name, 0) + delta

    def _key(self, call: _Call) -> tuple[float, int]:
        return (call.arrived - self._credit(call) / self._queue(call.queue).wait_weight,
                call.seq)

    def _credit(self, call: _Call) -> float:
        credits, spec = self._queue(call.queue).credits, call.spec
        return ((credits.vip if spec.vip else 0.0)
                + (credits.green_channel if spec.green_channel else 0.0)
                + (credits.near_breach if spec.near_breach else 0.0)
                + credits.per_priority * max(0, spec.priority))

    def _score(self, call: _Call, now: float) -> float:
        return self._credit(call) + self._queue(call.queue).wait_weight * (now - call.arrived)

    def _step_at(self, call: _Call, now: float) -> int:
        waited = now - call.step_origin
        return sum(1 for s in self._queue(call.queue).steps if s.after_seconds <= waited)

    def _step_name(self, queue: str, step: int) -> str:
        if step == 0:
            return "arrival"
        configured = self._queue(queue).steps[step - 1]
        return configured.name or f"after {configured.after_seconds:g}s"

    def _day(self, now: float) -> date:
        return datetime.fromtimestamp(now + self._config.clock_epoch, UTC).astimezone(
            self._zone).date()

    # -- internals: limits --------------------------------------------------------------------

    def _arrival_limits(self, call: _Call, now: float, decisions: list[Decision],
                        hops: int = 0) -> _Call | None:
        """The call after the arrival limits: itself, moved to an overflow queue, or None when
        it was offered a callback or released (a decision says which)."""
        queue = self._queue(call.queue)
        limits = queue.limits
        checks: list[tuple[str, LimitAction | None]] = []
        if queue.hours is not None:
            moment = datetime.fromtimestamp(now + self._config.clock_epoch, UTC)
            if not queue.hours.is_open(moment):
                checks.append(("closed", limits.on_closed))
        if self._staffed.get(call.queue, 0) == 0:
            checks.append(("no_agents", limits.on_no_agents))
        if limits.max_length is not None and self.waiting(call.queue) >= limits.max_length:
            # A full queue must turn callers away: without a configured outcome, release.
            checks.append(("max_length", limits.on_max_length
                           or LimitAction(action="release", announcement=None)))
        for reason, action in checks:
            if action is None:
                continue
            moved = self._apply_limit(call, action, reason, now, decisions, hops)
            if moved is None or hops >= _MAX_OVERFLOW_HOPS:
                return moved
            return self._arrival_limits(moved, now, decisions, hops + 1)
        return call

    def _apply_limit(self, call: _Call, action: LimitAction, reason: str, now: float,
                     decisions: list[Decision], hops: int) -> _Call | None:
        explanation = Explanation(
            trigger="limit", rule=reason, step=call.step,
            step_name=self._step_name(call.queue, call.step), requirements=(),
            call_score=self._score(call, now),
            note=f"queue {call.queue}: {reason.replace('_', ' ')} → {action.action}")
        if action.action == "overflow" and action.queue and action.queue != call.queue:
            target = action.queue
            self._register_queue(target)
            decisions.append(Decision(call.spec.id, None, call.queue, call.step, explanation,
                                      kind=OVERFLOWED, target_queue=target, reason=reason,
                                      announcement=action.announcement))
            # Keeps its arrival (its place by waiting time); the new queue's steps start now.
            moved = _Call(spec=call.spec, queue=target, arrived=call.arrived, seq=call.seq,
                          key=(0.0, 0), step_origin=now, timer_gen=call.timer_gen + 1)
            moved.key = self._key(moved)
            return moved
        kind = CALLBACK if action.action == "callback" else RELEASED
        decisions.append(Decision(call.spec.id, None, call.queue, call.step, explanation,
                                  kind=kind, reason=reason, announcement=action.announcement))
        return None

    # -- internals: waiting calls -------------------------------------------------------------

    def _enqueue(self, call: _Call, now: float, *, trigger: str, decisions: list[Decision],
                 pin: bool = True) -> None:
        call.state = "waiting"
        call.timer_gen += 1
        insort(self._waiting.setdefault(call.queue, []), (call.key, call.spec.id))
        queue = self._queue(call.queue)
        note = ""
        # The preferred-agent wait runs from the call's arrival: a call restored after a
        # restart keeps what was left of it, not a fresh one.
        pin_until = call.arrived + queue.preferred_agent.timeout_seconds
        if pin and queue.preferred_agent.enabled and pin_until > now:
            preferred = self._preferred(call, now)
            ready = [a for a in preferred if a in self._agents and self._agents[a].ready]
            if ready:
                decisions.append(self._reserve_preferred(call, ready, preferred, now, trigger))
                return
            staffed = [a for a in preferred if a in self._agents]
            if staffed:
                # Wait for a preferred agent (only) for a while; the others may serve it later.
                call.pinned_to = tuple(staffed)
                call.pin_until = pin_until
                for agent_id in staffed:
                    insort(self._pinned.setdefault(agent_id, []), (call.key, call.spec.id))
                self._push_timer(call.pin_until, call, "pin")
                self._schedule_max_wait(call)
                return
            if preferred:
                note = "preferred agents not logged in: " + ", ".join(preferred)
        self._place(call, now, self._step_at(call, now))
        self._schedule_max_wait(call)
        found = self._match_call(call, now, trigger, note=note)
        if found:
            decisions.append(found)

    def _preferred(self, call: _Call, now: float) -> list[str]:
        out = list(call.spec.preferred_agents)
        customer = call.spec.customer
        if customer is not None and customer in self._history:
            agent_id, when = self._history[customer]
            within = self._queue(call.queue).preferred_agent.within_days * 86400.0
            if now - when <= within and agent_id not in out:
                out.append(agent_id)
        return out

    def _place(self, call: _Call, now: float, step: int) -> None:
        steps = self._queue(call.queue).steps
        step = min(step, len(steps))
        call.step, call.bucket = step, (call.queue, step)
        insort(self._buckets.setdefault(call.bucket, []), (call.key, call.spec.id))
        if step < len(steps):
            self._push_timer(call.step_origin + steps[step].after_seconds, call, "step")

    def _schedule_max_wait(self, call: _Call) -> None:
        limits = self._queue(call.queue).limits
        if limits.max_wait_seconds is not None and limits.on_max_wait is not None:
            self._push_timer(call.step_origin + limits.max_wait_seconds, call, "max_wait")

    def _push_timer(self, due: float, call: _Call, kind: str) -> None:
        heapq.heappush(self._timers, (due, next(self._seq), call.spec.id, kind, call.timer_gen))

    def _unbucket(self, call: _Call) -> None:
        if call.bucket is not None:
            _remove(self._buckets.get(call.bucket, []), (call.key, call.spec.id))
            call.bucket = None

    def _unpin(self, call: _Call) -> None:
        for agent_id in call.pinned_to:
            _remove(self._pinned.get(agent_id, []), (call.key, call.spec.id))
        call.pinned_to, call.pin_until = (), None

    def _unwait(self, call: _Call) -> None:
        _remove(self._waiting.get(call.queue, []), (call.key, call.spec.id))
        self._unbucket(call)
        self._unpin(call)
        call.timer_gen += 1

    # -- internals: ready agents --------------------------------------------------------------

    def _rank(self, agent: _Agent, ranking: str) -> tuple[Any, ...]:
        if ranking == "idle":
            return (agent.ready_since, agent.spec.id)
        if ranking == "calls":
            return (agent.calls_today, agent.ready_since, agent.spec.id)
        if ranking == "talk":
            return (agent.talk_seconds, agent.ready_since, agent.spec.id)
        return (agent.last_assigned, agent.spec.id)

    def _index_agent(self, agent: _Agent) -> None:
        agent.entries = []
        for skill, level in agent.spec.skills.items():
            for ranking in _RANKINGS:
                key = (skill, min(max(level, 1), _MAX_LEVEL), ranking)
                entry = self._rank(agent, ranking)
                insort(self._ready_idx.setdefault(key, []), entry)
                agent.entries.append((key, entry))

    def _unindex_agent(self, agent: _Agent) -> None:
        for key, entry in agent.entries:
            _remove(self._ready_idx.get(key, []), entry)
        agent.entries = []

    def _reserve(self, call: _Call, agent: _Agent, now: float) -> None:
        self._unwait(call)
        call.state, call.agent_id = "reserved", agent.spec.id
        self._unindex_agent(agent)
        agent.ready = False
        today = self._day(now)
        if agent.day != today:
            agent.day, agent.calls_today = today, 0
        agent.calls_today += 1
        self._assignments += 1
        agent.last_assigned = self._assignments
        if call.spec.customer is not None:
            self._history[call.spec.customer] = (agent.spec.id, now)

    def _metric(self, agent: _Agent, strategy: Strategy, need: Mapping[str, int], now: float
                ) -> tuple[str, float]:
        if strategy is Strategy.FEWEST_CALLS:
            return "calls_today", float(agent.calls_today)
        if strategy is Strategy.LEAST_TALK:
            return "talk_seconds", agent.talk_seconds
        if strategy is Strategy.BEST_SKILL:
            return "skill_level", float(agent.spec.skills.get(next(iter(need)), 0))
        if strategy is Strategy.ROUND_ROBIN:
            return "assignments_since_last", float(self._assignments - agent.last_assigned)
        return "idle_seconds", now - agent.ready_since

    def _best_for_need(self, need: Mapping[str, int], strategy: Strategy,
                       excluded: list[tuple[str, str]]
                       ) -> list[tuple[tuple[Any, ...], _Agent, int]]:
        """The best ready agent at each level of the need's first skill that meets the whole
        need: at most ten, ranked by the strategy (best_skill: highest level first)."""
        primary = next(iter(need))
        ranking = _RANKING_OF[strategy]
        found = []
        for level in range(need[primary], _MAX_LEVEL + 1):
            for entry in self._ready_idx.get((primary, level, ranking), ()):
                agent = self._agents[entry[-1]]
                missing = [s for s, lvl in need.items() if agent.spec.skills.get(s, 0) < lvl]
                if not missing:
                    rank = (-level, *entry) if strategy is Strategy.BEST_SKILL else entry
                    found.append((rank, agent, level))
                    break
                if len(excluded) < 10:
                    excluded.append((agent.spec.id, "lacks " + ", ".join(
                        f"{s}≥{need[s]}" for s in missing)))
        return found

    def _match_call(self, call: _Call, now: float, trigger: str, note: str = ""
                    ) -> Decision | None:
        """Give a waiting (bucketed) call to the best ready agent that qualifies, if any."""
        if call.bucket is None:
            return None
        queue = self._queue(call.queue)
        alternatives = self._reqs[call.queue][call.step]
        excluded: list[tuple[str, str]] = []
        found = []
        for need in alternatives:
            found.extend(self._best_for_need(need, queue.strategy, excluded))
        if not found:
            return None
        found.sort(key=lambda item: item[0])
        chosen = found[0][1]
        candidates = []
        seen = set()
        for _, agent, level in found:
            if agent.spec.id in seen:
                continue
            seen.add(agent.spec.id)
            metric, value = self._metric(agent, queue.strategy, alternatives[0], now)
            candidates.append(Candidate(agent.spec.id, metric, value, level,
                                        chosen=agent is chosen))
        explanation = Explanation(
            trigger=trigger, rule=queue.strategy.value, step=call.step,
            step_name=self._step_name(call.queue, call.step),
            requirements=tuple(alternatives), call_score=self._score(call, now),
            candidates=tuple(candidates), excluded=tuple(excluded), note=note)
        step = call.step
        self._reserve(call, chosen, now)
        return Decision(call.spec.id, chosen.spec.id, call.queue, step, explanation)

    def _reserve_preferred(self, call: _Call, ready: list[str], preferred: list[str],
                           now: float, trigger: str) -> Decision:
        agents = sorted((self._agents[a] for a in ready), key=lambda a: (a.ready_since,
                                                                           a.spec.id))
        chosen = agents[0]
        explanation = Explanation(
            trigger=trigger, rule="preferred_agent", step=0, step_name="arrival",
            requirements=(), call_score=self._score(call, now),
            candidates=tuple(Candidate(a.spec.id, "idle_seconds", now - a.ready_since, 0,
                                       chosen=a is chosen) for a in agents),
            excluded=tuple((a, "preferred but not ready") for a in preferred
                           if a not in ready),
            note="served by a preferred agent (last served the caller or owns the order)")
        # _reserve expects a waiting call in its queue's list; it is there but unbucketed.
        self._reserve(call, chosen, now)
        return Decision(call.spec.id, chosen.spec.id, call.queue, 0, explanation)

    def _match_agent(self, agent: _Agent, now: float, trigger: str) -> Decision | None:
        """Give a ready agent the best waiting call it qualifies for, if any."""
        heads: dict[str, tuple[tuple[float, int], int]] = {}
        skills = agent.spec.skills
        for skill in skills:
            for queue_name, step, need in self._by_skill.get(skill, ()):
                bucket = self._buckets.get((queue_name, step))
                if not bucket:
                    continue
                if any(skills.get(s, 0) < lvl for s, lvl in need.items()):
                    continue
                key, call_id = bucket[0]
                heads[call_id] = (key, step)
        for key, call_id in self._pinned.get(agent.spec.id, [])[:1]:
            heads[call_id] = (key, -1)
        if not heads:
            return None
        ordered = sorted(heads.items(), key=lambda item: item[1][0])
        call_id, (_, via) = ordered[0]
        call = self._calls[call_id]
        queue = self._queue(call.queue)
        metric, value = self._metric(agent, queue.strategy, queue.skills, now)
        step = call.step
        explanation = Explanation(
            trigger=trigger, rule="preferred_agent" if via < 0 else queue.strategy.value,
            step=step, step_name=self._step_name(call.queue, step),
            requirements=tuple(self._reqs[call.queue][step]) if via >= 0 else (),
            call_score=self._score(call, now),
            candidates=(Candidate(agent.spec.id, metric, value,
                                  max((skills.get(s, 0) for s in queue.skills), default=0),
                                  chosen=True),),
            competing_calls=tuple((cid, self._score(self._calls[cid], now))
                                  for cid, _ in ordered[1:6]),
            note="agent became free; took the highest-scored call it qualifies for")
        self._reserve(call, agent, now)
        return Decision(call_id, agent.spec.id, call.queue, step, explanation)


def _remove(items: list[Any], item: Any) -> None:
    index = bisect_left(items, item)
    if index < len(items) and items[index] == item:
        del items[index]
