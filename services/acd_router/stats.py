"""Statistics REST and the server-sent-events stream (``/v1/stats``).

Resolves the time range (:func:`domain.stats.resolve_range`), loads its rows from the ``acd``
tables through the repository and hands them to :mod:`domain.stats`, which computes every
measure with ``shared.measures``. Read-only, so a standby replica serves it too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from shared.errors import NotFound, TooBusy
from shared.measures import SERVICE_LEVEL_SECONDS
from shared.service import Service, service_of

from . import repository, store
from .domain.queue import NAME_PATTERN
from .domain.stats import (
    Interval,
    Range,
    Window,
    agent_stats,
    queue_stats,
    resolve_range,
    skill_stats,
)
from .mirror import Acd
from .routes import READERS, acd_of

# Streams open at once per process: each recomputes whole snapshots.
MAX_STREAMS = 16

Threshold = Annotated[float, Query(gt=0, le=3600)]


async def snapshot(svc: Service, acd: Acd, span: Range, where: dict[str, Any],
                   threshold: float, parts: tuple[str, ...]) -> dict[str, Any]:
    async with svc.sessions() as session:
        calls, reservations, changes = await repository.stats_rows(session, span)
    async with svc.reader() as db:
        names = await store.queue_names(db)
        agents = await store.load_agents(db)
    out: dict[str, Any] = {"window": where, "threshold_seconds": threshold}
    if "queues" in parts:
        out["queues"] = list(queue_stats(calls, reservations, span, threshold=threshold,
                                         queues=names).values())
    if "agents" in parts:
        out["agents"] = list(agent_stats(calls, reservations, changes, span,
                                         threshold=threshold,
                                         agents=[a.agent_id for a in agents]).values())
    if "skills" in parts:
        config = acd.engine.config
        queue_skills = {}
        for name in {*names, *(c.queue for c in calls)}:
            found = config.queue(name)
            queue_skills[name] = list(found.skills) if found else [name]
        out["skills"] = list(skill_stats(
            calls, reservations, changes, span, threshold=threshold,
            queue_skills=queue_skills,
            agent_skills={a.agent_id: list(a.skills) for a in agents}).values())
    return out


def add_stats_routes(router: APIRouter) -> None:

    async def compute(svc: Service, acd: Acd, window: Window | None, interval: Interval | None,
                      start: datetime | None, threshold: float, parts: tuple[str, ...]
                      ) -> dict[str, Any]:
        span, where = resolve_range(svc.clock.now(), acd.zone, window, interval, start)
        return await snapshot(svc, acd, span, where, threshold, parts)

    @router.get("/stats/queues", dependencies=[READERS])
    async def queues(window: Window | None = None, interval: Interval | None = None,
                     start: datetime | None = None,
                     threshold: Threshold = SERVICE_LEVEL_SECONDS,
                     svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                     ) -> dict[str, Any]:
        """Per queue over ``window`` (sliding, default 15m) or one ``interval`` from
        ``start``: offered, answered, abandoned, short abandons, service level at
        ``threshold`` s, ASA, longest wait, AHT, ring no answer, calls waiting now."""
        return await compute(svc, acd, window, interval, start, threshold, ("queues",))

    @router.get("/stats/queues/{queue}", dependencies=[READERS])
    async def one_queue(queue: Annotated[str, Path(pattern=NAME_PATTERN)],
                        window: Window | None = None, interval: Interval | None = None,
                        start: datetime | None = None,
                        threshold: Threshold = SERVICE_LEVEL_SECONDS,
                        svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                        ) -> dict[str, Any]:
        async with svc.reader() as db:
            if not await store.queue_exists(db, queue):
                raise NotFound("queue", queue)
        body = await compute(svc, acd, window, interval, start, threshold, ("queues",))
        found = next(q for q in body.pop("queues") if q["queue"] == queue)
        return {**body, **found}

    @router.get("/stats/agents", dependencies=[READERS])
    async def agents(window: Window | None = None, interval: Interval | None = None,
                     start: datetime | None = None,
                     threshold: Threshold = SERVICE_LEVEL_SECONDS,
                     svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                     ) -> dict[str, Any]:
        """Per agent: reservations offered, answered, ASA, AHT, occupancy, ring no answer."""
        return await compute(svc, acd, window, interval, start, threshold, ("agents",))

    @router.get("/stats/skills", dependencies=[READERS])
    async def skills(window: Window | None = None, interval: Interval | None = None,
                     start: datetime | None = None,
                     threshold: Threshold = SERVICE_LEVEL_SECONDS,
                     svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                     ) -> dict[str, Any]:
        """Per skill: the calls of the queues requiring it; occupancy of agents holding it."""
        return await compute(svc, acd, window, interval, start, threshold, ("skills",))

    @router.get("/stats/stream", dependencies=[READERS])
    async def stream(request: Request, window: Window = "15m",
                     every: Annotated[float, Query(ge=1, le=3600)] = 5.0,
                     count: Annotated[int, Query(ge=1, le=100_000)] | None = None,
                     threshold: Threshold = SERVICE_LEVEL_SECONDS,
                     svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                     ) -> StreamingResponse:
        """Server-sent events: a ``snapshot`` (queues, agents, skills over the sliding
        ``window``) at once and every ``every`` suite seconds; ``count`` ends it after that
        many. Snapshots are whole, so a reconnecting client needs no Last-Event-ID."""
        closing = stream_closing(request, svc)
        streams: list[object] = request.app.state.__dict__.setdefault("stats_streams", [])
        if len(streams) >= MAX_STREAMS:
            # Each stream recomputes whole snapshots: a few readers, not a crowd.
            raise TooBusy(f"{MAX_STREAMS} statistics streams are open already")
        token = object()
        streams.append(token)

        async def events() -> AsyncIterator[str]:
            try:
                async for event in snapshots():
                    yield event
            finally:
                streams.remove(token)

        async def snapshots() -> AsyncIterator[str]:
            sent = 0
            while not closing.is_set():
                body = await compute(svc, acd, window, None, None, threshold,
                                     ("queues", "agents", "skills"))
                sent += 1
                yield f"id: {sent}\nevent: snapshot\ndata: {json.dumps(body, default=str)}\n\n"
                if (count is not None and sent >= count) or await request.is_disconnected():
                    return
                sleeper = asyncio.ensure_future(svc.clock.sleep(every))
                stopper = asyncio.ensure_future(closing.wait())
                try:
                    await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    stopper.cancel()
            yield "event: end\ndata: {}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})


def stream_closing(request: Request, svc: Service) -> asyncio.Event:
    """An event set when the service shuts down, so open streams send ``end`` and finish
    instead of being cut (registered on the first stream; no app wiring needed). Under
    uvicorn, whose graceful shutdown waits for responses before the lifespan ends, the
    server's ``timeout_graceful_shutdown`` cancels streams still open."""
    state = request.app.state
    if not hasattr(state, "stats_closing"):
        closing = asyncio.Event()
        state.stats_closing = closing

        async def close() -> None:
            closing.set()

        svc.on_shutdown(close)
    event: asyncio.Event = state.stats_closing
    return event
