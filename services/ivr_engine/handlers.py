"""The IVR engine's handlers: cti events in (``consumes``), interpreter steps, ivr events out;
the no-input timeouts.

Handlers run in the service's single writer: they find the session (kept in memory while it
runs, :mod:`services.ivr_engine.repository`), let the domain interpreter decide, then save
it and record the resulting events in one unit of work. The caller's lookup in workorder
(the customer, and the outages in their area) is made when ``cti.call.offered`` arrives,
before the writer takes it, so no unit of work waits on another service.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from services.ivr_engine.adapters.workorder import Lookup, WorkorderClient
from services.ivr_engine.db import next_deadline
from services.ivr_engine.domain import (
    Completed,
    IllegalTransition,
    Interpreter,
    MenuCatalog,
    Outage,
    Prompt,
    ReleaseCall,
    SessionState,
    Step,
    SurveyAnswered,
)
from services.ivr_engine.repository import Sessions
from services.ivr_engine.settings import IvrSettings
from shared.consumers import Consumes
from shared.effects import Emit, Wake
from shared.events import EventData
from shared.events.cti import CallAnswered, CallOffered, CallReleased, DtmfReceived
from shared.events.ivr import (
    Collect,
    CustomerContext,
    PromptRequested,
    ReleaseRequested,
    RouteRequest,
    SessionCompleted,
    SessionStarted,
    SurveyCompleted,
)
from shared.messaging import Transaction
from shared.service import Service
from shared.timers import Timer

log = structlog.get_logger(__name__)

# Session fact: the outages active in the caller's area when the call came in.
AREA_OUTAGES = "area_outages"


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown spoken_timezone; restore times are spoken in UTC", timezone=name)
        return ZoneInfo("UTC")


class IvrEngine:
    """The IVR engine at run time: its kit, the menus' interpreters, the sessions in memory,
    the no-input timer and the workorder client."""

    def __init__(self, service: Service, settings: IvrSettings, catalog: MenuCatalog) -> None:
        self.service = service
        self.settings = settings
        self.catalog = catalog
        tz = _zone(settings.spoken_timezone)
        floor = settings.no_input_min_wall_seconds * service.clock.scale
        self.interpreters = {menu.name: Interpreter(menu, tz=tz, min_timeout_seconds=floor)
                             for menu in catalog}
        self._workorder: WorkorderClient | None = None
        self.sessions = Sessions()
        self.timer = Timer(service.clock, lambda: fire_timeouts(self),
                           recheck_wall_seconds=settings.timeout_poll_seconds,
                           name="ivr no-input")

    @property
    def workorder(self) -> WorkorderClient:
        # service.http exists only once the lifespan has started.
        if self._workorder is None:
            self._workorder = WorkorderClient(self.service.http,
                                              self.service.common.workorder_url,
                                              self.settings.lookup_timeout_seconds)
        return self._workorder

    def interpreter_for(self, state: SessionState) -> Interpreter:
        interpreter = self.interpreters.get(state.menu)
        if interpreter is None:
            interpreter = self.interpreters[self.catalog.default.name]
        if interpreter.menu.version != state.menu_version or interpreter.menu.name != state.menu:
            log.warning("session runs on another menu version than loaded",
                        call_id=state.call_id, session_menu=f"{state.menu}@{state.menu_version}",
                        loaded=f"{interpreter.menu.name}@{interpreter.menu.version}")
        return interpreter


async def prepare(ivr: IvrEngine, event: EventData) -> Lookup | None:
    """Before the writer takes an inbound call's offer: who is calling, and the outages
    in their area (one request to workorder; a second one only for an older workorder
    that does not list them with the customer)."""
    if not isinstance(event, CallOffered) or event.direction != "inbound":
        return None
    customer, outages = await ivr.workorder.lookup(event.from_number)
    if customer is not None and customer.area and outages is None:
        outages = await ivr.workorder.active_outages(customer.area)
    return Lookup(customer, outages)


def consumes(ivr: IvrEngine) -> Consumes:
    """One queue for every call event keeps one call's events in order."""
    table = Consumes()
    table.add(CallOffered, functools.partial(offered, ivr))
    table.add(CallAnswered, functools.partial(answered, ivr))
    table.add(DtmfReceived, functools.partial(digits, ivr))
    table.add(CallReleased, functools.partial(hangup, ivr))
    return table


async def digits(ivr: IvrEngine, tx: Transaction, data: DtmfReceived) -> None:
    await advance(ivr, tx, data.call_id, "digits", digits=data.digits,
                        prompt_id=data.prompt_id)


async def hangup(ivr: IvrEngine, tx: Transaction, data: CallReleased) -> None:
    await advance(ivr, tx, data.call_id, "hangup")


async def offered(ivr: IvrEngine, tx: Transaction, data: CallOffered) -> None:
    if data.direction != "inbound":
        log.info("outbound call offered; surveys start on answer", call_id=data.call_id)
        return
    if await ivr.sessions.get(tx, data.call_id) is not None:
        log.info("call already has an ivr session; ignored", call_id=data.call_id)
        return
    lookup: Lookup = tx.prepared or Lookup(None, None)
    interpreter = ivr.interpreters[ivr.catalog.for_number(data.to_number).name]
    state, step = interpreter.start(
        session_id=str(uuid.uuid4()), call_id=data.call_id, now=tx.now,
        purpose="inbound", from_number=data.from_number, to_number=data.to_number,
        customer=lookup.customer)
    if lookup.customer is not None and lookup.customer.area and lookup.outages is not None:
        state.facts[AREA_OUTAGES] = {
            "area": lookup.customer.area,
            "outages": [o.model_dump(mode="json") for o in lookup.outages]}
    await begin(ivr, tx, interpreter, state, step)


async def answered(ivr: IvrEngine, tx: Transaction, data: CallAnswered) -> None:
    if data.direction != "outbound":
        return  # inbound sessions started on cti.call.offered
    if data.context.get("purpose") != "survey":
        log.info("outbound call answered without a survey purpose; ignored",
                 call_id=data.call_id)
        return
    menu = ivr.catalog.for_number(data.from_number)
    if menu.survey is None:
        menu = ivr.catalog.default
    if menu.survey is None:
        log.error("no menu has a survey node; survey call left alone", call_id=data.call_id)
        return
    if await ivr.sessions.get(tx, data.call_id) is not None:
        log.info("call already has an ivr session; ignored", call_id=data.call_id)
        return
    interpreter = ivr.interpreters[menu.name]
    state, step = interpreter.start(
        session_id=str(uuid.uuid4()), call_id=data.call_id, now=tx.now,
        purpose="survey", from_number=data.from_number, to_number=data.to_number,
        context=data.context)
    await begin(ivr, tx, interpreter, state, step)


async def begin(ivr: IvrEngine, tx: Transaction, interpreter: Interpreter, state: SessionState,
                step: Step) -> None:
    step = await resolve(ivr, interpreter, state, step, tx.now)
    ivr.sessions.add(tx, state)
    await wake_timer(ivr, tx, state)
    await tx.emit(SessionStarted(
        call_id=state.call_id, session_id=state.session_id, menu=state.menu,
        menu_version=state.menu_version, purpose=state.purpose),
        subject=f"call/{state.call_id}", correlationid=state.call_id)
    await emit(ivr, tx, state, step)
    log.info("ivr session started", call_id=state.call_id, purpose=state.purpose,
             menu=state.menu, menu_version=state.menu_version,
             known_caller=state.customer is not None)


async def advance(ivr: IvrEngine, tx: Transaction, call_id: str, action: str, *,
                  digits: str = "", prompt_id: str | None = None) -> bool:
    """Apply digits, a hang-up or a due timeout to a session; False if it did not apply."""
    state = await ivr.sessions.get(tx, call_id)
    if state is None:
        if action != "timeout":
            log.info("no ivr session for call; event ignored", call_id=call_id,
                     action=action)
        return False
    if not state.running:
        log.info("ivr session already ended; event ignored", call_id=call_id,
                 action=action, outcome=state.outcome)
        return False
    interpreter = ivr.interpreter_for(state)
    now = tx.now
    try:
        if action == "hangup":
            step = interpreter.hangup(state, now)
        elif not interpreter.can_continue(state):
            log.warning("session's node is not in the loaded menu; using the fallback",
                        call_id=call_id, node=state.node, menu=state.menu)
            step = interpreter.recover(state, now)
        elif action == "digits":
            step = interpreter.digits(state, digits, now, prompt_id)
        else:
            step = interpreter.timeout(state, now)
    except IllegalTransition as error:
        log.info("event does not apply to the session; ignored", call_id=call_id,
                 error=str(error))
        return False
    if step.ignored:
        log.info("input ignored", call_id=call_id, reason=step.ignored)
    step = await resolve(ivr, interpreter, state, step, now)
    ivr.sessions.save(tx, state)
    await wake_timer(ivr, tx, state)
    await emit(ivr, tx, state, step)
    return not step.ignored


async def resolve(ivr: IvrEngine, interpreter: Interpreter, state: SessionState, step: Step,
                  now: datetime) -> Step:
    """Answer the interpreter's lookups until it is waiting for the caller again: from
    what was looked up when the call came in (the caller's area), else (another area)
    from workorder now."""
    while step.need is not None:
        known = state.facts.get(AREA_OUTAGES)
        if isinstance(known, dict) and known.get("area") == step.need.area:
            outages = [Outage.model_validate(o) for o in known.get("outages", [])]
        else:
            outages = await ivr.workorder.active_outages(step.need.area)
        more = interpreter.provide(state, outages, now)
        step = Step(effects=[*step.effects, *more.effects], need=more.need,
                    ignored=step.ignored)
    return step


async def emit(ivr: IvrEngine, tx: Transaction, state: SessionState, step: Step) -> None:
    await tx.apply([Emit(event, f"call/{state.call_id}", state.call_id)
                    for event in _events(state, step)])


async def fire_due_timeouts(ivr: IvrEngine) -> int:
    """Fire every no-input timeout due by the suite clock; return how many fired."""

    async def work(tx: Transaction) -> int:
        fired = 0
        for call_id in await ivr.sessions.due(tx, tx.now):
            if await advance(ivr, tx, call_id, "timeout"):
                fired += 1
        return fired

    fired: int = await ivr.service.run(work, staged=True)
    return fired


async def fire_timeouts(ivr: IvrEngine) -> datetime | None:
    """The timer's work: fire what is due; the next deadline."""
    await fire_due_timeouts(ivr, )
    async with ivr.service.sessions() as session:
        return await next_deadline(session)


async def wake_timer(ivr: IvrEngine, tx: Transaction, state: SessionState) -> None:
    await tx.apply([Wake(ivr.timer, state.deadline)])


def _events(state: SessionState, step: Step) -> list[EventData]:
    """The session's step as the events the IVR publishes."""
    events: list[EventData] = []
    for effect in step.effects:
        if isinstance(effect, Prompt):
            collect = None if effect.collect is None else Collect(
                max_digits=effect.collect.max_digits,
                timeout_seconds=effect.collect.timeout_seconds)
            events.append(PromptRequested(
                call_id=state.call_id, session_id=state.session_id,
                prompt_id=effect.prompt_id, text=effect.text, collect=collect))
        elif isinstance(effect, Completed):
            events.append(SessionCompleted(
                call_id=state.call_id, session_id=state.session_id, outcome=effect.outcome,
                path=effect.path, route=_route_request(effect)))
            log.info("ivr session completed", call_id=state.call_id,
                     outcome=effect.outcome, path=effect.path)
        elif isinstance(effect, ReleaseCall):
            events.append(ReleaseRequested(call_id=state.call_id, reason=effect.reason))
        elif isinstance(effect, SurveyAnswered):
            events.append(SurveyCompleted(call_id=state.call_id, context=effect.context,
                                          satisfaction=effect.satisfaction))
    return events


def _route_request(effect: Completed) -> RouteRequest | None:
    route = effect.route
    if route is None:
        return None
    customer = None if route.customer is None else CustomerContext(
        account=route.customer.account, name=route.customer.name, tier=route.customer.tier,
        area=route.customer.area, flags=list(route.customer.flags))
    return RouteRequest(queue=route.queue, skills=list(route.skills), priority=route.priority,
                        customer=customer, from_number=route.from_number)
