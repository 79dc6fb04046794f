"""Active/standby: a lease row in PostgreSQL decides which acd_router process routes.

The holder renews ``acd.leader_lease.expires_at`` (PostgreSQL's clock, so the processes'
clocks never have to agree) every ``lease_renew_seconds``; a standby polls twice as often
and takes the row over once it has expired, bumping ``epoch``. The takeover runs under the
routing advisory lock, and every routing transaction (``Acd.lock`` calls :meth:`check`)
checks, under that same lock, that the stored epoch is still the one this process was
granted. So a routing transaction either commits entirely before a takeover or sees the new
epoch and raises :class:`NotActive`: an ex-holder that was paused past its expiry cannot
write. REST writes on a standby fail the same way (503 naming the active instance).

Promotion: rebuild the engine from the tables (first routing transaction), start the event
consumer (the backlog of the shared queue, including the ``cti.call.released`` events of
calls that ended meanwhile, is then applied in order), reconcile reservations whose expiry
passed while nobody was active (asking CTI), and only then let the deadline loop run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from datetime import timedelta
from typing import Any

import httpx
import structlog
from fastapi import APIRouter, Request
from pydantic import BaseModel

from shared.errors import DomainError
from shared.messaging import Transaction
from shared.service import Service

from . import repository
from .domain import EntryState, QueueEntry
from .mirror import ROUTING_LOCK, Acd
from .repository import LeaseRow
from .routes import READERS
from .settings import AcdSettings

log = structlog.get_logger(__name__)

ACTIVE = "active"
STANDBY = "standby"

# What CTI says about a reservation whose expiry passed while no router was active.
GONE = "gone"  # the call ended: close it, free the agent
ALIVE = "alive"  # still ringing this agent, or connected to it: its events will come
UNKNOWN = "unknown"  # anything else, or CTI unreachable: expire it normally (requeue)


class NotActive(DomainError):
    """This process is the standby (or was fenced off): it does not route or accept writes."""

    status_code = 503

    def __init__(self, instance: str, active: str | None, url: str | None) -> None:
        super().__init__(f"acd_router instance {instance!r} is the standby; the active "
                         f"instance is {active or 'none (takeover pending)'!r}"
                         + (f" at {url}" if url else ""))
        self.instance, self.active, self.url = instance, active, url

    def detail(self) -> dict[str, Any]:
        return {"error": "standby", "message": str(self), "instance": self.instance,
                "active_instance": self.active, "active_url": self.url}


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Leadership:
    """This process's role, the lease loop, fencing and the takeover sequence."""

    def __init__(self, service: Service, acd: Acd, settings: AcdSettings) -> None:
        self.service = service
        self.acd = acd
        self.settings = settings
        self.instance = settings.instance_id or default_instance_id()
        self.url = f"http://{settings.host}:{settings.port}"
        self.epoch: int | None = None  # granted epoch while active
        self.reconciled = False  # deadlines wait for the takeover's reconciliation
        self.promoted_at: float | None = None  # wall (time.time()) of the last promotion
        self.takeover_seconds: float | None = None  # lease acquired -> consuming
        self.last_seen: LeaseRow | None = None
        self._refreshed_generation: int | None = None

    @property
    def role(self) -> str:
        return ACTIVE if self.epoch is not None else STANDBY

    @property
    def active(self) -> bool:
        return self.epoch is not None

    @property
    def deadlines_allowed(self) -> bool:
        return self.epoch is not None and self.reconciled

    def info(self) -> dict[str, Any]:
        seen = self.last_seen
        return {
            "instance": self.instance, "role": self.role, "epoch": self.epoch,
            "active_instance": self.instance if self.active else (seen.holder if seen else None),
            "active_url": self.url if self.active else (seen.url if seen else None),
            "lease_expires_at": seen.expires_at.isoformat() if seen else None,
            "promoted_at": self.promoted_at, "takeover_seconds": self.takeover_seconds,
        }

    # -- fencing (Acd.lock checks, under the routing lock) --------------------------------

    @property
    def idle_timeout_ms(self) -> int:
        # A process paused inside a routing transaction would hold the routing lock and
        # block the takeover; PostgreSQL ends such a session after the lease time.
        return int(self.settings.lease_seconds * 1000)

    def check(self, row: LeaseRow | None) -> None:
        if self.epoch is None or row is None or row.epoch != self.epoch \
                or row.holder != self.instance:
            if row is not None:
                self.last_seen = row
            raise NotActive(self.instance, row.holder if row else None, row.url if row else None)

    # -- lease operations ----------------------------------------------------------------------

    async def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or already this instance's."""
        async with self.service.sessions() as session:
            row = await repository.read_lease(session)
            await session.rollback()
        if row is not None:
            self.last_seen = row
            if not row.expired and row.holder != self.instance:
                return False
        async with self.service.sessions() as session, session.begin():
            # Under the routing lock (see fence), committed at once to release it.
            epoch, previous = await repository.acquire_lease(
                session, self.instance, self.url, self.settings.lease_seconds, ROUTING_LOCK)
        if epoch is None:
            return False
        log.warning("acd_router lease acquired", instance=self.instance, epoch=epoch,
                    previous=previous)
        self.epoch = epoch
        self.reconciled = False
        return True

    async def renew(self) -> bool:
        """Extend the lease; False if another instance has taken it (this one is fenced)."""
        async with self.service.sessions() as session, session.begin():
            renewed = await repository.renew_lease(session, self.instance, self.epoch,
                                                   self.settings.lease_seconds)
            self.last_seen = await repository.read_lease(session)
        return renewed

    async def release(self) -> None:
        """On a clean shutdown: expire the lease now so the standby need not wait it out."""
        if self.epoch is None:
            return
        epoch, self.epoch = self.epoch, None
        with contextlib.suppress(Exception):
            async with self.service.sessions() as session, session.begin():
                await repository.expire_lease(session, self.instance, epoch)

    # -- the takeover ------------------------------------------------------------------------

    async def start(self) -> None:
        """At startup: become active if nobody holds the lease, else start as the standby."""
        if await self.try_acquire():
            await self.promote()
        else:
            log.info("acd_router starts as standby", instance=self.instance,
                     active=self.last_seen.holder if self.last_seen else None)
            await self.refresh_read_model()

    async def promote(self) -> None:
        started = time.monotonic()
        # 1. Rebuild the engine from the tables (forced: the standby's copy is only a read
        #    model) and route what can be routed, in one fenced routing transaction.
        self.acd.mark_stale()
        async with self.service.transaction() as tx:
            await self.acd.warm_up(tx)
        # 2. Consume: the shared queue kept every event meanwhile, so connects and releases
        #    (callers who hung up while queued) are applied in order.
        await self.service.start_consumers()
        self.promoted_at = time.time()
        self.takeover_seconds = round(time.monotonic() - started, 3)
        log.warning("acd_router is active", instance=self.instance, epoch=self.epoch,
                    takeover_seconds=self.takeover_seconds)
        # 3. Reservations that expired with nobody active, before the deadline loop would
        #    requeue them blindly (and ring another agent for a caller who is gone).
        try:
            await self.reconcile()
        except NotActive:
            return
        except Exception:
            log.exception("takeover reconciliation failed; deadlines expire the rest")
        self.reconciled = True
        if self.acd.on_deadline is not None:
            self.acd.on_deadline(self.service.clock.now())  # what fell due meanwhile

    async def reconcile(self) -> dict[str, int]:
        """Close expired reservations of calls CTI has released; give still-ringing or
        connected ones the normal ring time again; leave the rest to expiry (requeue)."""
        due = self.acd.floor.reservations_due(self.service.clock.now())
        if not due:
            return {}
        verdicts = await asyncio.gather(*(self.cti_verdict(entry) for entry in due))
        counts = {GONE: 0, ALIVE: 0, UNKNOWN: 0}
        async with self.service.transaction() as tx:
            await self.acd.lock(tx)
            for stale, verdict in zip(due, verdicts, strict=True):
                counts[verdict] += 1
                entry = await self.acd.floor.entry(tx, stale.call_id)
                if (entry is None or entry.state is not EntryState.RESERVED
                        or entry.reservation_id != stale.reservation_id):
                    continue  # an event from the backlog already moved it on
                await self._settle(tx, entry, verdict)
            await self.acd.apply_decisions(tx)
        log.warning("takeover reconciled expired reservations", **counts)
        return counts

    async def _settle(self, tx: Transaction, entry: QueueEntry, verdict: str) -> None:
        acd, now = self.acd, tx.now
        if verdict == GONE:
            # As cti.call.released would: the call is abandoned, the agent freed.
            agent = await acd.reserved_agent(tx, entry)
            reservation_id = entry.reservation_id
            await acd.abandon(tx, entry)
            acd.floor.close_decision(tx, reservation_id, "cancelled", now, "reconciled")
            if agent is not None:
                await acd.save_agent(tx, agent, agent.cancel(now))
        elif verdict == ALIVE:
            entry.reservation_expires_at = now + timedelta(seconds=self.acd.reservation_seconds)
            acd.floor.save_entry(tx, entry)
            acd.note_deadline(tx, entry.reservation_expires_at)
        # UNKNOWN: the deadline loop expires it (call back to waiting, agent not ready).

    async def cti_verdict(self, entry: QueueEntry) -> str:
        # On virtual hold the reservation rings on the agent-first dial, not the caller's call.
        url = f"{self.settings.common.cti_url}/v1/calls/{entry.live_call_id}"
        try:
            response = await self.service.http.get(url, timeout=1.0)
        except httpx.HTTPError as error:
            log.warning("CTI unreachable during reconciliation", call_id=entry.call_id,
                        error=str(error))
            return UNKNOWN
        if response.status_code == 404:
            return GONE
        if response.status_code != 200:
            return UNKNOWN
        call = response.json()
        if call.get("state") == "released":
            return GONE
        if (call.get("state") in ("alerting", "dialing", "connected")
                and call.get("reservation_id") == entry.reservation_id):
            return ALIVE
        return UNKNOWN

    async def demote(self) -> None:
        """Another instance holds the lease now: stop routing; stop the process if it was
        consuming (a bus consumer cannot be detached, and fenced deliveries would only be
        redelivered)."""
        log.critical("acd_router lost its lease", instance=self.instance, epoch=self.epoch,
                     holder=self.last_seen.holder if self.last_seen else None)
        self.epoch = None
        self.reconciled = False
        self.acd.mark_stale()
        if self.service.messaging.consuming and self.settings.exit_on_lease_loss:
            os.kill(os.getpid(), signal.SIGTERM)

    async def refresh_read_model(self) -> None:
        """Standby: rebuild the engine (positions, estimates, config for the GETs) when the
        tables changed, in a transaction that is rolled back, without routing anything."""
        acd = self.acd
        async with self.service.messaging.read_view() as view:
            generation = await view.fetchval("SELECT generation FROM acd.engine_state WHERE id = 1")
            if generation is None or generation == self._refreshed_generation:
                return
            await acd.rebuild_read_model(view)
        self._refreshed_generation = int(generation)

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Background task: renew while active, try to take over while standby."""
        renew = self.settings.lease_renew_seconds
        while True:
            if self.active:
                await asyncio.sleep(renew)
                try:
                    held = await self.renew()
                except Exception as error:
                    # Keep trying: the lease is ours until someone else takes it.
                    log.warning("lease renewal failed", error=str(error))
                    continue
                if not held:
                    await self.demote()
            else:
                await asyncio.sleep(renew / 2)
                try:
                    if await self.try_acquire():
                        await self.promote()
                    else:
                        await self.refresh_read_model()
                except NotActive:
                    self.epoch = None
                except Exception as error:
                    log.warning("standby lease poll failed", error=str(error))


class InstanceView(BaseModel):
    instance: str
    role: str
    epoch: int | None
    active_instance: str | None
    active_url: str | None
    lease_expires_at: str | None
    promoted_at: float | None
    takeover_seconds: float | None


def build_instance_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["acd"])

    @router.get("/instance", dependencies=[READERS])
    async def instance(request: Request) -> InstanceView:
        """This process's role (active or standby) and who holds the lease."""
        leadership: Leadership = request.app.state.leadership
        return InstanceView.model_validate(leadership.info())
    return router
