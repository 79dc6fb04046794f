"""Loading and saving domain objects (SQLAlchemy Core over the ``acd`` tables)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .db import (
    agent_state_audit,
    agent_state_changes,
    agents,
    engine_state,
    queue_entries,
    queues,
    released_calls,
    routing_configs,
    routing_decisions,
)
from .domain import Agent, AgentState, EntryState, Pending, QueueEntry
from .domain.queue import LIVE_STATES

# -- agents ------------------------------------------------------------------------------------


def _agent(row: Any) -> Agent:
    pending = (Pending(AgentState(row.pending_state), row.pending_reason)
               if row.pending_state else None)
    return Agent(
        agent_id=row.agent_id, state=AgentState(row.state), reason=row.reason,
        skills=dict(row.skills), device=row.device, team=row.team, state_since=row.state_since,
        ready_since=row.ready_since, calls_handled=row.calls_handled,
        handled_day=row.handled_day, pending=pending, call_id=row.call_id,
        reservation_id=row.reservation_id, wrapup_deadline=row.wrapup_deadline,
        wrapup_mandatory=row.wrapup_mandatory, wrapup_limit=row.wrapup_limit,
        auto_ready_at=row.auto_ready_at,
    )


async def load_agent(session: AsyncSession, agent_id: str) -> Agent | None:
    row = (await session.execute(select(agents).where(agents.c.agent_id == agent_id))).first()
    return _agent(row) if row else None


async def load_agents(session: AsyncSession, *, states: Iterable[AgentState] | None = None
                      ) -> list[Agent]:
    query = select(agents).order_by(agents.c.agent_id)
    if states is not None:
        query = query.where(agents.c.state.in_([s.value for s in states]))
    return [_agent(row) for row in await session.execute(query)]


async def save_agent(session: AsyncSession, agent: Agent) -> None:
    values = {
        "state": agent.state.value, "reason": agent.reason, "skills": agent.skills,
        "device": agent.device, "team": agent.team, "state_since": agent.state_since,
        "ready_since": agent.ready_since, "calls_handled": agent.calls_handled,
        "handled_day": agent.handled_day,
        "pending_state": agent.pending.state.value if agent.pending else None,
        "pending_reason": agent.pending.reason if agent.pending else None,
        "call_id": agent.call_id, "reservation_id": agent.reservation_id,
        "wrapup_deadline": agent.wrapup_deadline,
        "wrapup_mandatory": agent.wrapup_mandatory, "wrapup_limit": agent.wrapup_limit,
        "auto_ready_at": agent.auto_ready_at,
    }
    await session.execute(insert(agents).values(agent_id=agent.agent_id, **values)
                          .on_conflict_do_update(index_elements=["agent_id"], set_=values))


async def wrap_ups_due(session: AsyncSession, now: datetime) -> list[Agent]:
    rows = await session.execute(
        select(agents).where(agents.c.state == AgentState.WRAP_UP.value,
                             agents.c.wrapup_deadline <= now)
        .order_by(agents.c.wrapup_deadline, agents.c.agent_id))
    return [_agent(row) for row in rows]


async def auto_readies_due(session: AsyncSession, now: datetime) -> list[Agent]:
    rows = await session.execute(
        select(agents).where(agents.c.state == AgentState.NOT_READY.value,
                             agents.c.auto_ready_at <= now)
        .order_by(agents.c.auto_ready_at, agents.c.agent_id))
    return [_agent(row) for row in rows]


# -- queues and entries -------------------------------------------------------------------------


async def ensure_queues(session: AsyncSession, names: Iterable[str], now: datetime) -> None:
    rows = [{"name": name, "created_at": now} for name in sorted(set(names))]
    if rows:
        await session.execute(insert(queues).values(rows).on_conflict_do_nothing())


async def queue_names(session: AsyncSession) -> list[str]:
    return list((await session.execute(select(queues.c.name).order_by(queues.c.name))).scalars())


async def queue_exists(session: AsyncSession, name: str) -> bool:
    return (await session.execute(select(queues.c.name).where(queues.c.name == name))
            ).first() is not None


def _entry(row: Any) -> QueueEntry:
    return QueueEntry(
        call_id=row.call_id, queue=row.queue, enqueued_at=row.enqueued_at,
        priority=row.priority, state=EntryState(row.state), skills=list(row.skills),
        customer=row.customer, from_number=row.from_number, agent_id=row.agent_id,
        reservation_id=row.reservation_id, reservation_expires_at=row.reservation_expires_at,
        answered_at=row.answered_at, ended_at=row.ended_at, ring_failures=row.ring_failures,
        outcome_reason=row.outcome_reason, callback_number=row.callback_number,
        callback_call_id=row.callback_call_id, callback_dials=row.callback_dials,
    )


async def load_entry(session: AsyncSession, call_id: str) -> QueueEntry | None:
    row = (await session.execute(select(queue_entries)
                                 .where(queue_entries.c.call_id == call_id))).first()
    return _entry(row) if row else None


async def entry_for_call(session: AsyncSession, call_id: str) -> QueueEntry | None:
    """The entry a CTI event is about: the routed call itself, or (virtual hold) the
    agent-first dial that calls its customer back."""
    entries = queue_entries.c
    row = (await session.execute(select(queue_entries).where(
        (entries.call_id == call_id) | (entries.callback_call_id == call_id)))).first()
    return _entry(row) if row else None


async def live_entries(session: AsyncSession, queue: str | None = None,
                       states: Iterable[EntryState] = LIVE_STATES) -> list[QueueEntry]:
    query = (select(queue_entries)
             .where(queue_entries.c.state.in_([s.value for s in states]))
             .order_by(queue_entries.c.priority.desc(), queue_entries.c.enqueued_at,
                       queue_entries.c.call_id))
    if queue is not None:
        query = query.where(queue_entries.c.queue == queue)
    return [_entry(row) for row in await session.execute(query)]


async def reservations_due(session: AsyncSession, now: datetime) -> list[QueueEntry]:
    rows = await session.execute(
        select(queue_entries).where(queue_entries.c.state == EntryState.RESERVED.value,
                                    queue_entries.c.reservation_expires_at <= now)
        .order_by(queue_entries.c.reservation_expires_at, queue_entries.c.call_id))
    return [_entry(row) for row in rows]


async def save_entry(session: AsyncSession, entry: QueueEntry) -> None:
    values = {
        "queue": entry.queue, "priority": entry.priority, "state": entry.state.value,
        "skills": entry.skills, "customer": entry.customer, "from_number": entry.from_number,
        "enqueued_at": entry.enqueued_at, "agent_id": entry.agent_id,
        "reservation_id": entry.reservation_id,
        "reservation_expires_at": entry.reservation_expires_at,
        "answered_at": entry.answered_at, "ended_at": entry.ended_at,
        "ring_failures": entry.ring_failures, "outcome_reason": entry.outcome_reason,
        "callback_number": entry.callback_number, "callback_call_id": entry.callback_call_id,
        "callback_dials": entry.callback_dials,
    }
    await session.execute(insert(queue_entries).values(call_id=entry.call_id, **values)
                          .on_conflict_do_update(index_elements=["call_id"], set_=values))


# -- routing decisions --------------------------------------------------------------------------


async def record_decision(session: AsyncSession, entry: QueueEntry, strategy: str,
                          now: datetime, *, step: int | None = None,
                          explanation: dict[str, Any] | None = None) -> None:
    assert entry.reservation_id and entry.agent_id and entry.reservation_expires_at
    await session.execute(routing_decisions.insert().values(
        reservation_id=entry.reservation_id, call_id=entry.call_id, agent_id=entry.agent_id,
        queue=entry.queue, strategy=strategy[:32], decided_at=now,
        expires_at=entry.reservation_expires_at, outcome="pending", kind="reserved", step=step,
        explanation=explanation))


async def record_outcome(session: AsyncSession, *, decision_id: str, call_id: str, queue: str,
                         kind: str, rule: str, step: int, reason: str | None,
                         explanation: dict[str, Any], now: datetime) -> None:
    """A decision without an agent (overflow, callback, release): final when made."""
    await session.execute(routing_decisions.insert().values(
        reservation_id=decision_id, call_id=call_id, agent_id=None, queue=queue,
        strategy=rule[:32], decided_at=now, expires_at=None, outcome=kind,
        outcome_reason=reason, outcome_at=now, kind=kind, step=step,
        explanation=explanation))


async def close_decision(session: AsyncSession, reservation_id: str | None, outcome: str,
                         now: datetime, reason: str | None = None) -> None:
    if reservation_id is None:
        return
    await session.execute(
        update(routing_decisions)
        .where(routing_decisions.c.reservation_id == reservation_id,
               routing_decisions.c.outcome == "pending")
        .values(outcome=outcome, outcome_reason=reason, outcome_at=now))


async def mark_alerting(session: AsyncSession, reservation_id: str, now: datetime) -> None:
    await session.execute(
        update(routing_decisions)
        .where(routing_decisions.c.reservation_id == reservation_id,
               routing_decisions.c.alerting_at.is_(None))
        .values(alerting_at=now))


async def decisions_of(session: AsyncSession, call_id: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(routing_decisions).where(routing_decisions.c.call_id == call_id)
        .order_by(routing_decisions.c.id))
    return [dict(row._mapping) for row in rows]


# -- calls released before they were queued -----------------------------------------------------


async def remember_released(session: AsyncSession, call_id: str, now: datetime) -> None:
    await session.execute(insert(released_calls).values(call_id=call_id, released_at=now)
                          .on_conflict_do_nothing())


async def was_released(session: AsyncSession, call_id: str) -> bool:
    return (await session.execute(select(released_calls.c.call_id)
                                  .where(released_calls.c.call_id == call_id))).first() is not None


# -- routing configuration and the engine generation ---------------------------------------------


async def latest_config(session: AsyncSession) -> dict[str, Any] | None:
    row = (await session.execute(select(routing_configs)
                                 .order_by(routing_configs.c.version.desc()).limit(1))).first()
    return dict(row._mapping) if row else None


async def config_version(session: AsyncSession, version: int) -> dict[str, Any] | None:
    row = (await session.execute(select(routing_configs)
                                 .where(routing_configs.c.version == version))).first()
    return dict(row._mapping) if row else None


async def config_versions(session: AsyncSession) -> list[dict[str, Any]]:
    rows = await session.execute(select(routing_configs.c.version, routing_configs.c.source,
                                        routing_configs.c.created_by,
                                        routing_configs.c.created_at,
                                        routing_configs.c.warnings)
                                 .order_by(routing_configs.c.version))
    return [dict(row._mapping) for row in rows]


async def save_config(session: AsyncSession, config: dict[str, Any], warnings: list[str],
                      source: str, created_by: str | None, now: datetime) -> int:
    latest = await latest_config(session)
    version = (latest["version"] if latest else 0) + 1
    await session.execute(routing_configs.insert().values(
        version=version, config=config, warnings=warnings, source=source,
        created_by=created_by, created_at=now))
    return version


async def bump_generation(session: AsyncSession) -> tuple[int, int]:
    """(generation before, generation after) of the routing state."""
    new = (await session.execute(
        update(engine_state).where(engine_state.c.id == 1)
        .values(generation=engine_state.c.generation + 1)
        .returning(engine_state.c.generation))).scalar_one()
    return int(new) - 1, int(new)


# -- agent history: state changes and supervisor overrides --------------------------------------


async def record_state_change(session: AsyncSession, *, agent_id: str, at: datetime,
                              previous: str, state: str, reason: str | None,
                              call_id: str | None) -> None:
    await session.execute(agent_state_changes.insert().values(
        agent_id=agent_id, at=at, previous=previous, state=state, reason=reason,
        call_id=call_id))


async def mark_wrapup_ended(session: AsyncSession, call_id: str, now: datetime) -> None:
    await session.execute(
        update(queue_entries)
        .where(queue_entries.c.call_id == call_id, queue_entries.c.wrapup_ended_at.is_(None),
               queue_entries.c.answered_at.is_not(None))
        .values(wrapup_ended_at=now))


async def record_audit(session: AsyncSession, **values: Any) -> dict[str, Any]:
    row = (await session.execute(agent_state_audit.insert().values(**values)
                                 .returning(agent_state_audit))).one()
    return dict(row._mapping)


async def audit_of(session: AsyncSession, agent_id: str) -> list[dict[str, Any]]:
    rows = await session.execute(select(agent_state_audit)
                                 .where(agent_state_audit.c.agent_id == agent_id)
                                 .order_by(agent_state_audit.c.id))
    return [dict(row._mapping) for row in rows]


async def last_served(session: AsyncSession, since: datetime) -> list[tuple[str, str, datetime]]:
    """(customer account, agent, answered at) of the latest answered call of each customer
    since ``since``: the preferred-agent history a rebuilt engine starts from."""
    account = queue_entries.c.customer["account"].astext
    rows = await session.execute(
        select(account, queue_entries.c.agent_id, queue_entries.c.answered_at)
        .where(queue_entries.c.answered_at >= since, queue_entries.c.agent_id.is_not(None),
               account.is_not(None))
        .distinct(account).order_by(account, queue_entries.c.answered_at.desc()))
    return [(row[0], row[1], row[2]) for row in rows]
