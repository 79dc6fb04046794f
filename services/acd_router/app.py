"""The acd_router app: REST, one event consumer and the deadline poller, on the service kit."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import structlog
from fastapi import APIRouter, FastAPI

from shared.bus import Bus
from shared.clock import Clock
from shared.service import Service
from shared.timers import Timer

from . import handlers
from .agent_routes import add_agent_routes
from .db import SCHEMA, metadata
from .lease import Leadership, build_instance_router
from .mirror import Acd
from .routes import build_router
from .settings import AcdSettings
from .stats import add_stats_routes

log = structlog.get_logger(__name__)

NAME = "acd_router"


def create_app(settings: AcdSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or AcdSettings()
    # Consumers start when this process becomes the active instance (lease.py), not at once.
    service = Service(NAME, SCHEMA, settings, metadata=metadata,
                      migrations_dir=Path(__file__).parent / "migrations", bus=bus, clock=clock,
                      defer_consumers=True, writer_sessions=False)
    acd = Acd(settings, time_scale=service.clock.scale)
    leadership = Leadership(service, acd, settings)
    acd.fence = leadership
    service.ready_info = lambda: {"role": leadership.role, "instance": leadership.instance}

    # One queue for every event consumed: a call's CTI and IVR events then reach the handler
    # in the order the broker received them, not raced by separate consumers.
    service.consume("events", handlers.consumes(acd))

    @service.on_startup
    async def warm_up() -> None:
        # Take the lease if it is free, then build the routing engine from the tables (and
        # apply the config file) before the first request; a standby builds a read model.
        await leadership.start()

    # Renews the lease while active; while standby, takes over when it expires.
    service.background(leadership.run)
    service.on_shutdown(leadership.release)

    async def fire_deadlines() -> datetime | None:
        # Deadlines live in PostgreSQL, so a restarted (or promoted) replica picks them up.
        if not leadership.deadlines_allowed:
            return None  # standby, or a takeover still reconciling: look again later
        upcoming = acd.next_deadline()
        if upcoming is None or upcoming > service.clock.now():
            return upcoming
        await service.run(functools.partial(handlers.run_deadlines, acd))
        return acd.next_deadline()

    deadlines = Timer(service.clock, fire_deadlines,
                      recheck_wall_seconds=settings.poll_interval_wall_seconds,
                      name="acd deadlines")
    acd.on_deadline = deadlines.schedule
    service.background(deadlines.run)

    app = service.create_app(
        title="Hotline ACD router",
        description="Queues, agent states and skill-based routing decisions.",
        routers=[routes(), build_instance_router()],
    )
    app.state.acd = acd
    app.state.leadership = leadership
    return app


def routes() -> APIRouter:
    """The /v1 routes: queues and calls (api), agents (agent_routes), statistics (stats).
    Added to one router, not included as sub-routers, so they share its prefix as plain
    routes (what the auth walk and the OpenAPI document see)."""
    router = build_router()
    add_agent_routes(router)
    add_stats_routes(router)
    return router
