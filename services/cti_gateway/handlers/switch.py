"""Frames from the switch: a call offered, requests on its legs, responses to ours, the link lost."""

from __future__ import annotations

import contextlib
from typing import Literal

import structlog

from services.cti_gateway.domain import Call, Effect, hangup
from services.cti_gateway.handlers import Cti, UnknownCall, apply
from services.cti_gateway.switchboard import SwitchConnection, SwitchGone, switch_prefix
from shared import switch_frames as frames
from shared.errors import IllegalTransition
from shared.messaging import Transaction

log = structlog.get_logger(__name__)


def _reply(tx: Transaction, link: SwitchConnection, frame: dict[str, object]) -> None:
    """A frame to the switch, sent in turn with the replies of the frames handled before."""
    async def send() -> None:
        with contextlib.suppress(SwitchGone):
            await link.send(frame)

    tx.after_commit(send)


def _refuse(tx: Transaction, link: SwitchConnection,
            code: Literal["unknown_call", "illegal_state"], message: str,
            frame: frames.FromSwitch) -> None:
    """An error frame, sent in turn with the replies of the frames handled before it."""
    _reply(tx, link, frames.error(code, message, frame.call_id, frame.cseq))


async def on_frame(cti: Cti, tx: Transaction, link: SwitchConnection,
                   frame: frames.FromSwitch) -> None:
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


async def _carried(cti: Cti, tx: Transaction, link: SwitchConnection, call_id: str) -> Call:
    """The call, if this connection carries it: a connection acts only on its own calls (so
    one switch cannot hang up another's), and is told of no other. A reconnected switch takes
    over its own calls whose connection is gone (a CTI restart, say)."""
    call = await cti.calls.get(tx, call_id)
    if call is None:
        raise UnknownCall(call_id)
    if call.switch_id == link.id:
        return call
    if link.same_switch(call.switch_id) and cti.switchboard.get(call.switch_id) is None:
        call.carried_by(link.id)
        return call
    log.warning("frame for a call another connection carries", call_id=call_id,
                switch_id=link.id, carried_by=call.switch_id)
    raise UnknownCall(call_id)


async def on_invite(cti: Cti, tx: Transaction, link: SwitchConnection,
                    invite: frames.InviteRequest) -> None:
    existing = await cti.calls.get(tx, invite.call_id)
    if existing is not None:
        if (existing.live and link.same_switch(existing.switch_id)
                and existing.from_number == invite.from_number):
            # The switch sent it again (it heard no answer: the first may have been lost
            # with a CTI that died): the call stands, and the answer is given again.
            _reply(tx, link, frames.response(invite, 200))
            return
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
    call = await _carried(cti, tx, link, request.call_id)
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
    call = await _carried(cti, tx, link, response.call_id)
    effects: list[Effect] = []
    if response.method == "INVITE" and response.leg == "agent":
        effects = call.on_agent_response(
            response.cseq, response.status, tx.now, next_cseq=link.next_cseq,
            dial_timeout=cti.customer_ring_seconds)
    elif response.method == "INVITE" and response.leg == "customer":
        effects = call.on_customer_response(response.cseq, response.status, tx.now)
    elif response.method == "OPTIONS" and response.status == 481 and call.live:
        # The switch no longer has the call (its hang-up went down with an earlier CTI).
        effects = call.release("switch_lost", tx.now, notify_switch=False)
    elif response.status >= 300:
        # A refused INFO, BYE or CANCEL changes nothing we own; worth a trace only.
        log.info("switch refused a request", call_id=call.call_id, method=response.method,
                 leg=response.leg, status=response.status, reason=response.reason)
    if not effects:
        return
    await apply(cti, tx, call, effects, connection=link)


async def audit(cti: Cti, link: SwitchConnection) -> int:
    """A switch connected: ask it (OPTIONS) about each live call an earlier connection of
    it carried that is not here, as after a CTI restart; a frame lost with the dead process
    (a BYE, say) would otherwise leave the call live for ever. Returns the calls asked about."""

    async def asking(tx: Transaction) -> int:
        asked = []
        for call_id, connection_id in await cti.calls.live_of_switch(
                tx, switch_prefix(link.name)):
            if connection_id == link.id or cti.switchboard.get(connection_id) is not None:
                continue
            call = await cti.calls.get(tx, call_id)
            if call is not None and call.live:
                asked.append((call_id, call.party))

        async def send() -> None:
            with contextlib.suppress(SwitchGone):
                for call_id, leg in asked:
                    await link.send(frames.request("OPTIONS", call_id, link.next_cseq(), leg))

        if asked:
            tx.after_commit(send)
        return len(asked)

    asked: int = await cti.service.run(asking, staged=True)
    if asked:
        log.info("switch connected; asking it about calls of its earlier connections",
                 switch_id=link.id, calls=asked)
    return asked


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
