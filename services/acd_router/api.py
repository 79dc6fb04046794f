"""REST under ``/v1``: validate, call a handler, render. No decisions are made here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.auth import require
from shared.errors import NotFound
from shared.service import Service, service_of

from . import store
from .domain import Action, Agent, AgentState, EntryState, QueueEntry
from .domain.queue import NAME_PATTERN
from .handlers import Acd

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
AgentId = Annotated[str, Path(pattern=NAME_PATTERN)]
Level = Annotated[int, Field(ge=1, le=10)]

WRITERS = Depends(require("agent", "supervisor"))
READERS = Depends(require("agent", "supervisor", "service", "integrator"))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(Strict):
    skills: dict[Name, Level]
    device: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    team: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class StateBody(Strict):
    state: Literal["ready", "not_ready", "logged_out"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


REQUESTS = {"ready": Action.READY, "not_ready": Action.NOT_READY, "logged_out": Action.LOGOUT}


class PendingView(BaseModel):
    state: str
    reason: str | None


class AgentView(BaseModel):
    agent_id: str
    state: str
    reason: str | None
    skills: dict[str, int]
    device: str
    team: str | None
    state_since: datetime | None
    ready_since: datetime | None
    calls_handled_today: int
    pending: PendingView | None
    call_id: str | None
    reservation_id: str | None
    wrapup_deadline: datetime | None


class EntryView(BaseModel):
    call_id: str
    queue: str
    priority: int
    state: str
    enqueued_at: datetime
    waited_seconds: float
    skills: list[str]
    customer: dict[str, Any] | None
    from_number: str | None
    agent_id: str | None
    reservation_id: str | None
    reservation_expires_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    ring_failures: int


class QueueView(BaseModel):
    queue: str
    waiting: int
    reserved: int
    longest_wait_seconds: float
    agents_staffed: int
    agents_ready: int


class QueueDetail(QueueView):
    entries: list[EntryView]


class DecisionView(BaseModel):
    reservation_id: str
    agent_id: str
    queue: str
    strategy: str
    decided_at: datetime
    expires_at: datetime
    alerting_at: datetime | None
    outcome: str
    outcome_reason: str | None
    outcome_at: datetime | None


class CallView(BaseModel):
    entry: EntryView
    decisions: list[DecisionView]


def agent_view(agent: Agent, now: datetime, acd: Acd) -> AgentView:
    today = acd.today(now)
    return AgentView(
        agent_id=agent.agent_id, state=agent.state.value, reason=agent.reason,
        skills=agent.skills, device=agent.device, team=agent.team,
        state_since=agent.state_since, ready_since=agent.ready_since,
        calls_handled_today=agent.calls_handled if agent.handled_day == today else 0,
        pending=PendingView(state=agent.pending.state.value, reason=agent.pending.reason)
        if agent.pending else None,
        call_id=agent.call_id, reservation_id=agent.reservation_id,
        wrapup_deadline=agent.wrapup_deadline,
    )


def entry_view(entry: QueueEntry, now: datetime) -> EntryView:
    return EntryView(
        call_id=entry.call_id, queue=entry.queue, priority=entry.priority,
        state=entry.state.value, enqueued_at=entry.enqueued_at,
        waited_seconds=round(entry.waited_seconds(now), 3), skills=entry.skills,
        customer=entry.customer, from_number=entry.from_number, agent_id=entry.agent_id,
        reservation_id=entry.reservation_id,
        reservation_expires_at=entry.reservation_expires_at, answered_at=entry.answered_at,
        ended_at=entry.ended_at, ring_failures=entry.ring_failures,
    )


def queue_view(name: str, entries: list[QueueEntry], agents: list[Agent], now: datetime
               ) -> QueueView:
    mine = [e for e in entries if e.queue == name]
    waiting = [e for e in mine if e.state is EntryState.WAITING]
    staffed = [a for a in agents
               if a.state is not AgentState.LOGGED_OUT and a.skills.get(name, 0) >= 1]
    return QueueView(
        queue=name, waiting=len(waiting),
        reserved=sum(1 for e in mine if e.state is EntryState.RESERVED),
        longest_wait_seconds=round(max((e.waited_seconds(now) for e in waiting), default=0.0),
                                   3),
        agents_staffed=len(staffed),
        agents_ready=sum(1 for a in staffed if a.state is AgentState.READY),
    )


def acd_of(request: Request) -> Acd:
    acd: Acd = request.app.state.acd
    return acd


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["acd"])

    @router.post("/agents/{agent_id}/login", dependencies=[WRITERS])
    async def login(agent_id: AgentId, body: LoginBody, svc: Service = Depends(service_of),
                    acd: Acd = Depends(acd_of)) -> AgentView:
        async with svc.transaction() as tx:
            agent = await acd.login(tx, agent_id, skills=dict(body.skills), device=body.device,
                                    team=body.team)
        return agent_view(agent, svc.clock.now(), acd)

    @router.post("/agents/{agent_id}/state", dependencies=[WRITERS])
    async def set_state(agent_id: AgentId, body: StateBody, svc: Service = Depends(service_of),
                        acd: Acd = Depends(acd_of)) -> AgentView:
        async with svc.transaction() as tx:
            agent = await acd.request_state(tx, agent_id, REQUESTS[body.state], body.reason)
        return agent_view(agent, svc.clock.now(), acd)

    @router.get("/agents", dependencies=[READERS])
    async def list_agents(state: AgentState | None = None,
                          skill: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
                          team: str | None = None, svc: Service = Depends(service_of),
                          acd: Acd = Depends(acd_of)) -> list[AgentView]:
        async with svc.sessions() as session:
            agents = await store.load_agents(session, states=[state] if state else None)
        now = svc.clock.now()
        return [agent_view(a, now, acd) for a in agents
                if (skill is None or skill in a.skills) and (team is None or a.team == team)]

    @router.get("/agents/{agent_id}", dependencies=[READERS])
    async def get_agent(agent_id: AgentId, svc: Service = Depends(service_of),
                        acd: Acd = Depends(acd_of)) -> AgentView:
        async with svc.sessions() as session:
            agent = await store.load_agent(session, agent_id)
        if agent is None:
            raise NotFound("agent", agent_id)
        return agent_view(agent, svc.clock.now(), acd)

    @router.get("/queues", dependencies=[READERS])
    async def list_queues(svc: Service = Depends(service_of)) -> list[QueueView]:
        async with svc.sessions() as session:
            names = await store.queue_names(session)
            entries = await store.live_entries(session)
            agents = await store.load_agents(session)
        now = svc.clock.now()
        return [queue_view(name, entries, agents, now) for name in names]

    @router.get("/queues/{queue}", dependencies=[READERS])
    async def get_queue(queue: Annotated[str, Path(pattern=NAME_PATTERN)],
                        svc: Service = Depends(service_of)) -> QueueDetail:
        async with svc.sessions() as session:
            if not await store.queue_exists(session, queue):
                raise NotFound("queue", queue)
            entries = await store.live_entries(session, queue)
            agents = await store.load_agents(session)
        now = svc.clock.now()
        summary = queue_view(queue, entries, agents, now)
        return QueueDetail(**summary.model_dump(), entries=[entry_view(e, now) for e in entries])

    @router.get("/calls/{call_id}", dependencies=[READERS])
    async def get_call(call_id: Annotated[str, Path(max_length=64)],
                       svc: Service = Depends(service_of)) -> CallView:
        async with svc.sessions() as session:
            entry = await store.load_entry(session, call_id)
            if entry is None:
                raise NotFound("call", call_id)
            decisions = await store.decisions_of(session, call_id)
        return CallView(entry=entry_view(entry, svc.clock.now()),
                        decisions=[DecisionView.model_validate(d) for d in decisions])

    return router
