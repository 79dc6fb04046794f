"""Application handlers: find the call, let the domain decide, save it and record what it
emits in one unit of work; commands to the switch go out only after that commit.

Every entry point (switch frames: ``switch``; consumed events: ``events``; REST:
``commands``; the ring timer, here) runs in the service's single writer, so decisions about
one call are taken one at a time in arrival order whatever their origin, on the calls this
process keeps in memory (:mod:`services.cti_gateway.repository`). A frame that changes nothing costs
no database work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from services.cti_gateway import db
from services.cti_gateway.domain import Call, Effect, Emit, Send
from services.cti_gateway.repository import Calls
from services.cti_gateway.settings import CtiSettings
from services.cti_gateway.switchboard import Switchboard, SwitchConnection, SwitchGone
from shared import effects as shared_effects
from shared import switch_frames as frames
from shared.bus import Bus
from shared.clock import Clock
from shared.messaging import Transaction
from shared.service import Service
from shared.timers import Timer

log = structlog.get_logger(__name__)


class Cti:
    """The gateway at run time: its service kit (composed), the switch connections, the
    calls it keeps in memory and the ring timer."""

    def __init__(self, settings: CtiSettings, *, bus: Bus | None = None,
                 clock: Clock | None = None) -> None:
        self.service = Service(
            "cti_gateway", db.SCHEMA, settings, metadata=db.metadata,
            migrations_dir=Path(__file__).parents[1] / "migrations", bus=bus, clock=clock,
            writer_sessions=False)
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
    link = connection or cti.switchboard.carrier(call.switch_id)
    if link is not None and link.id != call.switch_id:
        call.carried_by(link.id)  # its connection is gone; the switch's new one has it
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
        link = connection or cti.switchboard.carrier(call.switch_id)
        if link is None:
            log.warning("switch not connected here; commands dropped", call_id=call.call_id,
                        switch_id=call.switch_id, commands=[s.method for s in sends])
        else:
            done.append(shared_effects.AfterCommit(
                _delivery(cti, link, call.call_id, reply, sends)))
    await tx.apply(done)


def _delivery(cti: Cti, link: SwitchConnection, call_id: str, reply: dict[str, Any] | None,
              sends: list[Send]) -> Callable[[], Awaitable[None]]:
    """The reply, then the switch requests in the order the domain gave them. An agent
    leg's INVITE carries the media grant for the switch it goes to."""
    async def deliver() -> None:
        try:
            if reply is not None:
                await link.send(reply)
            for send in sends:
                cseq = send.cseq if send.cseq is not None else link.next_cseq()
                fields = send.fields
                if send.method == "INVITE" and send.leg == "agent":
                    fields = {**fields, "media_grant": cti.service.auth.mint_media_grant(
                        link.name, call_id)}
                await link.send(frames.request(send.method, call_id, cseq, send.leg,
                                               fields))
        except SwitchGone:
            # The call is released with cause switch_lost once the disconnect is handled.
            log.warning("switch disconnected before commands could be sent", call_id=call_id)

    return deliver


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
