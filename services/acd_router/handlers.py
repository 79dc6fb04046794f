"""Command and event handlers: load state, let the domain decide, save, emit — one transaction.

Every handler that changes state first takes one transaction-scoped advisory lock, so REST
requests, the event consumer and the deadline poller (in any number of replicas) apply their
changes one at a time and an agent can never be reserved twice.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import exists, select, text

from shared.db import advisory_key
from shared.envelope import Envelope
from shared.errors import NotFound
from shared.events.cti import AgentAlerting, AgentRingFailed, CallConnected, CallReleased
from shared.events.ivr import SessionCompleted
from shared.messaging import Transaction

from . import store
from .db import agents as agents_table
from .db import queue_entries
from .domain import (
    LONGEST_IDLE,
    Action,
    Agent,
    AgentState,
    EntryState,
    QueueEntry,
    StateChange,
    Strategy,
    estimate_wait,
    match,
    position,
)
from .domain.queue import valid_name
from .settings import AcdSettings

log = structlog.get_logger(__name__)

ROUTING_LOCK = advisory_key("acd:routing")
CONSUMED = ("ivr.session.completed", "cti.call.connected", "cti.call.released",
            "cti.agent.ring_failed", "cti.agent.alerting")


class Acd:
    def __init__(self, settings: AcdSettings, strategy: Strategy = LONGEST_IDLE) -> None:
        self.settings = settings
        self.strategy = strategy
        self.zone = ZoneInfo(settings.timezone)

    # -- REST commands -------------------------------------------------------------------------

    async def login(self, tx: Transaction, agent_id: str, *, skills: dict[str, int],
                    device: str | None, team: str | None) -> Agent:
        await self._lock(tx)
        now = tx.now
        agent = await store.load_agent(tx.session, agent_id) or Agent(agent_id)
        change = agent.login(now, skills=skills, device=device, team=team)
        await store.ensure_queues(tx.session, skills, now)
        await self._save_agent(tx, agent, change)
        return agent

    async def request_state(self, tx: Transaction, agent_id: str, action: Action,
                            reason: str | None) -> Agent:
        await self._lock(tx)
        agent = await store.load_agent(tx.session, agent_id)
        if agent is None:
            raise NotFound("agent", agent_id)
        change = agent.request(action, tx.now, reason=reason)
        await self._save_agent(tx, agent, change)
        if agent.state is AgentState.READY:
            await self.route(tx)
        return agent

    # -- events --------------------------------------------------------------------------------

    async def handle(self, tx: Transaction, envelope: Envelope) -> None:
        """Dispatch one consumed event. Events that no longer apply are logged and dropped:
        raising would only redeliver them to the dead-letter queue."""
        await self._lock(tx)
        data = envelope.data
        match envelope.type:
            case "ivr.session.completed":
                await self._session_completed(tx, SessionCompleted.model_validate(data))
            case "cti.call.connected":
                await self._connected(tx, CallConnected.model_validate(data))
            case "cti.call.released":
                await self._released(tx, CallReleased.model_validate(data))
            case "cti.agent.ring_failed":
                await self._ring_failed(tx, AgentRingFailed.model_validate(data))
            case "cti.agent.alerting":
                await self._alerting(tx, AgentAlerting.model_validate(data))
            case _:
                log.warning("unexpected event type", event_type=envelope.type)

    async def _session_completed(self, tx: Transaction, event: SessionCompleted) -> None:
        route = event.route
        if event.outcome != "routed" or route is None:
            return
        session, now, call_id = tx.session, tx.now, event.call_id
        if not valid_name(route.queue) or len(call_id) > 64:
            # Redelivery cannot fix a bad name; dead-lettering it would only hide the log line.
            log.error("unroutable: bad queue name or call id", call_id=call_id,
                      queue=route.queue)
            return
        if await store.was_released(session, call_id):
            log.info("stale: call released before it was routed", call_id=call_id)
            return
        if await store.load_entry(session, call_id) is not None:
            log.info("stale: call already queued", call_id=call_id)
            return
        await store.ensure_queues(session, [route.queue], now)
        entry = QueueEntry(
            call_id=call_id, queue=route.queue, enqueued_at=now, priority=route.priority,
            skills=list(route.skills),
            customer=route.customer.model_dump(mode="json") if route.customer else None,
            from_number=route.from_number,
        )
        await store.save_entry(session, entry)
        waiting = await store.live_entries(session, route.queue, [EntryState.WAITING])
        place = position(entry, waiting)
        staffed = [a for a in await store.load_agents(session)
                   if a.state is not AgentState.LOGGED_OUT and a.skills.get(route.queue, 0) >= 1]
        ready = sum(1 for a in staffed if a.state is AgentState.READY)
        await tx.emit("acd.call.queued", {
            "call_id": call_id, "queue": entry.queue, "priority": entry.priority,
            "position": place,
            "estimated_wait_seconds": estimate_wait(
                place, ready_agents=ready, staffed_agents=len(staffed),
                handle_seconds=self.settings.default_handle_seconds),
            "customer": entry.customer,
        }, subject=f"call/{call_id}", correlationid=call_id)
        await self.route(tx)

    async def _connected(self, tx: Transaction, event: CallConnected) -> None:
        session, now = tx.session, tx.now
        entry = await store.load_entry(session, event.call_id)
        if entry is None:
            return  # not a call ACD routed (an outbound callback, a direct transfer)
        if not entry.holds(event.reservation_id, event.agent_id):
            log.info("stale: connected for a reservation no longer held", call_id=event.call_id,
                     entry_state=entry.state.value, reservation_id=event.reservation_id)
            return
        agent = await self._reserved_agent(tx, entry)
        reservation_id = entry.reservation_id
        entry.answer(now)
        await store.save_entry(session, entry)
        await store.close_decision(session, reservation_id, "connected", now)
        if agent is not None:
            await self._save_agent(tx, agent, agent.connect(now, self.today(now)))

    async def _released(self, tx: Transaction, event: CallReleased) -> None:
        session, now, call_id = tx.session, tx.now, event.call_id
        entry = await store.load_entry(session, call_id)
        if entry is None:
            await store.remember_released(session, call_id, now)
            return
        if entry.state is EntryState.WAITING:
            await self._abandon(tx, entry)
        elif entry.state is EntryState.RESERVED:
            agent = await self._reserved_agent(tx, entry)
            reservation_id = entry.reservation_id
            await self._abandon(tx, entry)
            await store.close_decision(session, reservation_id, "cancelled", now, event.cause)
            if agent is not None:
                await self._save_agent(tx, agent, agent.cancel(now))
                await self.route(tx)
        elif entry.state is EntryState.ANSWERED and entry.ended_at is None:
            entry.finish(now)
            await store.save_entry(session, entry)
            agent = await store.load_agent(session, entry.agent_id or "")
            if agent is None or agent.state is not AgentState.ON_CALL or agent.call_id != call_id:
                log.warning("released call's agent is not on it", call_id=call_id,
                            agent_id=entry.agent_id)
                return
            await self._save_agent(tx, agent, agent.call_ended(now, self.settings.wrapup_seconds))
        else:
            log.info("stale: release of a call already ended", call_id=call_id,
                     entry_state=entry.state.value)

    async def _ring_failed(self, tx: Transaction, event: AgentRingFailed) -> None:
        session, now = tx.session, tx.now
        entry = await store.load_entry(session, event.call_id)
        if entry is None or not entry.holds(event.reservation_id):
            log.info("stale: ring failure for a reservation no longer held",
                     call_id=event.call_id, reservation_id=event.reservation_id)
            return
        agent = await self._reserved_agent(tx, entry)
        await store.close_decision(session, entry.reservation_id, "ring_failed", now,
                                   event.reason)
        if event.reason == "caller_gone":
            # The caller is gone for good: requeueing would only ring another agent for
            # nobody. The release that follows finds the entry already abandoned.
            await self._abandon(tx, entry)
            change = agent.cancel(now) if agent else None
        else:
            entry.requeue()
            await store.save_entry(session, entry)
            change = agent.ring_failed(now) if agent else None
        if agent is not None:
            await self._save_agent(tx, agent, change)
        await self.route(tx)

    async def _alerting(self, tx: Transaction, event: AgentAlerting) -> None:
        entry = await store.load_entry(tx.session, event.call_id)
        if entry is None or not entry.holds(event.reservation_id):
            log.info("stale: alerting for a reservation no longer held", call_id=event.call_id)
            return
        await store.mark_alerting(tx.session, event.reservation_id, tx.now)

    # -- deadlines -----------------------------------------------------------------------------

    async def anything_due(self, tx: Transaction) -> bool:
        """Cheap unlocked check so the poller only takes the routing lock when it has work."""
        now = tx.now
        query = select(
            exists().where(queue_entries.c.state == EntryState.RESERVED.value,
                           queue_entries.c.reservation_expires_at <= now)
            | exists().where(agents_table.c.state == AgentState.WRAP_UP.value,
                             agents_table.c.wrapup_deadline <= now))
        return bool((await tx.session.execute(query)).scalar())

    async def run_deadlines(self, tx: Transaction) -> int:
        """Expire overdue reservations and end over-long wrap-ups; returns how many."""
        await self._lock(tx)
        session, now = tx.session, tx.now
        done = 0
        for entry in await store.reservations_due(session, now):
            agent = await self._reserved_agent(tx, entry)
            reservation_id, agent_id = entry.reservation_id, entry.agent_id
            assert reservation_id is not None and agent_id is not None
            entry.requeue()
            await store.save_entry(session, entry)
            await store.close_decision(session, reservation_id, "expired", now)
            await tx.emit("acd.reservation.expired", {
                "call_id": entry.call_id, "agent_id": agent_id, "reservation_id": reservation_id,
            }, subject=f"call/{entry.call_id}", correlationid=entry.call_id)
            if agent is not None:
                await self._save_agent(tx, agent, agent.expire(now))
            done += 1
        for agent in await store.wrap_ups_due(session, now):
            await self._save_agent(tx, agent, agent.end_wrap_up(now))
            done += 1
        if done:
            await self.route(tx)
        return done

    # -- routing -------------------------------------------------------------------------------

    async def route(self, tx: Transaction) -> None:
        """Match waiting calls to ready agents and reserve each pair."""
        session, now = tx.session, tx.now
        waiting = await store.live_entries(session, states=[EntryState.WAITING])
        if not waiting:
            return
        ready = {a.agent_id: a for a in await store.load_agents(session,
                                                                 states=[AgentState.READY])}
        entries = {e.call_id: e for e in waiting}
        for decision in match(waiting, ready.values(), self.strategy):
            entry, agent = entries[decision.call_id], ready[decision.agent_id]
            reservation_id = str(uuid.uuid4())
            entry.reserve(now, agent_id=agent.agent_id, reservation_id=reservation_id,
                          timeout_seconds=self.settings.reservation_timeout_seconds)
            change = agent.reserve(now, call_id=entry.call_id, reservation_id=reservation_id)
            await store.save_entry(session, entry)
            await store.record_decision(session, entry, self.strategy.name, now)
            await tx.emit("acd.agent.reserved", {
                "call_id": entry.call_id, "agent_id": agent.agent_id, "device": agent.device,
                "queue": entry.queue, "reservation_id": reservation_id,
                "expires_at": entry.reservation_expires_at,
            }, subject=f"call/{entry.call_id}", correlationid=entry.call_id)
            await self._save_agent(tx, agent, change)

    # -- helpers -------------------------------------------------------------------------------

    async def _lock(self, tx: Transaction) -> None:
        await tx.session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": ROUTING_LOCK})

    async def _reserved_agent(self, tx: Transaction, entry: QueueEntry) -> Agent | None:
        """The agent holding the entry's reservation, or None (and a warning) if the two
        records disagree; the entry is still moved on so the call is not stuck."""
        agent = await store.load_agent(tx.session, entry.agent_id or "")
        if (agent is None or agent.state is not AgentState.RESERVED
                or agent.reservation_id != entry.reservation_id):
            log.warning("reserved entry without its reserved agent", call_id=entry.call_id,
                        agent_id=entry.agent_id)
            return None
        return agent

    async def _abandon(self, tx: Transaction, entry: QueueEntry) -> None:
        waited = entry.abandon(tx.now)
        await store.save_entry(tx.session, entry)
        await tx.emit("acd.call.abandoned", {
            "call_id": entry.call_id, "queue": entry.queue, "waited_seconds": waited,
        }, subject=f"call/{entry.call_id}", correlationid=entry.call_id)

    async def _save_agent(self, tx: Transaction, agent: Agent, change: StateChange | None
                          ) -> None:
        await store.save_agent(tx.session, agent)
        if change is None:
            return
        await tx.emit("acd.agent.state_changed", {
            "agent_id": change.agent_id, "previous": change.previous.value,
            "state": change.state.value, "reason": change.reason, "call_id": change.call_id,
        }, subject=f"agent/{change.agent_id}", correlationid=change.call_id)

    def today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()
