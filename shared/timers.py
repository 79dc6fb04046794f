"""One timer loop per service: asleep until the earliest deadline it knows of.

Deadlines live in the tables (a restarted process, or another replica, finds them there), so
the loop asks the service to fire what is due and to say when the next one is; it then sleeps
on the suite clock until that moment, or until the service schedules a nearer deadline (after
the commit that wrote it), or at most ``recheck_wall_seconds`` of wall time (a deadline
another replica wrote). Idle, a service costs one query per recheck instead of a poll every
fraction of a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from shared.clock import Clock

log = structlog.get_logger(__name__)

# Fire the due work; return the earliest deadline still ahead (None: nothing is pending).
RETRY_WALL_SECONDS = 0.05
STOP_GRACE_SECONDS = 5.0
Fire = Callable[[], Awaitable[datetime | None]]


class Timer:
    def __init__(self, clock: Clock, fire: Fire, *, recheck_wall_seconds: float,
                 name: str) -> None:
        self.clock = clock
        self.fire = fire
        self.recheck_wall_seconds = recheck_wall_seconds
        self.name = name
        self._planned: datetime | None = None
        self._wake = asyncio.Event()

    def schedule(self, due: datetime | None) -> None:
        """A deadline was committed: wake the loop if it is sooner than the one planned."""
        if due is not None and (self._planned is None or due < self._planned):
            self._planned = due
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            firing = asyncio.ensure_future(self.fire())
            try:
                upcoming = await asyncio.shield(firing)
            except asyncio.CancelledError:
                # Stopping: let the statement in flight finish first (SQLAlchemy's asyncio
                # bridge can wedge a connection cancelled mid-statement, and the shutdown
                # then waits on it). Waiting, not awaiting: nothing here may swallow the
                # cancellation.
                await asyncio.wait({firing}, timeout=STOP_GRACE_SECONDS)
                raise
            except Exception:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                log.exception("timer failed; retrying", timer=self.name)
                upcoming = None
            if self._planned is not None and self._planned <= self.clock.now():
                self._planned = None
            if upcoming is not None and (self._planned is None or upcoming < self._planned):
                self._planned = upcoming
            await self._sleep()

    async def _sleep(self) -> None:
        """Until the planned deadline, and at most ``recheck_wall_seconds``. A deadline
        scheduled meanwhile moves the wake-up nearer; it fires nothing before it is due (a
        ring started is scheduled at once, and used to cost a look at the tables)."""
        give_up = time.monotonic() + self.recheck_wall_seconds
        first = True
        while True:
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
            if self._planned is not None:
                seconds = (self._planned - self.clock.now()).total_seconds()
                if seconds <= 0:
                    waits[0].cancel()
                    if first:
                        # Still due after firing (a row another unit of work holds, say):
                        # look again shortly rather than spin on it.
                        await asyncio.sleep(RETRY_WALL_SECONDS)
                    return
                waits.append(asyncio.ensure_future(self.clock.sleep(seconds)))
            first = False
            left = give_up - time.monotonic()
            try:
                if left > 0:
                    await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # Cancelled and left: awaiting them here could swallow our own cancellation.
                for waiting in waits:
                    waiting.cancel()
            if left <= 0 or not self._wake.is_set():
                return  # the deadline came, or the recheck is due
            self._wake.clear()
