"""Application handlers: find the call, let the domain decide, save it and record what it
emits in one unit of work; commands to the switch go out only after that commit.

Every entry point (switch frames, consumed events, REST, the ring timer) runs in the
service's single writer (``cti.run`` / ``cti.service.messaging.submit``), so decisions about one call
are taken one at a time in arrival order whatever their origin, on the calls this process
keeps in memory (:mod:`services.cti_gateway.repository`). A frame that changes nothing costs
no database work.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from services.cti_gateway import db, frames
from services.cti_gateway.domain import Call, CallState, Effect, Emit, Send, hangup
from services.cti_gateway.repository import Calls
from services.cti_gateway.settings import CtiSettings
from services.cti_gateway.switchboard import Switchboard, SwitchConnection, SwitchGone
from shared import effects as shared_effects
from shared.bus import Bus
from shared.clock import Clock
from shared.consumers import Consumes
from shared.errors import Conflict, IllegalTransition, NotFound
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
from shared.service import Service
from shared.timers import Timer

log = structlog.get_logger(__name__)

class Cti:
    """The gateway at run time: its service kit (composed), the switch connections, the
    calls it keeps in memory and the ring timer."""

    def __init__(self, settings: CtiSettings, *, bus: Bus | None = None,
                 clock: Clock | None = None) -> None:
        self.service = Service("cti_gateway", db.SCHEMA, settings, metadata=db.metadata,
                               migrations_dir=Path(__file__).parent / "migrations", bus=bus,
                               clock=clock, writer_sessions=False)
        self.settings = settings
        self.switchboard = Switchboard()
        self.calls = Calls()
        # Suite seconds a phone rings: the settings, but at least their wall-time floor.
        scale = self.service.clock.scale
        floor = settings.ring_min_wall_seconds * scale
        self.ring_seconds = max(settings.ring_timeout_seconds, floor)
        self.customer_ring_seconds = max(settings.customer_ring_timeout_seconds, floor)
        self.ring_timer = Timer(self.service.clock, lambda: fire_rings(self),
                                recheck_wall_seconds=settings.timer_poll_seconds,
                                name="cti rings")


class UnknownCall(LookupError):
    pass


def subject(call_id: str) -> str:
    return f"call/{call_id}"


async def apply(cti: Cti, tx: Transaction, call: Call, effects: list[Effect], *,
                new: bool = False, reply: dict[str, Any] | None = None,
                connection: SwitchConnection | None = None) -> None:
    """How every decision about a call is applied: the call saved (``new``: added), then
    :func:`carry_out`."""
    if new:
        cti.calls.add(tx, call)
    else:
        cti.calls.save(tx, call)
    await carry_out(cti, tx, call, effects, reply=reply, connection=connection)


async def carry_out(cti: Cti, tx: Transaction, call: Call, effects: list[Effect], *,
                    reply: dict[str, Any] | None = None,
                    connection: SwitchConnection | None = None) -> None:
    """Record the call's events in the outbox now; send the reply and the switch requests
    once the transaction has committed, in the order the domain gave them."""
    sends = [effect for effect in effects if isinstance(effect, Send)]
    done: list[shared_effects.Effect] = [
        *(shared_effects.Emit(effect.event, subject(call.call_id), call.call_id)
          for effect in effects if isinstance(effect, Emit)),
        shared_effects.Wake(cti.ring_timer, call.ring_deadline),
    ]
    if reply is not None or sends:
        link = connection or cti.switchboard.get(call.switch_id)
        if link is None:
            log.warning("switch not connected here; commands dropped", call_id=call.call_id,
                        switch_id=call.switch_id, commands=[s.method for s in sends])
        else:
            done.append(shared_effects.AfterCommit(_delivery(link, call.call_id, reply, sends)))
    await tx.apply(done)


def _delivery(link: SwitchConnection, call_id: str, reply: dict[str, Any] | None,
              sends: list[Send]) -> Callable[[], Awaitable[None]]:
    """The reply, then the switch requests in the order the domain gave them."""
    async def deliver() -> None:
        try:
            if reply is not None:
                await link.send(reply)
            for send in sends:
                cseq = send.cseq if send.cseq is not None else link.next_cseq()
                await link.send(frames.request(send.method, call_id, cseq, send.leg,
                                               send.fields))
        except SwitchGone:
            # The call is released with cause switch_lost once the disconnect is handled.
            log.warning("switch disconnected before commands could be sent", call_id=call_id)

    return deliver


# -- switch frames ----------------------------------------------------------------------------


def _refuse(tx: Transaction, link: SwitchConnection,
            code: Literal["unknown_call", "illegal_state"], message: str,
            frame: frames.AnyFrame) -> None:
    """An error frame, sent in turn with the replies of the frames handled before it."""
    async def send() -> None:
        try:
            await link.send(frames.error(code, message, frame.call_id, frame.cseq))
        except SwitchGone:
            pass

    tx.after_commit(send)


async def on_frame(cti: Cti, tx: Transaction, link: SwitchConnection,
                   frame: frames.AnyFrame) -> None:
    if isinstance(frame, frames.ErrorFrame):
        log.warning("switch reported an error", code=frame.code, message=frame.message,
                    call_id=frame.call_id, cseq=frame.cseq)
        return
    try:
        if isinstance(frame, frames.Response):
            await on_response(cti, tx, link, frame)
        elif isinstance(frame, frames.InviteRequest):
            await on_invite(cti, tx, link, frame)
        else:
            await on_request(cti, tx, link, frame)
    except UnknownCall:
        _refuse(tx, link, "unknown_call", f"no call {frame.call_id!r}", frame)
    except IllegalTransition as refused:
        _refuse(tx, link, "illegal_state", str(refused), frame)


async def on_invite(cti: Cti, tx: Transaction, link: SwitchConnection,
                    invite: frames.InviteRequest) -> None:
    existing = await cti.calls.get(tx, invite.call_id)
    if existing is not None:
        raise IllegalTransition("call", existing.state.value, "be offered again",
                                existing.allowed())
    call, effects = Call.offer(invite.call_id, invite.from_number, invite.to_number, tx.now,
                               switch_id=link.id)
    await apply(cti, tx, call, effects, new=True, reply=frames.response(invite, 200),
                connection=link)
    log.info("call offered", call_id=invite.call_id, from_number=invite.from_number,
             to_number=invite.to_number)


async def on_request(cti: Cti, tx: Transaction, link: SwitchConnection,
                     request: frames.AckRequest | frames.ByeRequest | frames.CancelRequest
                     | frames.InfoRequest) -> None:
    call = await cti.calls.get(tx, request.call_id)
    if call is None:
        raise UnknownCall(request.call_id)
    if isinstance(request, frames.AckRequest):
        # ACK completes our 200 to the INVITE; nothing changes and nothing is answered.
        # It may arrive after the call already ended (the IVR released it at once).
        if request.leg != call.party:
            raise IllegalTransition("call", call.state.value, f"take an ACK on {request.leg}",
                                    call.allowed())
        return
    if isinstance(request, frames.InfoRequest):
        if request.leg != call.party:
            raise IllegalTransition("call", call.state.value,
                                    f"take DTMF on its {request.leg} leg", call.allowed())
        effects = call.receive_dtmf(request.dtmf)
    elif isinstance(request, frames.ByeRequest):
        effects = hangup(call, request.leg, tx.now)
    else:
        effects = call.cancel(request.leg, tx.now)
    await apply(cti, tx, call, effects, reply=frames.response(request, 200),
                    connection=link)


async def on_response(cti: Cti, tx: Transaction, link: SwitchConnection,
                      response: frames.Response) -> None:
    call = await cti.calls.get(tx, response.call_id)
    if call is None:
        raise UnknownCall(response.call_id)
    effects: list[Effect] = []
    if response.method == "INVITE" and response.leg == "agent":
        effects = call.on_agent_response(
            response.cseq, response.status, tx.now, next_cseq=link.next_cseq,
            dial_timeout=cti.customer_ring_seconds)
    elif response.method == "INVITE" and response.leg == "customer":
        effects = call.on_customer_response(response.cseq, response.status, tx.now)
    elif response.status >= 300:
        # A refused INFO, BYE or CANCEL changes nothing we own; worth a trace only.
        log.info("switch refused a request", call_id=call.call_id, method=response.method,
                 leg=response.leg, status=response.status, reason=response.reason)
    if not effects:
        return
    await apply(cti, tx, call, effects, connection=link)


async def switch_lost(cti: Cti, link: SwitchConnection) -> int:
    """The switch went away: every call it carried is over (its legs went with it). Queued
    behind the frames it sent before it went."""

    async def release_all(tx: Transaction) -> int:
        released = 0
        for call_id in await cti.calls.live_on_switch(tx, link.id):
            call = await cti.calls.get(tx, call_id)
            if call is None or not call.live:
                continue
            effects = call.release("switch_lost", tx.now, notify_switch=False)
            await apply(cti, tx, call, effects)
            released += 1
        return released

    released: int = await cti.service.run(release_all, staged=True)
    if released:
        log.warning("switch lost; calls released", switch_id=link.id, calls=released)
    return released


# -- consumed events --------------------------------------------------------------------------


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
    link = cti.switchboard.get(call.switch_id)
    if link is None:
        await tx.emit(AgentRingFailed(
            call_id=data.call_id, agent_id=data.agent_id, reservation_id=data.reservation_id,
            reason="unreachable"), subject=subject(data.call_id), correlationid=data.call_id)
        log.warning("cannot ring: the call's switch is not connected here", call_id=call.call_id)
        return
    effects = call.ring_agent(data.agent_id, data.device, data.reservation_id, data.queue,
                              tx.now, ring_timeout=cti.ring_seconds,
                              invite_cseq=link.next_cseq())
    await apply(cti, tx, call, effects, connection=link)


async def _dial_agent_first(cti: Cti, tx: Transaction, data: AgentReserved,
                            call_id: str, number: str) -> None:
    """A caller on virtual hold reached an agent: ring the agent on a new outbound call;
    the customer is dialled once the agent answers."""
    if await cti.calls.get(tx, call_id) is not None:
        return  # the same reservation again (a re-emitted event): already dialling
    # The switch that carried the caller's call, if it is still here: the same trunk.
    held = await cti.calls.get(tx, data.call_id)
    link = cti.switchboard.get(held.switch_id) if held is not None else None
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
        invite_cseq=link.next_cseq(), now=tx.now, ring_timeout=cti.ring_seconds)
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


# -- REST commands ----------------------------------------------------------------------------


async def get_call(cti: Cti, call_id: str) -> Call:
    async with cti.service.sessions() as session:
        call = await db.load(session, call_id)
    if call is None:
        raise NotFound("call", call_id)
    return call


async def answer(cti: Cti, call_id: str, agent_id: str) -> Call:
    async def work(tx: Transaction) -> Call:
        call = await cti.calls.get(tx, call_id)
        if call is None:
            raise NotFound("call", call_id)
        effects = call.request_answer(agent_id)
        if cti.switchboard.get(call.switch_id) is None:
            raise Conflict(f"the switch carrying call {call_id!r} is not connected here")
        await carry_out(cti, tx, call, effects)
        return call

    answered: Call = await cti.service.run(work, staged=True)
    return answered


async def release(cti: Cti, call_id: str, agent_id: str, *, supervisor: bool) -> Call:
    async def work(tx: Transaction) -> Call:
        call = await cti.calls.get(tx, call_id)
        if call is None:
            raise NotFound("call", call_id)
        if not supervisor and call.live and call.agent_id not in (None, agent_id):
            raise IllegalTransition("call", call.state.value,
                                    f"be released by agent {agent_id!r} (it is "
                                    f"{call.agent_id!r}'s)", call.allowed())
        effects = call.release("agent_release", tx.now)
        await apply(cti, tx, call, effects)
        return call

    released: Call = await cti.service.run(work, staged=True)
    log.info("call released on request", call_id=call_id, agent_id=agent_id)
    return released


async def list_calls(cti: Cti, state: CallState | None, limit: int, *,
                     live: bool = False) -> list[Call]:
    async with cti.service.sessions() as session:
        return await db.list_calls(session, state, limit, live=live)


# -- timers -----------------------------------------------------------------------------------


async def expire_rings(cti: Cti) -> int:
    """Give up on agents whose phone rang past the deadline: CANCEL, tell ACD, requeue."""

    async def work(tx: Transaction) -> int:
        expired = 0
        for call_id in await cti.calls.due_rings(tx, tx.now):
            call = await cti.calls.get(tx, call_id)
            if call is None:
                continue
            effects = call.check_ring_timeout(tx.now)
            if not effects:
                continue
            await apply(cti, tx, call, effects)
            expired += 1
        return expired

    expired: int = await cti.service.run(work, staged=True)
    return expired


async def fire_rings(cti: Cti) -> datetime | None:
    """The ring timer's work: give up on the rings that are due; the next ring deadline."""
    await expire_rings(cti)
    async with cti.service.sessions() as session:
        return await db.next_ring_deadline(session)
