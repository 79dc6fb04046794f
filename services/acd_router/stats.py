"""Statistics REST and the server-sent-events stream (``/v1/stats``).

Loads the rows of a time range from the ``acd`` tables and hands them to
:mod:`domain.stats`, which computes every measure with ``shared.measures``. Read-only, so a
standby replica serves it too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.errors import Invalid, NotFound
from shared.measures import SERVICE_LEVEL_SECONDS
from shared.service import Service, service_of

from . import store
from .db import agent_state_changes, queue_entries, routing_decisions
from .domain.queue import NAME_PATTERN
from .domain.stats import (
    CallRow,
    Range,
    ReservationRow,
    StateRow,
    agent_stats,
    queue_stats,
    skill_stats,
)
from .mirror import Acd
from .routes import READERS, acd_of

LENGTHS = {"5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400}
Window = Literal["5m", "15m", "30m", "1h", "4h", "1d"]
Interval = Literal["15m", "1h", "1d"]
Threshold = Annotated[float, Query(gt=0, le=3600)]


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def resolve_range(now: datetime, acd: Acd, window: Window | None, interval: Interval | None,
                  start: datetime | None) -> tuple[Range, dict[str, Any]]:
    """A sliding window ending now, or one interval (15 min, hour, day in the ACD's time
    zone) containing ``start`` (default: the current one)."""
    if window is not None and (interval is not None or start is not None):
        raise Invalid("window", "give either window or interval (with start), not both")
    if interval is None:
        length = LENGTHS[window or "15m"]
        begin = now - timedelta(seconds=length)
        return Range(begin.timestamp(), now.timestamp()), {
            "kind": "window", "length": window or "15m", "start": begin, "end": now}
    if start is not None and start.tzinfo is None:
        raise Invalid("start", "start needs a time zone offset")
    local = (start or now).astimezone(acd.zone)
    if interval == "1d":
        # Wall-clock days in the ACD's zone (a DST day is 23 or 25 hours long).
        begin = datetime.combine(local.date(), time(0), tzinfo=acd.zone)
        end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=acd.zone)
    else:
        minutes = 15 if interval == "15m" else 60
        begin = local.replace(minute=local.minute - local.minute % minutes, second=0,
                              microsecond=0)
        end = begin + timedelta(minutes=minutes)
    begin_utc, end_utc = begin.astimezone(UTC), end.astimezone(UTC)
    return Range(begin_utc.timestamp(), end_utc.timestamp()), {
        "kind": "interval", "length": interval, "start": begin_utc, "end": end_utc,
        "complete": end_utc <= now}


async def load_rows(session: AsyncSession, span: Range
                    ) -> tuple[list[CallRow], list[ReservationRow], list[StateRow]]:
    start = datetime.fromtimestamp(span.start, UTC)
    end = datetime.fromtimestamp(span.end, UTC)
    q = queue_entries.c
    calls = [CallRow(call_id=r.call_id, queue=r.queue, state=r.state,
                     enqueued_at=r.enqueued_at.timestamp(), agent_id=r.agent_id,
                     answered_at=_ts(r.answered_at), ended_at=_ts(r.ended_at),
                     wrapup_ended_at=_ts(r.wrapup_ended_at))
             for r in await session.execute(
                 select(queue_entries).where(
                     q.enqueued_at < end,
                     or_(q.answered_at >= start, q.ended_at >= start,
                         and_(q.answered_at.is_(None), q.ended_at.is_(None)))))]
    d = routing_decisions.c
    reservations = [ReservationRow(agent_id=r.agent_id, queue=r.queue,
                                   decided_at=r.decided_at.timestamp(), outcome=r.outcome,
                                   outcome_reason=r.outcome_reason,
                                   outcome_at=_ts(r.outcome_at))
                    for r in await session.execute(
                        select(routing_decisions).where(
                            d.kind == "reserved",
                            or_(and_(d.decided_at >= start, d.decided_at < end),
                                and_(d.outcome_at >= start, d.outcome_at < end))))]
    c = agent_state_changes.c
    # Each agent's state at the start (its last change before it), then the changes inside.
    last_before = (select(agent_state_changes).where(c.at < start)
                   .distinct(c.agent_id).order_by(c.agent_id, c.at.desc(), c.id.desc()))
    inside = select(agent_state_changes).where(c.at >= start, c.at < end)
    changes = [StateRow(agent_id=r.agent_id, at=r.at.timestamp(), previous=r.previous,
                        state=r.state)
               for query in (last_before, inside) for r in await session.execute(query)]
    return calls, reservations, changes


async def snapshot(svc: Service, acd: Acd, span: Range, where: dict[str, Any],
                   threshold: float, parts: tuple[str, ...]) -> dict[str, Any]:
    async with svc.sessions() as session:
        calls, reservations, changes = await load_rows(session, span)
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
        span, where = resolve_range(svc.clock.now(), acd, window, interval, start)
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
                     every: Annotated[float, Query(gt=0, le=3600)] = 5.0,
                     count: Annotated[int, Query(ge=1)] | None = None,
                     threshold: Threshold = SERVICE_LEVEL_SECONDS,
                     svc: Service = Depends(service_of), acd: Acd = Depends(acd_of)
                     ) -> StreamingResponse:
        """Server-sent events: a ``snapshot`` (queues, agents, skills over the sliding
        ``window``) at once and every ``every`` suite seconds; ``count`` ends it after that
        many. Snapshots are whole, so a reconnecting client needs no Last-Event-ID."""
        closing = stream_closing(request, svc)

        async def events() -> AsyncIterator[str]:
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
