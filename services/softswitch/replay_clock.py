"""The replay clock: trace time = (wall - start) x speed.

Every trace timing (call arrivals, think, patience, answer_after, talk, wrapup, login and
logout) is an instant on this clock, so a replay at speed N takes 1/N of the trace's span.
A monotonic wall source keeps NTP steps from bending trace time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ReplayClock:
    def __init__(self, speed: float, *, wall: Callable[[], float] = time.monotonic,
                 started: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._wall = wall
        self.started = wall() if started is None else started

    def now(self) -> float:
        """Trace seconds since the replay started."""
        return (self._wall() - self.started) * self.speed

    def wall_delay(self, trace_seconds: float) -> float:
        return max(0.0, trace_seconds) / self.speed

    def delay_until(self, instant: float) -> float:
        """Wall seconds until trace instant ``instant`` (0 if it has passed)."""
        return max(0.0, (instant - self.now()) / self.speed)

    def wall_at(self, instant: float) -> float:
        """The wall reading (of this clock's source) at trace instant ``instant``."""
        return self.started + instant / self.speed

    async def sleep_until(self, instant: float) -> None:
        # Re-check after waking: asyncio may wake a little early on coarse timers.
        for _ in range(100):
            delay = self.delay_until(instant)
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def sleep(self, trace_seconds: float) -> float:
        """Sleep ``trace_seconds`` from now; return the trace instant it ends at."""
        instant = self.now() + max(0.0, trace_seconds)
        await self.sleep_until(instant)
        return instant
