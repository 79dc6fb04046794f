"""The events CTI consumes, one handler per model (``consumes``): prompts, releases, queue
and reservation news, callbacks to dial."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from services.cti_gateway.domain import Call
from services.cti_gateway.handlers import Cti, apply, subject
from shared.consumers import Consumes
from shared.errors import IllegalTransition
from shared.events import EventData
from shared.events.acd import (
    AgentReserved,
    CallQueued,
    CallRejected,
    ReservationExpired,
    VirtualHoldStarted,
)
from shared.events.cti import AgentRingFailed, OriginationFailed
from shared.events.ivr import PromptRequested, ReleaseRequested
from shared.events.workorder import CallbackRequested
from shared.messaging import Transaction

log = structlog.get_logger(__name__)


def consumes(cti: Cti) -> Consumes:
    """One queue for every event CTI consumes, so that an IVR prompt and the ACD events that
    follow it are applied in the order they were published."""
    table = Consumes(stale=(IllegalTransition,))
    handlers: list[tuple[type[EventData], Callable[[Cti, Transaction, Any],
                                                   Awaitable[None]]]] = [
        (PromptRequested, _prompt), (ReleaseRequested, _release_requested),
        (CallQueued, _queued), (CallRejected, _rejected), (VirtualHoldStarted, _virtual_hold),
        (AgentReserved, _reserved), (ReservationExpired, _reservation_expired),
        (CallbackRequested, _callback),
    ]
    for model, handler in handlers:
        table.add(model, functools.partial(handler, cti))
    return table


async def _live_call(cti: Cti, tx: Transaction, call_id: str, event_type: str
                     ) -> Call | None:
    call = await cti.calls.get(tx, call_id)
    if call is None:
        log.info("event for an unknown call ignored", event_type=event_type, call_id=call_id)
        return None
    if not call.live:
        log.info("event for a released call ignored", event_type=event_type, call_id=call_id)
        return None
    return call


async def _prompt(cti: Cti, tx: Transaction, data: PromptRequested) -> None:
    call = await _live_call(cti, tx, data.call_id, "ivr.prompt.requested")
    if call is None:
        return
    collect = data.collect.model_dump() if data.collect else None
    effects = call.play(data.prompt_id, data.text, collect)
    await apply(cti, tx, call, effects)


async def _release_requested(cti: Cti, tx: Transaction, data: ReleaseRequested) -> None:
    await _release(cti, tx, data.call_id, "ivr.release.requested", "ivr_release")


async def _release(cti: Cti, tx: Transaction, call_id: str, event_type: str,
                   cause: str) -> None:
    """Another service asked for the call to end (the IVR self-served it, or ACD rejected it)."""
    call = await _live_call(cti, tx, call_id, event_type)
    if call is None:
        return
    effects = call.release(cause, tx.now)
    await apply(cti, tx, call, effects)


async def _rejected(cti: Cti, tx: Transaction, data: CallRejected) -> None:
    """A queue limit turned the call away: the caller hears the announcement (the switch
    plays it before it acts on the BYE that follows), then the call ends. With outcome
    ``callback`` the announcement tells the caller they will be called back; workorder owes
    them the callback."""
    call = await _live_call(cti, tx, data.call_id, "acd.call.rejected")
    if call is None:
        return
    effects = []
    if data.announcement:
        effects += call.announce(f"acd-{data.reason}", data.announcement)
    effects += call.release("acd_rejected", tx.now)
    await apply(cti, tx, call, effects)


async def _virtual_hold(cti: Cti, tx: Transaction, data: VirtualHoldStarted) -> None:
    """The caller left a callback request that keeps their place: confirm it, then hang up.
    ACD calls them back (agent first) when the call reaches an agent."""
    call = await _live_call(cti, tx, data.call_id, "acd.call.virtual_hold_started")
    if call is None:
        return
    effects = []
    if data.announcement:
        effects += call.announce("acd-virtual-hold", data.announcement)
    effects += call.release("virtual_hold", tx.now)
    await apply(cti, tx, call, effects)


async def _queued(cti: Cti, tx: Transaction, data: CallQueued) -> None:
    call = await _live_call(cti, tx, data.call_id, "acd.call.queued")
    if call is None:
        return
    effects = call.enqueue(data.queue, data.position, data.estimated_wait_seconds,
                           data.virtual_hold_digit)
    await apply(cti, tx, call, effects)


async def _reserved(cti: Cti, tx: Transaction, data: AgentReserved) -> None:
    if data.dial is not None:
        await _dial_agent_first(cti, tx, data, data.dial.call_id, data.dial.number)
        return
    call = await cti.calls.get(tx, data.call_id)
    if call is None or not call.live:
        # ACD holds an agent for a call that is gone: give the agent back at once.
        await tx.emit(AgentRingFailed(
            call_id=data.call_id, agent_id=data.agent_id, reservation_id=data.reservation_id,
            reason="caller_gone"), subject=subject(data.call_id), correlationid=data.call_id)
        return
    if call.reservation_id == data.reservation_id:
        return  # the same reservation again (a re-emitted event): already ringing
    link = cti.switchboard.carrier(call.switch_id)
    if link is None:
        await tx.emit(AgentRingFailed(
            call_id=data.call_id, agent_id=data.agent_id, reservation_id=data.reservation_id,
            reason="unreachable"), subject=subject(data.call_id), correlationid=data.call_id)
        log.warning("cannot ring: the call's switch is not connected here", call_id=call.call_id)
        return
    effects = call.ring_agent(data.agent_id, data.device, data.reservation_id, data.queue,
                              tx.now, ring_timeout=cti.ring_seconds,
                              invite_cseq=link.next_cseq(), team=data.team,
                              department=data.department)
    await apply(cti, tx, call, effects, connection=link)


async def _dial_agent_first(cti: Cti, tx: Transaction, data: AgentReserved,
                            call_id: str, number: str) -> None:
    """A caller on virtual hold reached an agent: ring the agent on a new outbound call;
    the customer is dialled once the agent answers."""
    if await cti.calls.get(tx, call_id) is not None:
        return  # the same reservation again (a re-emitted event): already dialling
    # The switch that carried the caller's call, if it is still here: the same trunk.
    held = await cti.calls.get(tx, data.call_id)
    link = cti.switchboard.carrier(held.switch_id) if held is not None else None
    link = link or cti.switchboard.pick()
    if link is None:
        await tx.emit(AgentRingFailed(
            call_id=call_id, agent_id=data.agent_id, reservation_id=data.reservation_id,
            reason="unreachable"), subject=subject(call_id), correlationid=data.call_id)
        log.warning("cannot dial a virtual-hold callback: no switch connected",
                    call_id=data.call_id)
        return
    call, effects = Call.dial_agent_first(
        call_id, held_call_id=data.call_id, agent_id=data.agent_id, device=data.device,
        reservation_id=data.reservation_id, queue=data.queue,
        from_number=cti.settings.outbound_caller_id, to_number=number, switch_id=link.id,
        invite_cseq=link.next_cseq(), now=tx.now, ring_timeout=cti.ring_seconds,
        team=data.team, department=data.department)
    await apply(cti, tx, call, effects, new=True, connection=link)


async def _reservation_expired(cti: Cti, tx: Transaction, data: ReservationExpired
                               ) -> None:
    call = await _live_call(cti, tx, data.dial_call_id or data.call_id, "acd.reservation.expired")
    if call is None:
        return
    effects = call.withdraw_ring(data.reservation_id, tx.now)
    if effects:
        await apply(cti, tx, call, effects)


async def _callback(cti: Cti, tx: Transaction, data: CallbackRequested) -> None:
    if await cti.calls.exists_request(tx, data.request_id):
        log.info("callback request already placed", request_id=data.request_id)
        return
    # Downstream consumers (the IVR survey, workorder on failure) find the callback by the
    # call's context; make sure it names it even if the requester left that out.
    context = dict(data.context)
    for key, value in (("request_id", data.request_id), ("callback_id", data.callback_id),
                       ("order_id", data.order_id), ("attempt", data.attempt)):
        context.setdefault(key, value)
    link = cti.switchboard.pick()
    if link is None:
        await tx.emit(OriginationFailed(
            request_id=data.request_id, to_number=data.to_number, reason="no_switch_connected",
            context=context), subject=f"callback/{data.callback_id}")
        log.warning("no switch connected; origination failed", request_id=data.request_id)
        return
    headers = {"X-Hotline-Request-Id": data.request_id, "X-Hotline-Order-Id": data.order_id,
               "X-Hotline-Callback-Id": data.callback_id, "X-Hotline-Attempt": str(data.attempt)}
    if isinstance(context.get("reported_call_id"), str):
        # The call the case came from: a customer who reported twice knows which is meant.
        headers["X-Hotline-Reported-Call-Id"] = context["reported_call_id"]
    call, effects = Call.originate(
        f"OB-{uuid.uuid4().hex[:12]}", request_id=data.request_id,
        from_number=cti.settings.outbound_caller_id, to_number=data.to_number, context=context,
        headers=headers, switch_id=link.id, invite_cseq=link.next_cseq(), now=tx.now)
    await apply(cti, tx, call, effects, new=True, connection=link)
