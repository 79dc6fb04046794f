"""The workorder service app: routes, the one event consumer, and the callback timer loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog
from fastapi import FastAPI

from services.workorder import handlers
from services.workorder.db import SCHEMA, metadata
from services.workorder.domain.callbacks import CallbackPolicy
from services.workorder.routes import build_router
from services.workorder.settings import WorkorderSettings
from shared.bus import Bus
from shared.clock import Clock
from shared.envelope import Envelope
from shared.messaging import Transaction
from shared.service import Service

log = structlog.get_logger(__name__)

# Survey results come from the IVR and releases from CTI; one queue keeps their relative order
# (the survey answer lands before the release of the call that carried it).
CONSUMED = ("cti.call.originated", "cti.call.origination_failed", "cti.call.released",
            "ivr.survey.completed", "recording.file.stored")
TIMER_BATCH = 100


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def fire_due_timers(service: Service, policy: CallbackPolicy) -> int:
    """One scan. Each task fires in its own transaction, so one bad row cannot hold the others
    back; SKIP LOCKED lets replicas share the work without double dialling."""
    async with service.sessions() as session:
        due = await handlers.due_callback_ids(session, service.now(), TIMER_BATCH)
    for callback_id in due:
        try:
            async with service.transaction() as tx:
                await handlers.fire_callback_timer(tx, callback_id, policy)
        except Exception:
            if _cancelling():
                raise
            log.exception("callback timer failed", callback_id=callback_id)
    return len(due)


def create_app(settings: WorkorderSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or WorkorderSettings()
    policy = settings.callback_policy()
    service = Service("workorder", SCHEMA, settings, metadata=metadata,
                      migrations_dir=Path(__file__).parent / "migrations", bus=bus, clock=clock)

    @service.consumer("events", *CONSUMED)
    async def on_event(tx: Transaction, envelope: Envelope) -> None:
        data = envelope.data
        if envelope.type == "cti.call.originated":
            await handlers.on_call_originated(tx, data)
        elif envelope.type == "cti.call.origination_failed":
            await handlers.on_origination_failed(tx, data, policy)
        elif envelope.type == "cti.call.released":
            await handlers.on_call_released(tx, data, policy)
        elif envelope.type == "ivr.survey.completed":
            await handlers.on_survey_completed(tx, data, policy)
        elif envelope.type == "recording.file.stored":
            await handlers.on_recording_stored(tx, data)

    @service.background
    async def callback_timers() -> None:
        """Fire due callback deadlines (dial, or time an attempt out)."""
        while True:
            try:
                fired = await fire_due_timers(service, policy)
            except Exception:
                # A cancel that lands mid-query can surface as a database error from the
                # rollback; swallowing it would keep this loop (and shutdown) alive forever.
                if _cancelling():
                    raise asyncio.CancelledError from None
                log.exception("callback timers failed; retrying")
                fired = 0
            if fired < TIMER_BATCH:
                await asyncio.sleep(settings.callback_poll_seconds)

    return service.create_app(
        title="Hotline workorder",
        description="Customers directory, outage notices, work orders and the callback "
                    "obligation with its satisfaction survey.",
        routers=[build_router(settings)])
