"""The softswitch app: replays over REST, the switch link and media fork as clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse

from services.softswitch.db import SCHEMA, metadata
from services.softswitch.replay import Replayer
from services.softswitch.settings import SoftswitchSettings
from services.softswitch.trace import parse_trace
from shared.auth import Principal, require
from shared.bus import Bus
from shared.clock import Clock
from shared.input_guard import InputLimits
from shared.service import Service

DESCRIPTION = """The software softswitch simulator and trace replayer.

`POST /v1/replays` with a `hotline-trace/1` file (JSON Lines) as the body drives its callers,
agents and callback customers against the suite, and reports the service measures."""

OPERATORS = require("admin", "supervisor")
# A replay acts with admin, switch and agent tokens of its own (it writes the trace's
# customers, logs its agents in, places its calls): only an admin starts or resets one, so
# no token gets more through it than it has (M5 of the security review).
DRIVERS = require("admin")


def create_app(settings: SoftswitchSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> Any:
    settings = settings or SoftswitchSettings()
    service = Service("softswitch", SCHEMA, settings, metadata=metadata,
                      migrations_dir=Path(__file__).parent / "migrations", bus=bus, clock=clock)
    replayer = Replayer(service, settings)
    service.replayer = replayer  # type: ignore[attr-defined]
    service.on_startup(replayer.recover)
    service.on_shutdown(replayer.close)

    router = APIRouter(prefix="/v1", tags=["replays"])

    @router.post("/replays", status_code=status.HTTP_202_ACCEPTED,
                 dependencies=[Depends(DRIVERS)],
                 openapi_extra={"requestBody": {"content": {"application/x-ndjson": {
                     "schema": {"type": "string"}}}, "required": True}})
    async def start_replay(request: Request,
                           speed: float | None = Query(default=None, gt=0),
                           name: str | None = Query(default=None, max_length=200)
                           ) -> JSONResponse:
        """Start a replay of the trace in the body. ``speed`` defaults to the suite's time
        scale, so the simulator and the services agree on how fast time runs."""
        raw = await request.body()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return JSONResponse({"detail": "the trace is not UTF-8 text"}, status_code=400)
        trace, errors = parse_trace(text)
        listed = [e.as_dict() for e in errors]
        if trace.header is None:
            return JSONResponse({"detail": "the trace has no valid hotline-trace/1 header line",
                                 "errors": listed}, status_code=400)
        if trace.records == 0:
            return JSONResponse({"detail": "the trace has no valid lines besides its header",
                                 "errors": listed}, status_code=400)
        effective = speed if speed is not None else service.clock.scale
        if effective > settings.max_speed:
            return JSONResponse({"detail": f"speed is at most {settings.max_speed:g}"},
                                status_code=400)
        replay = await replayer.start(trace, errors, speed=effective,
                                      name=name or (trace.header.name if trace.header else None))
        return JSONResponse({"replay_id": replay.id, "speed": effective,
                             "calls": len(trace.calls), "agents": len(trace.agents),
                             "errors": listed}, status_code=202)

    @router.post("/replays/reset")
    async def reset_replays(principal: Principal = Depends(DRIVERS)) -> dict[str, Any]:
        """Close what earlier replays left in the suite (live calls, callers still queued on
        virtual hold), so that the next replay starts clean; audited. 409 while a replay
        runs."""
        return await replayer.reset(principal.subject)

    @router.get("/replays", dependencies=[Depends(OPERATORS)])
    async def list_replays() -> list[dict[str, Any]]:
        return await replayer.list_replays()

    @router.get("/replays/{replay_id}", dependencies=[Depends(OPERATORS)])
    async def get_replay(replay_id: str) -> dict[str, Any]:
        return await replayer.get(replay_id)

    @router.get("/replays/{replay_id}/calls", dependencies=[Depends(OPERATORS)])
    async def replay_calls(replay_id: str) -> list[dict[str, Any]]:
        """Per-call outcomes in trace seconds (queued, connected, ended, agent, talk, order)."""
        return await replayer.calls(replay_id)

    # A trace is a file: a storm day of call lines is far above the 1 MiB a REST body gets.
    limits = InputLimits(larger_bodies={"/v1/replays": settings.max_trace_bytes})
    return service.create_app(title="Hotline softswitch", description=DESCRIPTION,
                              routers=[router], limits=limits)
