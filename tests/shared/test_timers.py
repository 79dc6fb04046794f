"""The timer loop: it fires when a deadline is due, not when one is scheduled."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from shared.clock import ScaledClock
from shared.timers import Timer


async def test_a_scheduled_deadline_fires_when_due_and_not_before() -> None:
    clock = ScaledClock()
    fired: list[datetime] = []

    async def fire() -> datetime | None:
        fired.append(clock.now())
        return None

    timer = Timer(clock, fire, recheck_wall_seconds=30, name="test")
    task = asyncio.create_task(timer.run())
    try:
        await asyncio.sleep(0.05)
        assert len(fired) == 1  # the first look, at start
        due = clock.now() + timedelta(seconds=0.4)
        timer.schedule(due)
        await asyncio.sleep(0.2)
        assert len(fired) == 1  # scheduled, not yet due: nothing looked at the tables
        await asyncio.sleep(0.4)
        assert len(fired) == 2 and fired[1] >= due
        # A nearer deadline scheduled during a long sleep shortens it.
        timer.schedule(clock.now() + timedelta(seconds=60))
        await asyncio.sleep(0.05)
        nearer = clock.now() + timedelta(seconds=0.2)
        timer.schedule(nearer)
        await asyncio.sleep(0.4)
        assert len(fired) == 3 and fired[2] >= nearer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
