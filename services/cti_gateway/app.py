"""cti_gateway: the call state machine and the only link to the softswitch."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket, status
from pydantic import BaseModel, ConfigDict, Field

from services.cti_gateway import frames, handlers
from services.cti_gateway.domain import Call, CallState
from services.cti_gateway.handlers import Cti
from services.cti_gateway.settings import CtiSettings
from services.cti_gateway.switchboard import SwitchConnection
from shared.auth import Principal, authorize_websocket, require
from shared.bus import Bus
from shared.clock import Clock
from shared.messaging import Transaction

log = structlog.get_logger(__name__)

READERS = ("agent", "supervisor", "service", "integrator")
CONTROLLERS = ("agent", "supervisor")


class AgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=64)


class LegsView(BaseModel):
    party: str
    party_state: str
    agent: str


class CallView(BaseModel):
    call_id: str
    direction: str
    state: CallState
    from_number: str
    to_number: str
    agent_id: str | None
    agent_device: str | None
    reservation_id: str | None
    queue: str | None
    context: dict[str, Any]
    last_prompt_id: str | None
    request_id: str | None
    legs: LegsView
    allowed_actions: list[str]
    ring_deadline: datetime | None
    offered_at: datetime
    answered_at: datetime | None
    connected_at: datetime | None
    released_at: datetime | None
    cause: str | None

    @classmethod
    def of(cls, call: Call) -> CallView:
        return cls(
            call_id=call.call_id, direction=call.direction, state=call.state,
            from_number=call.from_number, to_number=call.to_number, agent_id=call.agent_id,
            agent_device=call.agent_device, reservation_id=call.reservation_id,
            queue=call.queue, context=call.context, last_prompt_id=call.last_prompt_id,
            request_id=call.request_id,
            legs=LegsView(party=call.party, party_state=call.party_leg.value,
                          agent=call.agent_leg.value),
            allowed_actions=call.allowed(), ring_deadline=call.ring_deadline,
            offered_at=call.offered_at, answered_at=call.answered_at,
            connected_at=call.connected_at, released_at=call.released_at, cause=call.cause)


def cti_of(request: Request) -> Cti:
    """FastAPI dependency: the running gateway."""
    cti: Cti = request.app.state.cti
    return cti


def _rest_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["calls"])

    @router.get("/calls/{call_id}", dependencies=[Depends(require(*READERS))])
    async def get_call(call_id: str, cti: Cti = Depends(cti_of)) -> CallView:
        return CallView.of(await handlers.get_call(cti, call_id))

    @router.get("/calls", dependencies=[Depends(require(*READERS))])
    async def list_calls(state: CallState | None = None,
                         live: bool = Query(default=False, description="only calls not yet "
                                            "released"),
                         limit: int = Query(default=100, ge=1, le=1000),
                         cti: Cti = Depends(cti_of)) -> list[CallView]:
        return [CallView.of(call)
                for call in await handlers.list_calls(cti, state, limit, live=live)]

    @router.post("/calls/{call_id}/answer", status_code=status.HTTP_202_ACCEPTED)
    async def answer(call_id: str, body: AgentBody,
                     _: Principal = Depends(require(*CONTROLLERS)),
                     cti: Cti = Depends(cti_of)) -> CallView:
        # Accepted, not done: the call connects when the phone's 200 comes back.
        return CallView.of(await handlers.answer(cti, call_id, body.agent_id))

    @router.post("/calls/{call_id}/release")
    async def release(call_id: str, body: AgentBody,
                      principal: Principal = Depends(require(*CONTROLLERS)),
                      cti: Cti = Depends(cti_of)) -> CallView:
        supervisor = bool(principal.scopes & {"supervisor", "admin"})
        return CallView.of(await handlers.release(cti, call_id, body.agent_id,
                                                  supervisor=supervisor))

    return router


def _switch_router() -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/switch")
    async def switch(websocket: WebSocket) -> None:
        principal = await authorize_websocket(websocket, "switch")
        if principal is None:
            return
        cti: Cti = websocket.app.state.cti
        await websocket.accept()
        link = SwitchConnection(websocket, principal.subject)
        cti.switchboard.add(link)
        log.info("switch connected", switch_id=link.id, subject=principal.subject)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await _dispatch(cti, link, message.get("text"))
        finally:
            cti.switchboard.remove(link)
            await handlers.switch_lost(cti, link)
            log.info("switch disconnected", switch_id=link.id)

    return router


async def _dispatch(cti: Cti, link: SwitchConnection, text: str | None) -> None:
    """Queue the frame for the writer, which handles frames in arrival order (with whatever
    else is queued, in one unit of work); replies go out once it has committed."""
    try:
        frame = frames.parse(text)
    except frames.BadFrame as bad:
        await link.send(frames.error("bad_frame", str(bad), bad.call_id, bad.cseq))
        return

    async def work(tx: Transaction) -> None:
        with structlog.contextvars.bound_contextvars(call_id=frame.call_id):
            await handlers.on_frame(cti, tx, link, frame)

    done = cti.service.messaging.submit(work, staged=True)
    done.add_done_callback(_log_failure)
    if cti.service.messaging.backlog > cti.settings.frame_backlog:
        # The writer is behind: stop reading the switch until it catches up, rather than
        # queue without bound (the switch's own buffers then hold its frames).
        await asyncio.wait({done})


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("switch frame not handled", error=repr(done.exception()))


def create_app(settings: CtiSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or CtiSettings()
    cti = Cti(settings, bus=bus, clock=clock)
    cti.service.consume("events", handlers.consumes(cti), staged=True)
    cti.service.background(cti.ring_timer.run)
    app = cti.service.create_app(
        title="cti_gateway",
        description="Calls and legs, the call state machine, and the softswitch link.",
        routers=[_rest_router(), _switch_router()])
    app.state.cti = cti
    return app
