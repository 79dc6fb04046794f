"""The events the ACD consumes (``consumes``: one handler per model) and its deadline pass:
gather the facts on the floor, let the domain decide (``domain/``), apply. Every handler that
changes the floor runs under the routing lock (:meth:`Acd.lock`), and the routing decisions
it leads to are applied in the same unit of work."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from shared.consumers import Consumes
from shared.errors import Conflict, IllegalTransition, Invalid
from shared.events import EventData
from shared.events.acd import (
    CallQueued,
    ReservationExpired,
)
from shared.events.cti import (
    AgentAlerting,
    AgentRingFailed,
    CallConnected,
    CallReleased,
    DtmfReceived,
)
from shared.events.ivr import SessionCompleted
from shared.messaging import Transaction

from . import call_commands, store
from .domain import (
    QueueEntry,
)
from .domain.config import wrapup_of
from .domain.engine import (
    OVERFLOWED,
    RESERVED,
)
from .domain.policy import (
    ReleaseMeans,
    call_spec,
    offers_virtual_hold,
    release_means,
    takes_virtual_hold_key,
    ts,
)
from .domain.queue import valid_name
from .mirror import Acd

log = structlog.get_logger(__name__)


def consumes(acd: Acd) -> Consumes:
    """What the ACD consumes. A key pressed in the queue goes straight to its handler;
    the rest change the floor, under the routing lock, and are followed by the routing
    decisions they lead to. Events that no longer apply are logged and dropped by their
    handlers: raising would only redeliver them to the dead-letter queue."""
    table = Consumes()
    table.add(DtmfReceived, functools.partial(dtmf, acd))
    on_floor: list[tuple[type[EventData], Callable[[Acd, Transaction, Any], Awaitable[None]]]] = [
        (SessionCompleted, session_completed), (CallConnected, connected),
        (CallReleased, released), (AgentRingFailed, ring_failed),
        (AgentAlerting, alerting),
    ]
    for model, handler in on_floor:
        table.add(model, routed(acd, functools.partial(handler, acd)))
    return table


def routed(acd: Acd, handler: Callable[[Transaction, Any], Awaitable[None]]
           ) -> Callable[[Transaction, Any], Awaitable[None]]:
    async def run(tx: Transaction, event: Any) -> None:
        await acd.lock(tx)
        await handler(tx, event)
        await acd.apply_decisions(tx)

    return run


async def dtmf(acd: Acd, tx: Transaction, event: DtmfReceived) -> None:
    """A key pressed while waiting in a queue may be the virtual-hold digit. Digits in
    the IVR are the IVR's: cheap unlocked check first, the routing lock only for ours."""
    # Only a live entry can take the digit, and every live one is on the floor.
    entry = acd.floor.entries.get(event.call_id)
    # When CTI heard the key: a delivery held up (this router restarting, say) is late.
    pressed_at = tx.cause.time if tx.cause is not None else tx.now
    if entry is None or not takes_virtual_hold_key(
            entry, acd.virtual_hold_policy(entry.queue), event.digits, pressed_at):
        return
    try:
        await call_commands.virtual_hold(acd, tx, event.call_id, None)
    except (Conflict, IllegalTransition, Invalid) as refused:
        # The caller pressed too late (an agent is ringing) or the wait got short.
        log.info("virtual hold by key refused", call_id=event.call_id, reason=str(refused))


async def session_completed(acd: Acd, tx: Transaction, event: SessionCompleted) -> None:
    route = event.route
    if event.outcome != "routed" or route is None:
        return
    now, call_id = tx.now, event.call_id
    if not valid_name(route.queue) or len(call_id) > 64:
        # Redelivery cannot fix a bad name; dead-lettering it would only hide the log line.
        log.error("unroutable: bad queue name or call id", call_id=call_id,
                  queue=route.queue)
        return
    if call_id in acd.floor.released:
        log.info("stale: call released before it was routed", call_id=call_id)
        return
    # Queued before (a second request for it): the floor has every recent entry.
    if acd.floor.entries.get(call_id) is not None:
        log.info("stale: call already queued", call_id=call_id)
        return
    await acd.ensure_queues(tx, [route.queue])
    entry = QueueEntry(
        call_id=call_id, queue=route.queue, enqueued_at=now, priority=route.priority,
        skills=list(route.skills),
        customer=route.customer.model_dump(mode="json") if route.customer else None,
        from_number=route.from_number,
    )
    acd.floor.save_entry(tx, entry)
    decisions = acd.engine.call_arrived(call_spec(entry, restore=False), ts(now))
    if any(d.kind not in (RESERVED, OVERFLOWED) for d in decisions):
        acd.follow(decisions)
        return  # turned away: acd.call.rejected says so, there is no place to announce
    queue = next((d.target_queue for d in reversed(decisions)
                  if d.kind == OVERFLOWED and d.target_queue), entry.queue)
    estimate = acd.engine.estimated_wait(call_id, ts(now))
    policy = acd.virtual_hold_policy(queue)
    offered = offers_virtual_hold(
        policy, from_number=entry.from_number,
        reserved=any(d.kind == RESERVED for d in decisions), estimate=estimate,
        numbers=acd.numbers)
    await tx.emit(CallQueued(
        call_id=call_id, queue=queue, priority=entry.priority,
        position=max(1, acd.engine.position(call_id, ts(now))),
        estimated_wait_seconds=estimate, customer=entry.customer,
        virtual_hold_digit=policy.digit if offered else None,
    ), subject=f"call/{call_id}", correlationid=call_id)
    acd.follow(decisions)


async def connected(acd: Acd, tx: Transaction, event: CallConnected) -> None:
    now = tx.now
    entry = await acd.floor.entry_for_call(tx, event.call_id)
    if entry is None:
        return  # not a call ACD routed (an outbound callback, a direct transfer)
    if not entry.holds(event.reservation_id, event.agent_id):
        log.info("stale: connected for a reservation no longer held", call_id=event.call_id,
                 entry_state=entry.state.value, reservation_id=event.reservation_id)
        return
    agent = await acd.reserved_agent(tx, entry)
    reservation_id = entry.reservation_id
    entry.answer(now)
    acd.engine.call_left(entry.call_id, ts(now))
    acd.floor.save_entry(tx, entry)
    acd.floor.close_decision(tx, reservation_id, "connected", now)
    if agent is not None:
        await acd.save_agent(tx, agent, agent.connect(now, acd.today(now)))


async def released(acd: Acd, tx: Transaction, event: CallReleased) -> None:
    now = tx.now
    entry = await acd.floor.entry_for_call(tx, event.call_id)
    if entry is None:
        acd.floor.remember_released(tx, event.call_id, now)
        return
    call_id = entry.call_id
    means = release_means(entry, event.call_id)
    if means is ReleaseMeans.OTHER_CALL:
        log.info("release of a call the entry no longer waits on", call_id=call_id,
                 released=event.call_id)
    elif means is ReleaseMeans.ABANDONED:
        await acd.abandon(tx, entry)
    elif means is ReleaseMeans.ABANDONED_RINGING:
        # Workorder owes an identified customer the callback.
        agent = await acd.reserved_agent(tx, entry)
        reservation_id = entry.reservation_id
        await acd.abandon(tx, entry)
        acd.floor.close_decision(tx, reservation_id, "cancelled", now, event.cause)
        if agent is not None:
            await acd.save_agent(tx, agent, agent.cancel(now))
    elif means is ReleaseMeans.CALL_ENDED:
        await call_ended(acd, tx, entry)
    elif means is ReleaseMeans.STALE:
        log.info("stale: release of a call already ended", call_id=call_id,
                 entry_state=entry.state.value)


async def call_ended(acd: Acd, tx: Transaction, entry: QueueEntry) -> None:
    """The agent goes to the queue's wrap-up, or straight on if there is none."""
    now, call_id = tx.now, entry.call_id
    entry.finish(now)
    acd.floor.save_entry(tx, entry)
    agent = acd.floor.agent(entry.agent_id or "")
    if agent is None or not agent.on_call(call_id):
        log.warning("released call's agent is not on it", call_id=call_id,
                    agent_id=entry.agent_id)
        return
    # The queue's wrap-up policy: its length, whether the agent may cut it short.
    policy = wrapup_of(acd.engine.config, entry.queue, acd.settings.wrapup_seconds)
    await acd.save_agent(tx, agent, agent.call_ended(
        now, policy.seconds or 0.0, mandatory=policy.mode == "mandatory",
        max_seconds=policy.max_seconds))
    if agent.wrap_up_due(now):
        # No wrap-up to wait for (none configured, or the agent already declined it):
        # free the agent in this transaction, not at the next deadline pass, which
        # would add a poll interval to every call's holding time.
        await acd.save_agent(tx, agent, agent.end_wrap_up(now))


async def ring_failed(acd: Acd, tx: Transaction, event: AgentRingFailed) -> None:
    now = tx.now
    entry = await acd.floor.entry_for_call(tx, event.call_id)
    if entry is None or not entry.holds(event.reservation_id):
        log.info("stale: ring failure for a reservation no longer held",
                 call_id=event.call_id, reservation_id=event.reservation_id)
        return
    agent = await acd.reserved_agent(tx, entry)
    acd.floor.close_decision(tx, entry.reservation_id, "ring_failed", now,
                               event.reason)
    if event.reason == "caller_gone":
        # The caller is gone for good: requeueing would only ring another agent for
        # nobody. The release that follows finds the entry already abandoned.
        await acd.abandon(tx, entry)
        change = agent.cancel(now) if agent else None
    else:
        entry.requeue()
        acd.floor.save_entry(tx, entry)
        change = (agent.ring_failed(now, auto_ready_after=acd.auto_ready_seconds)
                  if agent else None)
    if agent is not None:
        await acd.save_agent(tx, agent, change)
    if entry.waiting:
        acd.follow(acd.engine.requeue(entry.call_id, ts(now)))


async def alerting(acd: Acd, tx: Transaction, event: AgentAlerting) -> None:
    entry = await acd.floor.entry_for_call(tx, event.call_id)
    if entry is None or not entry.holds(event.reservation_id):
        log.info("stale: alerting for a reservation no longer held", call_id=event.call_id)
        return
    acd.floor.record(tx, store.MARK_ALERTING, event.reservation_id, tx.now)


async def run_deadlines(acd: Acd, tx: Transaction) -> int:
    """Expire overdue reservations and end over-long wrap-ups; returns how many."""
    await acd.lock(tx)
    now = tx.now
    done = 0
    for entry in acd.floor.reservations_due(now):
        agent = await acd.reserved_agent(tx, entry)
        reservation_id, agent_id = entry.reservation_id, entry.agent_id
        assert reservation_id is not None and agent_id is not None
        dial_call_id = entry.callback_call_id  # set only for a held caller's dial
        entry.requeue()
        acd.floor.save_entry(tx, entry)
        acd.follow(acd.engine.requeue(entry.call_id, ts(now)))
        acd.floor.close_decision(tx, reservation_id, "expired", now)
        await tx.emit(ReservationExpired(
            call_id=entry.call_id, agent_id=agent_id, reservation_id=reservation_id,
            dial_call_id=dial_call_id,
        ), subject=f"call/{entry.call_id}", correlationid=entry.call_id)
        if agent is not None:
            await acd.save_agent(
                tx, agent, agent.expire(now, auto_ready_after=acd.auto_ready_seconds))
        done += 1
    for agent in acd.floor.wrap_ups_due(now):
        await acd.save_agent(tx, agent, agent.end_wrap_up(now))
        done += 1
    for agent in acd.floor.auto_readies_due(now):
        await acd.save_agent(tx, agent, agent.auto_ready(now))
        done += 1
    ticked = acd.engine.tick(ts(now))
    acd.follow(ticked)
    await acd.apply_decisions(tx)
    return done + len(ticked)
