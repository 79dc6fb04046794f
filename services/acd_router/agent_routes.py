"""REST for the agent's next state, wrap-up extension and supervisor overrides (``/v1``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.auth import Principal, require
from shared.errors import NotFound
from shared.service import Service, service_of

from . import agent_commands, store
from .domain import AgentState
from .domain.queue import NAME_PATTERN
from .mirror import Acd
from .routes import READERS, SELF_WRITERS, AgentView, acd_of, agent_view, check_reads

AgentId = Annotated[str, Path(pattern=NAME_PATTERN)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=64)]
SUPERVISORS = require("supervisor")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class NextStateBody(Strict):
    # ready clears a queued state.
    state: Literal["ready", "not_ready", "logged_out"]
    reason: Reason | None = None


class ExtendBody(Strict):
    # Omitted: the queue's wrapup.extend_seconds. Capped by the queue's wrapup.max_seconds.
    seconds: Annotated[float, Field(gt=0, le=3600)] | None = None


class ForceBody(Strict):
    state: Literal["ready", "not_ready", "logged_out"]
    # Why, for the audit (required: an override nobody can explain is not allowed).
    reason: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    # The not-ready reason code the agent gets (default "supervisor").
    reason_code: Reason | None = None


class ExtendedView(AgentView):
    extended_seconds: float


class AuditView(BaseModel):
    id: int
    agent_id: str
    at: datetime
    actor: str
    from_state: str
    from_reason: str | None
    to_state: str
    to_reason: str | None
    why: str
    deferred: bool
    call_id: str | None


class ForcedView(BaseModel):
    agent: AgentView
    audit: AuditView


def add_agent_routes(router: APIRouter) -> None:

    @router.post("/agents/{agent_id}/next-state")
    async def set_next_state(agent_id: AgentId, body: NextStateBody,
                             svc: Service = Depends(service_of),
                             acd: Acd = Depends(acd_of),
                             who: Principal = Depends(SELF_WRITERS)) -> AgentView:
        """The state to take once the current call and its wrap-up are over (e.g. not ready
        ``break``); 409 unless reserved, on call or in wrap-up."""
        async with svc.transaction() as tx:
            agent = await agent_commands.set_next(acd, tx, agent_id, AgentState(body.state),
                                                  body.reason, by=who)
        return agent_view(agent, svc.clock.now(), acd)

    @router.post("/agents/{agent_id}/wrapup/extend")
    async def extend_wrap_up(agent_id: AgentId, body: ExtendBody,
                             svc: Service = Depends(service_of),
                             acd: Acd = Depends(acd_of),
                             who: Principal = Depends(SELF_WRITERS)) -> ExtendedView:
        """More wrap-up time; 409 outside wrap-up or when the queue's cap is reached."""
        async with svc.transaction() as tx:
            agent, added = await agent_commands.extend_wrap_up(acd, tx, agent_id, body.seconds,
                                                                 by=who)
        view = agent_view(agent, svc.clock.now(), acd)
        return ExtendedView(**view.model_dump(), extended_seconds=round(added, 3))

    @router.post("/agents/{agent_id}/force")
    async def force_state(agent_id: AgentId, body: ForceBody,
                          svc: Service = Depends(service_of), acd: Acd = Depends(acd_of),
                          who: Principal = Depends(SUPERVISORS)) -> ForcedView:
        """A supervisor sets the state of any logged-in agent it oversees, audited. Reserved: the call goes
        back to its place. On call: applied when the call ends (``audit.deferred``)."""
        async with svc.transaction() as tx:
            agent, audit = await agent_commands.force(
                acd, tx, agent_id, AgentState(body.state), reason_code=body.reason_code,
                why=body.reason, by=who)
        return ForcedView(agent=agent_view(agent, svc.clock.now(), acd),
                          audit=AuditView.model_validate(audit))

    @router.get("/agents/{agent_id}/audit")
    async def get_audit(agent_id: AgentId, svc: Service = Depends(service_of),
                        who: Principal = READERS) -> list[AuditView]:
        async with svc.reader() as session:
            agent = await store.load_agent(session, agent_id)
            if agent is None:
                raise NotFound("agent", agent_id)
            check_reads(who, agent)
            rows = await store.audit_of(session, agent_id)
        return [AuditView.model_validate(r) for r in rows]
