"""The workorder service app: routes, the one event consumer, and the timer loop."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from fastapi import FastAPI

from services.workorder.db import SCHEMA, metadata
from services.workorder.domain import sla
from services.workorder.domain.calendar import WorkCalendar, YearSchedule, parse_year
from services.workorder.handlers import KNOWN_TYPES, Runtime, admin, callbacks, clocks, consumers
from services.workorder.repository import config
from services.workorder.repository.clocks import earliest_due
from services.workorder.routes import build_router
from services.workorder.settings import WorkorderSettings
from shared.bus import Bus
from shared.clock import Clock
from shared.service import Service
from shared.timers import Timer

log = structlog.get_logger(__name__)

# Survey results come from the IVR and releases from CTI; one queue keeps their relative order
# (the survey answer lands before the release of the call that carried it).
TIMER_ACTOR = "workorder.timer"


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def fire_one(service: Service, rt: Runtime, batch: int = 1) -> bool:
    """Fire the earliest due SLA clocks (up to ``batch``), else the earliest due callback
    task, in one transaction. False when nothing due was free to take."""
    async with service.transaction() as tx:
        return bool(await clocks.fire_due(tx, rt, TIMER_ACTOR, batch)
                    or await callbacks.fire_one_callback(tx, rt))


async def fire_timers(service: Service, rt: Runtime, workers: int, batch: int
                      ) -> datetime | None:
    """The timer's work: fire what is due, then say when the next deadline is. Rows are taken
    with SKIP LOCKED (never fired twice); a backlog left after the first round (a burst of
    deadlines) is drained by ``workers`` at once. A look with nothing due is one read."""

    async def earliest() -> datetime | None:
        async with service.reader() as reader:
            return await earliest_due(reader)

    async def drain() -> None:
        while await fire_one(service, rt, batch):
            pass

    due = await earliest()
    if due is None or due > service.now():
        return due
    if not await fire_one(service, rt, batch):
        return due  # held by another unit of work: the timer looks again shortly
    due = await earliest()
    if due is not None and due <= service.now():
        await asyncio.gather(*(drain() for _ in range(workers)))
        due = await earliest()
    return due


def load_calendar_files(directory: Path, tz_name: str) -> WorkCalendar:
    schedules: list[YearSchedule] = []
    for path in sorted(directory.glob("*.yaml")):
        schedules.append(parse_year(yaml.safe_load(path.read_text()) or {}, int(path.stem)))
    return WorkCalendar.of(schedules, tz_name)


def read_policy_file(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text()) or {}
    sla.parse_policy(doc, 0, KNOWN_TYPES)  # fail at startup, not at the first case
    return dict(doc)


def create_app(settings: WorkorderSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or WorkorderSettings()
    shipped = load_calendar_files(settings.calendars_dir, settings.calendar_tz)
    rt = Runtime(callback_policy=settings.callback_policy(), rules=settings.calling_rules(),
                 calendar=shipped, base_calendar=shipped,
                 callback_team=settings.callback_team,
                 repeat_complaint_days=settings.repeat_complaint_days)
    policy_file = read_policy_file(settings.sla_policy_file)
    service = Service("workorder", SCHEMA, settings, metadata=metadata,
                      migrations_dir=Path(__file__).parent / "migrations", bus=bus, clock=clock)

    @service.on_startup
    async def load_configuration() -> None:
        async with service.transaction() as tx:
            await config.insert_first_policy(tx, policy_file)  # version 1, unless there is one
            await rt.refresh_calendars(tx.session)

    service.consume("events", consumers.consumes(rt))

    @service.background
    async def calendars() -> None:
        """Calendar years PUT on another replica reach this one without a restart."""
        while True:
            await asyncio.sleep(settings.calendar_poll_seconds)
            try:
                async with service.sessions() as session:
                    if await rt.refresh_calendars(session):
                        log.info("calendars reloaded", years=sorted(rt.calendar.years))
            except Exception:
                if _cancelling():
                    raise asyncio.CancelledError from None
                log.exception("calendar reload failed; retrying")

    @service.background
    async def replan() -> None:
        """Open cases a crash left on an older SLA policy version move to the latest one."""
        while True:
            try:
                await admin.replan_open_cases(service, rt, "workorder", settings.replan_batch)
                return
            except Exception:
                if _cancelling():
                    raise asyncio.CancelledError from None
                log.exception("policy re-plan failed; retrying")
                await asyncio.sleep(settings.calendar_poll_seconds)

    # SLA clocks (urge, escalate) and callback tasks (dial, defer, time out).
    timer = Timer(service.clock,
                  lambda: fire_timers(service, rt, settings.timer_workers, settings.timer_batch),
                  recheck_wall_seconds=settings.callback_poll_seconds, name="workorder timers")
    rt.waker.listener = timer.schedule
    service.background(timer.run)

    app = service.create_app(
        title="Hotline workorder",
        description="Customers directory, outage notices, cases with SLA clocks on a "
                    "working-day calendar, dispatch, urging and escalation, and the callback "
                    "obligation with its satisfaction survey.",
        routers=[build_router(settings, rt)])
    app.state.runtime = rt
    return app
