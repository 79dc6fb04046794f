"""Agent commands beyond ready / not ready: the next state after this call, wrap-up
extension and supervisor overrides (audited). Same pattern as :mod:`handlers`: routing lock,
load, let the domain decide, save, emit, one transaction; kept apart so the handlers module
stays about routing.

Each command acts for the agent itself or for a principal that oversees the agent's team or
department (:meth:`shared.auth.Principal.check_directs`): a team's supervisor is refused
another team's agents with 403."""

from __future__ import annotations

from typing import Any

from shared.auth import Principal
from shared.errors import NotFound
from shared.events.acd import ReservationExpired
from shared.messaging import Transaction

from . import store
from .domain import Action, Agent, AgentSpec, AgentState
from .domain.config import Wrapup, wrapup_of
from .domain.policy import ts
from .mirror import Acd


async def _agent(acd: Acd, tx: Transaction, agent_id: str, by: Principal) -> Agent:
    await acd.lock(tx)
    agent = acd.floor.agent(agent_id)
    if agent is None:
        raise NotFound("agent", agent_id)
    by.check_directs(agent_id, agent.team, agent.department)
    return agent


async def set_next(acd: Acd, tx: Transaction, agent_id: str, state: AgentState,
                   reason: str | None, *, by: Principal) -> Agent:
    agent = await _agent(acd, tx, agent_id, by)
    agent.set_next(tx.now, state, reason)
    await acd.save_agent(tx, agent, None)
    return agent


async def extend_wrap_up(acd: Acd, tx: Transaction, agent_id: str, seconds: float | None, *,
                         by: Principal) -> tuple[Agent, float]:
    """Returns the agent and the seconds actually added (the queue caps the total)."""
    agent = await _agent(acd, tx, agent_id, by)
    if seconds is None:
        # The call's queue says how much one extension adds (outside wrap-up there is no
        # call, and the domain refuses the request below).
        entry = await acd.floor.entry(tx, agent.call_id or "")
        seconds = (wrapup_of(acd.engine.config, entry.queue, acd.settings.wrapup_seconds)
                   if entry else Wrapup()).extend_seconds
    added = agent.extend_wrap_up(tx.now, seconds)
    await acd.save_agent(tx, agent, None)
    return agent, added


async def force(acd: Acd, tx: Transaction, agent_id: str, state: AgentState, *,
                reason_code: str | None, why: str, by: Principal
                ) -> tuple[Agent, dict[str, Any]]:
    """A supervisor sets the agent's state. A ringing reservation is withdrawn (the call goes
    back to its place; CTI stops the ring on ``acd.reservation.expired``); a call in progress
    is not cut: the state becomes the agent's next one. Every force is audited."""
    agent = await _agent(acd, tx, agent_id, by)
    now = tx.now
    call_id = agent.call_id
    forced = agent.force_to(state, now, reason_code=reason_code)
    if forced.withdrawn is not None:
        call_id, reservation_id = forced.withdrawn
        entry = await acd.floor.entry(tx, call_id)
        if entry is not None and entry.holds(reservation_id):
            # Not the agent's failure to answer: no ring-no-answer counted against the call.
            entry.requeue(ring_failed=False)
            acd.floor.save_entry(tx, entry)
            acd.floor.close_decision(tx, reservation_id, "withdrawn", now, "supervisor")
            await tx.emit(ReservationExpired(call_id=call_id, agent_id=agent.agent_id,
                                             reservation_id=reservation_id),
                          subject=f"call/{call_id}", correlationid=call_id)
            acd.follow(acd.engine.requeue(call_id, ts(now)))
    await acd.save_agent(tx, agent, forced.change)
    audit = await store.record_audit(
        tx, agent_id=agent.agent_id, at=now, actor=by.subject, from_state=forced.from_state.value,
        from_reason=forced.from_reason, to_state=state.value, to_reason=forced.reason, why=why,
        deferred=forced.deferred, call_id=call_id)
    await acd.apply_decisions(tx)
    return agent, audit


async def login(acd: Acd, tx: Transaction, agent_id: str, *, skills: dict[str, int],
                device: str | None, team: str | None, department: str | None,
                by: Principal) -> Agent:
    """A supervisor logs in only agents of its part of the floor, into it: the agent's team
    on record and the one it is given must both be theirs."""
    await acd.lock(tx)
    now = tx.now
    known = acd.floor.agent(agent_id)
    if known is not None:
        by.check_directs(agent_id, known.team, known.department)
    agent = known or Agent(agent_id)
    by.check_directs(agent_id, team or agent.team, department or agent.department)
    change = agent.login(now, skills=skills, device=device, team=team, department=department,
                         may_assign=by.acts_for_others)
    await acd.ensure_queues(tx, skills)
    acd.engine.agent_logged_in(AgentSpec(agent.agent_id, dict(skills), team=agent.team,
                                         department=agent.department), ts(now))
    await acd.save_agent(tx, agent, change)
    await acd.apply_decisions(tx)
    return agent


async def request_state(acd: Acd, tx: Transaction, agent_id: str, action: Action,
                        reason: str | None, *, by: Principal) -> Agent:
    agent = await _agent(acd, tx, agent_id, by)
    change = agent.request(action, tx.now, reason=reason)
    await acd.save_agent(tx, agent, change)
    await acd.apply_decisions(tx)
    return agent
