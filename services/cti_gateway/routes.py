"""cti_gateway's edges: REST on calls, and the softswitch's WebSocket link (frames in, to the
writer in arrival order; replies and requests out after the commit)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, WebSocket, status

from services.cti_gateway.domain import CallState
from services.cti_gateway.handlers import Cti, commands
from services.cti_gateway.handlers import switch as from_switch
from services.cti_gateway.schemas import AgentBody, CallView
from services.cti_gateway.switchboard import SwitchConnection
from shared import switch_frames as frames
from shared.auth import Principal, authorize_websocket, require
from shared.data_scope import data_scope
from shared.errors import Invalid
from shared.messaging import Transaction

log = structlog.get_logger(__name__)

READERS = ("agent", "supervisor", "service", "integrator")
CONTROLLERS = ("agent", "supervisor")
CallId = Annotated[str, Path(min_length=1, max_length=64)]


def cti_of(request: Request) -> Cti:
    """FastAPI dependency: the running gateway."""
    cti: Cti = request.app.state.cti
    return cti


def rest_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["calls"])

    @router.get("/calls/{call_id}")
    async def get_call(call_id: CallId, cti: Cti = Depends(cti_of),
                       principal: Principal = Depends(require(*READERS))) -> CallView:
        """An agent token reads its own calls; an integrator's numbers are masked unless
        its grants include ``personal``."""
        return CallView.shown(await commands.get_call(cti, call_id), data_scope(principal))

    @router.get("/calls")
    async def list_calls(state: CallState | None = None,
                         live: bool = Query(default=False, description="only calls not yet "
                                            "released"),
                         limit: int = Query(default=100, ge=1, le=1000),
                         cti: Cti = Depends(cti_of),
                         principal: Principal = Depends(require(*READERS))) -> list[CallView]:
        """Newest first; an agent token lists its own calls."""
        scope = data_scope(principal)
        return [CallView.shown(call, scope) for call in await commands.list_calls(
            cti, state, limit, scope, live=live)]

    @router.post("/calls/{call_id}/answer", status_code=status.HTTP_202_ACCEPTED)
    async def answer(call_id: CallId, body: AgentBody | None = None,
                     principal: Principal = Depends(require(*CONTROLLERS)),
                     cti: Cti = Depends(cti_of)) -> CallView:
        """The agent the call rings answers on the desktop. An agent token answers as
        itself (``agent_id`` may be left out); a supervisor names the agent."""
        agent_id = principal.agent_acted_for(body.agent_id if body else None)
        if agent_id is None:
            raise Invalid("agent_id", "name the agent who answers")
        # Accepted, not done: the call connects when the phone's 200 comes back.
        return CallView.of(await commands.answer(cti, call_id, agent_id, by=principal))

    @router.post("/calls/{call_id}/release")
    async def release(call_id: CallId, body: AgentBody | None = None,
                      principal: Principal = Depends(require(*CONTROLLERS)),
                      cti: Cti = Depends(cti_of)) -> CallView:
        """Hang up. An agent token releases only a call connected (or ringing) to itself;
        a supervisor any call of the agents it oversees (a team's supervisor: its team's;
        a caller not yet with an agent: a supervisor of the whole floor)."""
        agent_id = principal.agent_acted_for(body.agent_id if body else None)
        return CallView.of(await commands.release(cti, call_id, agent_id, by=principal))

    return router


def switch_router() -> APIRouter:
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
            await from_switch.audit(cti, link)
        except Exception:  # the link itself is fine: its calls are asked about next time
            log.exception("could not ask the switch about its earlier calls", switch_id=link.id)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await _dispatch(cti, link, message.get("text"))
        finally:
            cti.switchboard.remove(link)
            await from_switch.switch_lost(cti, link)
            log.info("switch disconnected", switch_id=link.id)

    return router


async def _dispatch(cti: Cti, link: SwitchConnection, text: str | None) -> None:
    """Queue the frame for the writer, which handles frames in arrival order (with whatever
    else is queued, in one unit of work); replies go out once it has committed."""
    try:
        frame = frames.parse_from_switch(text)
    except frames.BadFrame as bad:
        await link.send(frames.error("bad_frame", str(bad), bad.call_id, bad.cseq))
        return

    async def work(tx: Transaction) -> None:
        with structlog.contextvars.bound_contextvars(call_id=frame.call_id):
            await from_switch.on_frame(cti, tx, link, frame)

    done = cti.service.messaging.submit(work, staged=True)
    done.add_done_callback(_log_failure)
    if cti.service.messaging.backlog > cti.settings.frame_backlog:
        # The writer is behind: stop reading the switch until it catches up, rather than
        # queue without bound (the switch's own buffers then hold its frames).
        await asyncio.wait({done})


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("switch frame not handled", error=repr(done.exception()))
