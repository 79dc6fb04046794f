"""cti_gateway's composition root: the call state machine and the only link to the
softswitch."""

from __future__ import annotations

from fastapi import FastAPI

from services.cti_gateway.handlers import Cti, events
from services.cti_gateway.routes import rest_router, switch_router
from services.cti_gateway.settings import CtiSettings
from shared.bus import Bus
from shared.clock import Clock


def create_app(settings: CtiSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or CtiSettings()
    cti = Cti(settings, bus=bus, clock=clock)
    cti.service.consume("events", events.consumes(cti), staged=True)
    cti.service.background(cti.ring_timer.run)
    app = cti.service.create_app(
        title="cti_gateway",
        description="Calls and legs, the call state machine, and the softswitch link.",
        routers=[rest_router(), switch_router()])
    app.state.cti = cti
    return app
