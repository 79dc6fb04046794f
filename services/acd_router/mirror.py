"""The floor and the routing engine, kept in step with the tables.

Every unit of work that changes the floor first takes one transaction-scoped advisory lock
(:meth:`Acd.lock`), so REST requests, the event consumer and the deadline pass (in any
number of replicas) apply their changes one at a time and an agent can never be reserved
twice. The handlers (``handlers``, ``agent_commands``, ``call_commands``) gather facts here,
let the domain decide, and apply through this class.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
import yaml

from shared.db import advisory_key
from shared.dialing import NumberPolicy
from shared.events.acd import (
    AgentFirstDial,
    AgentReserved,
    AgentStateChanged,
    CallAbandoned,
    CallOverflowed,
    CallRejected,
    RoutingDecided,
)
from shared.messaging import Transaction

from . import repository, store
from .domain import (
    Agent,
    AgentState,
    EntryState,
    QueueEntry,
    StateChange,
)
from .domain.config import RoutingConfig, VirtualHold, config_warnings
from .domain.engine import (
    OVERFLOWED,
    RESERVED,
    AgentSpec,
    Decision,
    RoutingEngine,
)
from .domain.policy import (
    call_spec,
    reservation_timeout,
    ts,
)
from .repository import ENDED_KEPT, Floor, LeaseRow
from .settings import AcdSettings

log = structlog.get_logger(__name__)

ROUTING_LOCK = advisory_key("acd:routing")
DEFAULT_CONFIG_FILE = Path(__file__).parent / "config" / "default.yaml"


class Fence(Protocol):
    """Who may route (lease.Leadership): checked at the start of every routing transaction."""

    @property
    def idle_timeout_ms(self) -> int:
        """A transaction idle this long ends its session (a paused holder must not keep the
        routing lock from the instance taking over)."""

    def check(self, lease: LeaseRow | None) -> None:
        """Raise NotActive unless ``lease`` (read under the routing lock) is this process's."""


def load_config_file(path: Path) -> RoutingConfig:
    """Parse and validate a YAML routing configuration (raises pydantic's ValidationError)."""
    return RoutingConfig.model_validate(yaml.safe_load(path.read_text()) or {})


async def _nothing_to_write(_: object) -> None:
    """The routing state is written as it goes; the unit only reports its commit."""


def _earliest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return min(known) if known else None


class Acd:
    """The process's in-memory floor and routing engine, and the operations that keep them
    and the tables in step.

    The engine mirrors PostgreSQL. Every routing transaction takes the advisory lock, then
    compares the stored generation with the one the engine was built at: if another process
    (or a rolled-back transaction here) changed anything since, the engine is rebuilt from
    the tables before it decides. The generation is bumped in the same transaction and
    adopted only after the commit.
    """
    def __init__(self, settings: AcdSettings, *, time_scale: float = 1.0) -> None:
        self.settings = settings
        # Suite seconds a reservation rings for: the setting, but at least its wall-time
        # floor (scaled), so a fast suite clock cannot outrun the connect event.
        self.reservation_seconds = max(settings.reservation_timeout_seconds,
                                       settings.reservation_min_wall_seconds * time_scale)
        self.zone = ZoneInfo(settings.timezone)
        # The suite's policy for every number dialled out (a virtual hold's callback).
        self.numbers: NumberPolicy = settings.common.number_policy()
        self.auto_ready_seconds = settings.ring_no_answer_ready_seconds
        self._known_queues: set[str] = set()
        # Every agent and live entry, as the tables hold them once this unit commits.
        self.floor = Floor()
        self.engine = RoutingEngine(RoutingConfig())
        self.config_version = 0
        self.config_warnings: list[str] = []
        self.generation: int | None = None
        self._stale = False
        self._file_checked = False
        self._decisions: list[Decision] = []
        # lease.Leadership: its check raises NotActive unless this process holds the lease
        # with the epoch it was granted (checked under the routing lock, so a fenced
        # ex-holder can never write). None: a single process that always routes.
        self.fence: Fence | None = None
        # Told the earliest deadline known after each commit (the deadline timer).
        self.on_deadline: Callable[[datetime | None], None] | None = None

    def virtual_hold_policy(self, queue: str) -> VirtualHold:
        found = self.engine.config.queue(queue)
        return found.virtual_hold if found is not None else VirtualHold()

    def next_deadline(self) -> datetime | None:
        """The earliest deadline of the floor (reservations, wrap-ups, auto-readies) and of
        the engine (queue timers), due or not."""
        return _earliest(self.floor.next_deadline(), self._engine_deadline())

    def _engine_deadline(self) -> datetime | None:
        deadline = self.engine.next_deadline()
        return None if deadline is None else datetime.fromtimestamp(deadline, UTC)

    def note_deadline(self, tx: Transaction, when: datetime | None) -> None:
        """A deadline this transaction writes: the timer hears of it once committed."""
        if when is not None:
            tx.shared["acd.deadline"] = _earliest(tx.shared.get("acd.deadline"), when)

    async def warm_up(self, tx: Transaction) -> None:
        await self.lock(tx)
        await self.apply_decisions(tx)

    async def apply_decisions(self, tx: Transaction) -> None:
        """Persist and announce the engine's decisions (applying one may free or busy an
        agent, which can decide more)."""
        while self._decisions:
            decision = self._decisions.pop(0)
            await self._apply(tx, decision)

    async def _apply(self, tx: Transaction, decision: Decision) -> None:
        now = tx.now
        entry = self.floor.entries.get(decision.call_id)  # the engine decides on live ones
        explanation = decision.explanation.as_dict()
        if entry is None or entry.state is not EntryState.WAITING:
            log.error("engine out of step: decision for a call not waiting",
                      call_id=decision.call_id)
            self._stale = True
            return
        if decision.kind == RESERVED:
            agent = self.floor.agent(decision.agent_id or "")
            if agent is None or agent.state is not AgentState.READY:
                log.error("engine out of step: decision for an agent not ready",
                          call_id=decision.call_id, agent_id=decision.agent_id)
                self._stale = True
                return
            reservation_id = str(uuid.uuid4())
            timeout = reservation_timeout(entry, ring_seconds=self.reservation_seconds,
                                          dial_seconds=self.settings.virtual_hold_dial_seconds)
            # Agent first for a caller on virtual hold: ring the agent on a new outbound call,
            # then dial the customer.
            dial = (AgentFirstDial(call_id=entry.next_dial(), number=entry.callback_number)
                    if entry.on_virtual_hold else None)
            entry.reserve(now, agent_id=agent.agent_id, reservation_id=reservation_id,
                          timeout_seconds=timeout)
            self.note_deadline(tx, entry.reservation_expires_at)
            change = agent.reserve(now, call_id=entry.call_id, reservation_id=reservation_id)
            self.floor.save_entry(tx, entry)
            self.floor.record_decision(tx, entry, decision.explanation.rule, now,
                                        step=decision.step, explanation=explanation)
            await tx.emit(AgentReserved(
                call_id=entry.call_id, agent_id=agent.agent_id, device=agent.device,
                queue=entry.queue, reservation_id=reservation_id,
                expires_at=entry.reservation_expires_at, dial=dial, team=agent.team,
                department=agent.department,
            ), subject=f"call/{entry.call_id}", correlationid=entry.call_id)
            await self._emit_decided(tx, decision, explanation, reservation_id)
            await self.save_agent(tx, agent, change)
            return
        decision_id = f"{decision.kind}:{uuid.uuid4()}"
        self.floor.record_outcome(tx, decision_id=decision_id, call_id=entry.call_id, queue=decision.queue,
            kind=decision.kind, rule=decision.explanation.rule, step=decision.step,
            reason=decision.reason, explanation=explanation, now=now)
        await self._emit_decided(tx, decision, explanation, None)
        if decision.kind == OVERFLOWED and decision.target_queue:
            await self.ensure_queues(tx, [decision.target_queue])
            previous, entry.queue = entry.queue, decision.target_queue
            self.floor.save_entry(tx, entry)
            await tx.emit(CallOverflowed(
                call_id=entry.call_id, from_queue=previous, to_queue=entry.queue,
                reason=decision.reason or "", announcement=decision.announcement,
            ), subject=f"call/{entry.call_id}", correlationid=entry.call_id)
            return
        entry.reject(now, decision.reason or "")
        self.floor.save_entry(tx, entry)
        self.engine.call_left(entry.call_id, ts(now))
        await tx.emit(CallRejected(
            call_id=entry.call_id, queue=entry.queue, reason=decision.reason or "",
            outcome="callback" if decision.kind == "callback" else "release",
            announcement=decision.announcement,
        ), subject=f"call/{entry.call_id}", correlationid=entry.call_id)

    async def _emit_decided(self, tx: Transaction, decision: Decision,
                            explanation: dict[str, Any], reservation_id: str | None) -> None:
        await tx.emit(RoutingDecided(
            call_id=decision.call_id, queue=decision.queue, kind=decision.kind,
            agent_id=decision.agent_id, reservation_id=reservation_id,
            step=decision.step, explanation=explanation,
        ), subject=f"call/{decision.call_id}", correlationid=decision.call_id)

    async def apply_config(self, tx: Transaction, config: RoutingConfig, *, source: str,
                           created_by: str | None) -> tuple[int, list[str]]:
        """Store a new version and apply it live; returns (version, warnings)."""
        await self.lock(tx)
        return await self._store_config(tx, config, source=source, created_by=created_by)

    async def _store_config(self, tx: Transaction, config: RoutingConfig, *, source: str,
                            created_by: str | None) -> tuple[int, list[str]]:
        now = tx.now
        skills = [a.skills for a in self.floor.agents.values()]
        warnings = config_warnings(config, skills)
        version = await store.save_config(tx, config.model_dump(mode="json"), warnings,
                                          source, created_by, now)
        await self.ensure_queues(tx, config.queues)
        self.engine.set_config(config)
        self.config_version, self.config_warnings = version, warnings
        self._decisions.extend(self.engine.tick(ts(now)))
        await self.apply_decisions(tx)
        for warning in warnings:
            log.warning("routing config", version=version, warning=warning)
        return version, warnings

    def follow(self, decisions: Iterable[Decision]) -> None:
        """Apply these engine decisions too, with the unit's others (``apply_decisions``)."""
        self._decisions.extend(decisions)

    def mark_stale(self) -> None:
        """The engine no longer mirrors the tables: the next routing unit rebuilds it."""
        self._stale = True

    async def rebuild_read_model(self, view: Transaction) -> None:
        """A standby's engine rebuilt from the tables for the GETs, routing nothing (the
        configuration file is left to the active instance); stale for the next routing."""
        checked, self._file_checked = self._file_checked, True
        try:
            await self._rebuild(view)
        finally:
            self._file_checked = checked
            self._decisions.clear()
            self._stale = True

    async def _rebuild(self, tx: Transaction) -> None:
        """Build the engine from the tables (at startup, or after another process or a
        rolled-back transaction changed them)."""
        now = tx.now
        # What this unit staged so far is part of the tables it rebuilds from.
        await self.floor.flush(tx)
        stored = await store.latest_config(tx)
        config = RoutingConfig.model_validate(stored["config"]) if stored else None
        self.engine = RoutingEngine(config or RoutingConfig())
        everyone = await store.load_agents(tx)
        entries = await store.live_entries(tx)
        self.floor.reset(everyone, entries, [r["call_id"] for r in await tx.fetch(
            store.RECENTLY_RELEASED, ENDED_KEPT)])
        agents = [a for a in everyone if a.state is not AgentState.LOGGED_OUT]
        today = self.today(now)
        for agent in agents:
            self.engine.agent_logged_in(
                AgentSpec(agent.agent_id, agent.skills, team=agent.team,
                          department=agent.department), ts(now),
                calls_today=agent.calls_handled if agent.handled_day == today else 0)
        if self.engine.history_days > 0:
            # Whom each caller last spoke to, so their preferred agent survives a restart.
            since = now - timedelta(days=self.engine.history_days)
            for customer, agent_id, answered_at in await store.last_served(tx, since):
                self.engine.remember_served(customer, agent_id, ts(answered_at))
        for entry in entries:
            if entry.state is EntryState.RESERVED and entry.agent_id:
                self.engine.call_reserved(call_spec(entry), entry.agent_id, ts(now))
        for entry in entries:
            if entry.state is EntryState.WAITING:
                self._decisions.extend(self.engine.call_arrived(call_spec(entry), ts(now)))
        for agent in agents:
            if agent.state is AgentState.READY:
                self._decisions.extend(self.engine.agent_ready(
                    agent.agent_id, ts(now),
                    since=ts(agent.ready_since) if agent.ready_since else None))
        if stored:
            self.config_version, self.config_warnings = stored["version"], stored["warnings"]
        if not self._file_checked:
            self._file_checked = True
            path = self.settings.config_file
            if path is not None or stored is None:
                from_file = load_config_file(path or DEFAULT_CONFIG_FILE)
                if config is None or from_file != config:
                    await self._store_config(tx, from_file, source="file",
                                             created_by=str(path or DEFAULT_CONFIG_FILE))

    async def lock(self, tx: Transaction) -> None:
        """Take the routing lock, fence and bump the generation once per database
        transaction (a batch's later handlers find them held), and rebuild the engine first
        if the tables moved on without it."""
        if "acd.generation" not in tx.shared:
            fence = self.fence
            after, lease = await repository.open_routing(
                tx, ROUTING_LOCK, fence.idle_timeout_ms if fence is not None else None)
            if fence is not None:
                fence.check(lease)
            tx.shared["acd.generation"] = after
            if self.generation != after - 1:
                self._stale = True
            # Until this commits, the engine is ahead of the tables: a rollback must rebuild.
            self.generation = None

            def committed() -> None:
                # Adopted the moment the commit returns, before the routing lock's next
                # holder (a concurrent REST request) runs: it then finds the engine current.
                if not self._stale:
                    self.generation = after
                if self.on_deadline is not None:
                    self.on_deadline(_earliest(tx.shared.get("acd.deadline"),
                                               self._engine_deadline()))

            def rolled_back() -> None:
                self._stale = True

            tx.stage("acd.generation", _nothing_to_write, committed=committed,
                     rolled_back=rolled_back)
        # Only now, holding the lock: what is left over belongs to nobody (an earlier handler
        # of this batch flushed its own).
        self._decisions.clear()
        if self._stale:
            self._stale = False
            await self._rebuild(tx)

    async def ensure_queues(self, tx: Transaction, names: Iterable[str]) -> None:
        """Queues are created on first use; the ones this process knows exist cost nothing."""
        new = sorted(set(names) - self._known_queues)
        if not new:
            return
        await store.ensure_queues(tx, new, tx.now)
        self._known_queues.update(new)
        tx.on_rollback(lambda: self._known_queues.difference_update(new))

    async def reserved_agent(self, tx: Transaction, entry: QueueEntry) -> Agent | None:
        """The agent holding the entry's reservation, or None (and a warning) if the two
        records disagree; the entry is still moved on so the call is not stuck."""
        agent = self.floor.agent(entry.agent_id or "")
        if (agent is None or agent.state is not AgentState.RESERVED
                or agent.reservation_id != entry.reservation_id):
            log.warning("reserved entry without its reserved agent", call_id=entry.call_id,
                        agent_id=entry.agent_id)
            return None
        return agent

    async def abandon(self, tx: Transaction, entry: QueueEntry) -> None:
        waited = entry.abandon(tx.now)
        self.engine.call_left(entry.call_id, ts(tx.now))
        self.floor.save_entry(tx, entry)
        await tx.emit(CallAbandoned(
            call_id=entry.call_id, queue=entry.queue, waited_seconds=waited,
        ), subject=f"call/{entry.call_id}", correlationid=entry.call_id)

    async def save_agent(self, tx: Transaction, agent: Agent, change: StateChange | None
                          ) -> None:
        self.floor.save_agent(tx, agent)
        self.note_deadline(tx, agent.wrapup_deadline)
        self.note_deadline(tx, agent.auto_ready_at)
        self._sync_agent(agent, tx.now)
        if change is None:
            return
        # Kept for the statistics: occupancy from the state history, handle time from the
        # end of wrap-up.
        self.floor.record_state_change(
            tx, agent_id=change.agent_id, at=tx.now, previous=change.previous.value,
            state=change.state.value, reason=change.reason, call_id=change.call_id)
        if change.previous is AgentState.WRAP_UP and change.call_id is not None:
            self.floor.record(tx, store.MARK_WRAPUP_ENDED, change.call_id, tx.now)
        await tx.emit(AgentStateChanged(
            agent_id=change.agent_id, previous=change.previous.value,
            state=change.state.value, reason=change.reason, call_id=change.call_id,
        ), subject=f"agent/{change.agent_id}", correlationid=change.call_id)

    def _sync_agent(self, agent: Agent, now: datetime) -> None:
        """Tell the engine what the agent's state now means for routing."""
        engine = self.engine
        if agent.state is AgentState.LOGGED_OUT:
            engine.agent_logged_out(agent.agent_id, ts(now))
        elif agent.state is AgentState.READY:
            since = ts(agent.ready_since) if agent.ready_since else ts(now)
            if not engine.is_ready(agent.agent_id, since):
                if not engine.has_agent(agent.agent_id):
                    engine.agent_logged_in(AgentSpec(agent.agent_id, agent.skills,
                                                     team=agent.team,
                                                     department=agent.department), ts(now))
                self._decisions.extend(engine.agent_ready(agent.agent_id, ts(now), since=since))
        else:
            engine.agent_busy(agent.agent_id, ts(now))

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()
