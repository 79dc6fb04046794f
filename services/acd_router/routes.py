"""REST under ``/v1``: validate, call a handler, render. No decisions are made here."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.auth import Principal, require, require_self
from shared.data_scope import DataScope, data_scope
from shared.errors import NotFound
from shared.limits import MAX_TEAM
from shared.service import Service, service_of

from . import agent_commands, call_commands, store
from .domain import Action, Agent, AgentState, EntryState, QueueEntry
from .domain.config import QueueConfig, RoutingConfig
from .domain.queue import NAME_PATTERN
from .mirror import Acd

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
AgentId = Annotated[str, Path(pattern=NAME_PATTERN)]
Level = Annotated[int, Field(ge=1, le=10)]
MAX_SKILLS = 32
# The softswitch's agent endpoint, a SIP URI, or a phone number.
DEVICE_PATTERN = r"^(agent:[A-Za-z0-9][A-Za-z0-9._-]{0,63}|sips?:[^\s\x00-\x1f]{3,120}|\+?[0-9]{3,20})$"

WRITERS = Depends(require("agent", "supervisor"))
# An agent acts on its own record only (a supervisor on anyone's).
SELF_WRITERS = require_self("agent", "supervisor")
SUPERVISORS = require("supervisor")
# The caller's own channels (IVR, web, the switch's in-queue menu) act for them as services.
WRITERS_AND_SERVICES = Depends(require("agent", "supervisor", "service"))
READERS = Depends(require("agent", "supervisor", "service", "integrator"))
OPERATORS = Depends(require("supervisor", "admin"))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(Strict):
    skills: Annotated[dict[Name, Level], Field(max_length=MAX_SKILLS)]
    # Where the agent is rung. Set by a supervisor or admin; an agent's own login keeps the
    # device on record (``agent:<id>`` if none) and may only repeat it.
    device: Annotated[str, StringConstraints(pattern=DEVICE_PATTERN)] | None = None
    # Set by a supervisor or admin, or by the agent's first login; kept when omitted.
    team: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEAM)] | None = None
    department: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEAM)] | None \
        = None


class StateBody(Strict):
    state: Literal["ready", "not_ready", "logged_out"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class WithdrawBody(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class VirtualHoldBody(Strict):
    # Where to call back; default: the number the caller called from.
    number: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{3,20}$")] | None = None


class VirtualHoldView(BaseModel):
    call_id: str
    queue: str
    number: str
    position: int
    estimated_wait_seconds: float | None


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
    department: str | None
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
    outcome_reason: str | None = None
    # Virtual hold: the number the call will be returned to, the current agent-first dial.
    callback_number: str | None = None
    callback_call_id: str | None = None
    # For waiting calls: place in the queue's routing order and the engine's wait estimate.
    position: int | None = None
    estimated_wait_seconds: float | None = None


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
    agent_id: str | None
    queue: str
    strategy: str
    decided_at: datetime
    expires_at: datetime | None
    alerting_at: datetime | None
    outcome: str
    outcome_reason: str | None
    outcome_at: datetime | None
    kind: str = "reserved"


class ExplainedDecision(DecisionView):
    step: int | None
    explanation: dict[str, Any] | None


class RoutingView(BaseModel):
    call_id: str
    queue: str
    state: str
    position: int | None
    estimated_wait_seconds: float | None
    decisions: list[ExplainedDecision]


class ConfigView(BaseModel):
    version: int
    source: str
    created_by: str | None
    created_at: datetime
    warnings: list[str]
    config: dict[str, Any]


class ConfigVersion(BaseModel):
    version: int
    source: str
    created_by: str | None
    created_at: datetime
    warnings: list[str]


class SkillView(BaseModel):
    skill: str
    agents: list[str]
    agents_ready: int
    queues: list[str]


class CallView(BaseModel):
    entry: EntryView
    decisions: list[DecisionView]


def agent_view(agent: Agent, now: datetime, acd: Acd) -> AgentView:
    today = acd.today(now)
    return AgentView(
        agent_id=agent.agent_id, state=agent.state.value, reason=agent.reason,
        skills=agent.skills, device=agent.device, team=agent.team,
        department=agent.department, state_since=agent.state_since, ready_since=agent.ready_since,
        calls_handled_today=agent.calls_handled if agent.handled_day == today else 0,
        pending=PendingView(state=agent.pending.state.value, reason=agent.pending.reason)
        if agent.pending else None,
        call_id=agent.call_id, reservation_id=agent.reservation_id,
        wrapup_deadline=agent.wrapup_deadline,
    )


def entry_view(entry: QueueEntry, now: datetime, acd: Acd | None = None,
               scope: DataScope | None = None) -> EntryView:
    place = wait = None
    if acd is not None and entry.state is EntryState.WAITING:
        place = acd.engine.position(entry.call_id, now.timestamp()) or None
        wait = acd.engine.estimated_wait(entry.call_id, now.timestamp())
    view = EntryView(
        outcome_reason=entry.outcome_reason, position=place, estimated_wait_seconds=wait,
        call_id=entry.call_id, queue=entry.queue, priority=entry.priority,
        state=entry.state.value, enqueued_at=entry.enqueued_at,
        waited_seconds=round(entry.waited_seconds(now), 3), skills=entry.skills,
        customer=entry.customer, from_number=entry.from_number, agent_id=entry.agent_id,
        reservation_id=entry.reservation_id,
        reservation_expires_at=entry.reservation_expires_at, answered_at=entry.answered_at,
        ended_at=entry.ended_at, ring_failures=entry.ring_failures,
        callback_number=entry.callback_number, callback_call_id=entry.callback_call_id,
    )
    if scope is None or scope.personal:
        return view
    # The caller's number and the customer record the IVR attached are personal data.
    return EntryView.model_validate(scope.shown(view.model_dump()) | {"customer": None})


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


def reads_agent(who: Principal, agent: Agent) -> bool:
    """A team's or a department's supervisor reads its own agents; other readers (desktops,
    integrators' boards, a floor-wide supervisor) read the whole floor's states."""
    return not who.oversees_part or who.oversees(agent.team, agent.department)


def check_reads(who: Principal, agent: Agent) -> None:
    """403 where :func:`reads_agent` says no."""
    if who.oversees_part:
        who.check_directs(agent.agent_id, agent.team, agent.department)


def acd_of(request: Request) -> Acd:
    acd: Acd = request.app.state.acd
    return acd


async def _entry_and_decisions(svc: Service, call_id: str) -> tuple[Any, list[Any]]:
    """A call's queue entry and every routing decision made for it (404 if none)."""
    async with svc.reader() as session:
        entry = await store.load_entry(session, call_id)
        if entry is None:
            raise NotFound("call", call_id)
        return entry, list(await store.decisions_of(session, call_id))


def build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["acd"])

    @router.post("/agents/{agent_id}/login")
    async def login(agent_id: AgentId, body: LoginBody, svc: Service = Depends(service_of),
                    acd: Acd = Depends(acd_of),
                    who: Principal = Depends(SELF_WRITERS)) -> AgentView:
        async with svc.transaction() as tx:
            agent = await agent_commands.login(acd, tx, agent_id, skills=dict(body.skills),
                                             device=body.device, team=body.team,
                                             department=body.department, by=who)
        return agent_view(agent, svc.clock.now(), acd)

    @router.post("/agents/{agent_id}/state")
    async def set_state(agent_id: AgentId, body: StateBody, svc: Service = Depends(service_of),
                        acd: Acd = Depends(acd_of),
                        who: Principal = Depends(SELF_WRITERS)) -> AgentView:
        async with svc.transaction() as tx:
            agent = await agent_commands.request_state(acd, tx, agent_id, REQUESTS[body.state],
                                                     body.reason, by=who)
        return agent_view(agent, svc.clock.now(), acd)

    @router.get("/agents")
    async def list_agents(state: AgentState | None = None,
                          skill: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
                          team: str | None = None, department: str | None = None,
                          svc: Service = Depends(service_of), acd: Acd = Depends(acd_of),
                          who: Principal = READERS) -> list[AgentView]:
        """The agents, filtered; a team's or department's supervisor gets its own only."""
        async with svc.reader() as session:
            agents = await store.load_agents(session, states=[state] if state else None)
        now = svc.clock.now()
        return [agent_view(a, now, acd) for a in agents
                if (skill is None or skill in a.skills) and (team is None or a.team == team)
                and (department is None or a.department == department)
                and reads_agent(who, a)]

    @router.get("/agents/{agent_id}")
    async def get_agent(agent_id: AgentId, svc: Service = Depends(service_of),
                        acd: Acd = Depends(acd_of), who: Principal = READERS) -> AgentView:
        async with svc.reader() as session:
            agent = await store.load_agent(session, agent_id)
        if agent is None:
            raise NotFound("agent", agent_id)
        check_reads(who, agent)
        return agent_view(agent, svc.clock.now(), acd)

    @router.get("/queues", dependencies=[READERS])
    async def list_queues(svc: Service = Depends(service_of)) -> list[QueueView]:
        async with svc.reader() as session:
            names = await store.queue_names(session)
            entries = await store.live_entries(session)
            agents = await store.load_agents(session)
        now = svc.clock.now()
        return [queue_view(name, entries, agents, now) for name in names]

    @router.get("/queues/{queue}")
    async def get_queue(queue: Annotated[str, Path(pattern=NAME_PATTERN)],
                        svc: Service = Depends(service_of),
                        acd: Acd = Depends(acd_of),
                        principal: Principal = READERS) -> QueueDetail:
        async with svc.reader() as session:
            if not await store.queue_exists(session, queue):
                raise NotFound("queue", queue)
            entries = await store.live_entries(session, queue)
            agents = await store.load_agents(session)
        now = svc.clock.now()
        summary = queue_view(queue, entries, agents, now)
        return QueueDetail(**summary.model_dump(),
                           entries=[entry_view(e, now, acd, data_scope(principal))
                                    for e in entries])

    @router.get("/calls/{call_id}")
    async def get_call(call_id: Annotated[str, Path(max_length=64)],
                       svc: Service = Depends(service_of),
                       acd: Acd = Depends(acd_of),
                       principal: Principal = READERS) -> CallView:
        entry, decisions = await _entry_and_decisions(svc, call_id)
        return CallView(entry=entry_view(entry, svc.clock.now(), acd, data_scope(principal)),
                        decisions=[DecisionView.model_validate(d) for d in decisions])

    @router.post("/calls/{call_id}/virtual-hold", dependencies=[WRITERS_AND_SERVICES])
    async def virtual_hold(call_id: Annotated[str, Path(max_length=64)],
                           body: VirtualHoldBody | None = None,
                           svc: Service = Depends(service_of),
                           acd: Acd = Depends(acd_of)) -> VirtualHoldView:
        """The waiting caller leaves a callback request and keeps their place; CTI plays the
        queue's announcement and releases the call, and the agent who takes it is rung first,
        then the customer is dialled. 409 if the call is not waiting, the queue does not
        offer virtual hold, or the estimated wait is below its threshold."""
        async with svc.transaction() as tx:
            held = await call_commands.virtual_hold(acd, tx, call_id,
                                                   body.number if body else None)
        return VirtualHoldView.model_validate(held.model_dump(exclude={"announcement"}))

    @router.post("/calls/{call_id}/withdraw", dependencies=[OPERATORS])
    async def withdraw(call_id: Annotated[str, Path(max_length=64)], body: WithdrawBody,
                       svc: Service = Depends(service_of),
                       acd: Acd = Depends(acd_of)) -> EntryView:
        """Take a waiting call (say, a held caller's callback) out of routing for good: it
        ends as abandoned with the reason given, and nobody is owed a callback for it. 409
        unless it is waiting (a reserved one is released through CTI instead)."""
        async with svc.transaction() as tx:
            entry = await call_commands.withdraw(acd, tx, call_id, body.reason)
        return entry_view(entry, svc.clock.now(), acd)

    @router.get("/calls/{call_id}/routing", dependencies=[READERS])
    async def get_call_routing(call_id: Annotated[str, Path(max_length=64)],
                               svc: Service = Depends(service_of),
                               acd: Acd = Depends(acd_of)) -> RoutingView:
        """Every decision made for the call, with candidates, scores, step and exclusions."""
        entry, decisions = await _entry_and_decisions(svc, call_id)
        view = entry_view(entry, svc.clock.now(), acd)
        return RoutingView(call_id=call_id, queue=entry.queue, state=entry.state.value,
                           position=view.position,
                           estimated_wait_seconds=view.estimated_wait_seconds,
                           decisions=[ExplainedDecision.model_validate(d) for d in decisions])

    # -- routing configuration -----------------------------------------------------------------

    @router.get("/config", dependencies=[READERS])
    async def get_config(svc: Service = Depends(service_of)) -> ConfigView:
        async with svc.reader() as session:
            row = await store.latest_config(session)
        if row is None:
            raise NotFound("config version", "latest")
        return ConfigView.model_validate(row)

    @router.put("/config")
    async def put_config(body: RoutingConfig, svc: Service = Depends(service_of),
                         acd: Acd = Depends(acd_of),
                         who: Principal = Depends(SUPERVISORS)) -> ConfigView:
        """Replace the whole configuration: a new version, applied at once."""
        async with svc.transaction() as tx:
            await acd.apply_config(tx, body, source="api", created_by=who.subject)
        return await get_config(svc)

    @router.get("/config/versions", dependencies=[READERS])
    async def list_config_versions(svc: Service = Depends(service_of)) -> list[ConfigVersion]:
        async with svc.reader() as session:
            rows = await store.config_versions(session)
        return [ConfigVersion.model_validate(r) for r in rows]

    @router.get("/config/versions/{version}", dependencies=[READERS])
    async def get_config_version(version: int, svc: Service = Depends(service_of)
                                 ) -> ConfigView:
        async with svc.reader() as session:
            row = await store.config_version(session, version)
        if row is None:
            raise NotFound("config version", str(version))
        return ConfigView.model_validate(row)

    @router.get("/queues/{queue}/config", dependencies=[READERS])
    async def get_queue_config(queue: Annotated[str, Path(pattern=NAME_PATTERN)],
                               acd: Acd = Depends(acd_of)) -> QueueConfig:
        found = acd.engine.config.queues.get(queue)
        if found is None:
            raise NotFound("queue", queue)
        return found

    @router.put("/queues/{queue}/config")
    async def put_queue_config(queue: Annotated[str, Path(pattern=NAME_PATTERN)],
                               body: QueueConfig, svc: Service = Depends(service_of),
                               acd: Acd = Depends(acd_of),
                               who: Principal = Depends(SUPERVISORS)) -> ConfigView:
        """Create or replace one queue's configuration (a new version of the whole)."""
        current = acd.engine.config
        config = RoutingConfig.model_validate(
            {**current.model_dump(mode="json"),
             "queues": {**current.model_dump(mode="json")["queues"],
                        queue: body.model_dump(mode="json")}})
        async with svc.transaction() as tx:
            await acd.apply_config(tx, config, source="api", created_by=who.subject)
        return await get_config(svc)

    @router.get("/skills", dependencies=[READERS])
    async def list_skills(svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                          ) -> list[SkillView]:
        async with svc.reader() as session:
            agents = await store.load_agents(session)
        names = {s for a in agents for s in a.skills} | {
            s for q in acd.engine.config.queues.values()
            for s in (*q.skills, *q.optional_skills)}
        return [skill_view(name, agents, acd) for name in sorted(names)]

    @router.get("/skills/{skill}", dependencies=[READERS])
    async def get_skill(skill: Annotated[str, Path(pattern=NAME_PATTERN)],
                        svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                        ) -> SkillView:
        async with svc.reader() as session:
            agents = await store.load_agents(session)
        view = skill_view(skill, agents, acd)
        if not view.agents and not view.queues:
            raise NotFound("skill", skill)
        return view

    return router


def skill_view(skill: str, agents: list[Agent], acd: Acd) -> SkillView:
    holders = [a for a in agents if skill in a.skills]
    return SkillView(
        skill=skill, agents=[a.agent_id for a in holders],
        agents_ready=sum(1 for a in holders if a.state is AgentState.READY),
        queues=sorted(name for name, q in acd.engine.config.queues.items()
                      if skill in q.skills or skill in q.optional_skills))
