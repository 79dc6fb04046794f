"""The media fork: an agent-connected call's audio streamed to recording.

Audio is paced by the replay clock, not by the wall: each tick sends the samples for the
trace time elapsed since the last frame, and the stop flushes exactly up to the hang-up
instant, so the recording's duration (samples / rate) equals the connected time in trace
seconds whatever the wall-clock jitter or the replay speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import struct

import structlog
from websockets.asyncio.client import ClientConnection, connect

from services.softswitch.replay_clock import ReplayClock

log = structlog.get_logger(__name__)

SAMPLE_RATE = 8000
BYTES_PER_SAMPLE = 2
# Cap one binary frame so a fast replay's catch-up does not become one huge message.
MAX_FRAME_SAMPLES = SAMPLE_RATE * 4


def _make_buffer(seconds: int = 1) -> bytes:
    # A quiet 425 Hz tone with a little noise: cheap, deterministic and recognisably audio.
    rng = random.Random(95598)
    samples = (int(2500 * math.sin(2 * math.pi * 425 * i / SAMPLE_RATE) + rng.randint(-300, 300))
               for i in range(SAMPLE_RATE * seconds))
    return b"".join(struct.pack("<h", s) for s in samples)


_BUFFER = _make_buffer()
_BUFFER_SAMPLES = len(_BUFFER) // BYTES_PER_SAMPLE


def pcm(offset: int, count: int) -> bytes:
    """``count`` samples of the looping buffer starting at sample ``offset``."""
    out = bytearray()
    while count > 0:
        start = offset % _BUFFER_SAMPLES
        take = min(count, _BUFFER_SAMPLES - start)
        out += _BUFFER[start * BYTES_PER_SAMPLE:(start + take) * BYTES_PER_SAMPLE]
        offset += take
        count -= take
    return bytes(out)


def samples_between(start: float, end: float) -> int:
    return max(0, round((end - start) * SAMPLE_RATE))


class MediaFork:
    def __init__(self, url: str, token: str, call_id: str, clock: ReplayClock, *,
                 frame_seconds: float = 0.05) -> None:
        self.url = url
        self.token = token
        self.call_id = call_id
        self.clock = clock
        self.frame_seconds = frame_seconds
        self.started_at: float | None = None
        self.planned_end: float | None = None
        self.sent_samples = 0
        self.stopped_at: float | None = None
        self.error: str | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, at: float, planned_end: float | None = None) -> None:
        """Begin forking at trace instant ``at`` (the agent leg's ACK). Frames never run past
        ``planned_end`` (the scheduled hang-up), so a tick that fires just after it cannot
        add audio the stop would then have to take back."""
        self.started_at = at
        self.planned_end = planned_end
        self._task = asyncio.create_task(self._run(), name=f"media:{self.call_id}")

    async def stop(self, at: float) -> None:
        """End the fork at trace instant ``at`` (the hang-up) and wait until it is flushed."""
        if self.stopped_at is None:
            self.stopped_at = at
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

    async def _send_until(self, ws: ClientConnection, instant: float) -> None:
        assert self.started_at is not None
        due = samples_between(self.started_at, instant)
        while self.sent_samples < due:
            count = min(due - self.sent_samples, MAX_FRAME_SAMPLES)
            await ws.send(pcm(self.sent_samples, count))
            self.sent_samples += count

    async def _run(self) -> None:
        try:
            async with connect(self.url, open_timeout=10, max_size=None,
                               additional_headers={"Authorization": f"Bearer {self.token}"}
                               ) as ws:
                await ws.send(json.dumps({"type": "start", "call_id": self.call_id,
                                          "encoding": "pcm_s16le", "sample_rate": SAMPLE_RATE,
                                          "channels": 1}))
                while not self._stop.is_set():
                    now = self.clock.now()
                    if self.planned_end is not None:
                        now = min(now, self.planned_end)
                    await self._send_until(ws, now)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.frame_seconds)
                assert self.stopped_at is not None
                await self._send_until(ws, self.stopped_at)
                await ws.send(json.dumps({"type": "stop"}))
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # A recording failure must not disturb the call itself.
            self.error = repr(error)
            log.warning("media fork failed", call_id=self.call_id, error=self.error)
