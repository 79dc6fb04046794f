"""Suite time.

Every service reads time from a Clock so that ``HOTLINE_TIME_SCALE`` can run the whole suite
faster than real time. Suite time advances ``scale`` seconds per wall second from a shared
origin, so separate processes given the same origin agree on the time.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    scale: float

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of suite time."""
        ...

    def wall_seconds(self, suite_seconds: float) -> float:
        """How many wall seconds a span of suite time takes."""
        ...


class ScaledClock:
    """Suite time = start + (wall - origin) * scale.

    ``start`` defaults to the origin itself (suite time begins at the real time); a replay
    can set it to the trace's start so calendars and calling hours see the trace's day."""

    def __init__(self, scale: float = 1.0, origin: float | None = None,
                 start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self.origin = time.time() if origin is None else origin
        self.start = self.origin if start is None else start.timestamp()

    def now(self) -> datetime:
        suite = self.start + (time.time() - self.origin) * self.scale
        return datetime.fromtimestamp(suite, UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    def wall_seconds(self, suite_seconds: float) -> float:
        return suite_seconds / self.scale


class FakeClock:
    """A clock tests move by hand; sleepers wake when the time passes their deadline."""

    scale = 1.0

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 7, 15, 0, 0, tzinfo=UTC)
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._changed.set()
        self._changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        deadline = self._now + timedelta(seconds=seconds)
        while self._now < deadline:
            await self._changed.wait()

    def wall_seconds(self, suite_seconds: float) -> float:
        return suite_seconds
