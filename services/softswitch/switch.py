"""The switch side of ``WS /v1/switch`` on cti_gateway: one WebSocket for every call.

The link is a client that keeps itself connected (reconnecting with capped exponential
backoff) and hands every frame it receives to one handler. Frames are the SIP-flavoured JSON
of CONTRACTS.md; ``cseq`` is per sender and increasing, including for ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shared import switch_frames as frames

log = structlog.get_logger(__name__)

Frame = frames.FromCti
Answer = frames.Response | frames.ErrorFrame
FrameHandler = Callable[[Frame], Awaitable[None]]
ResponseHandler = Callable[[Answer], Awaitable[None]]


class LinkDown(ConnectionError):
    pass


def ws_url(http_url: str, path: str) -> str:
    """``http://host:port`` (as in CommonSettings) to ``ws://host:port<path>``."""
    base = http_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + path


class SwitchLink:
    def __init__(self, url: str, token: Callable[[], str], handler: FrameHandler, *,
                 backoff_min: float = 0.2, backoff_max: float = 5.0) -> None:
        self.url = url
        self._token = token
        self._handler = handler
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._cseq = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        # Our requests awaiting a final response (or an error frame), by cseq.
        self._pending: dict[int, ResponseHandler] = {}
        self.connects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="softswitch:switch-link")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._handlers):
            task.cancel()

    async def wait_connected(self, within: float) -> bool:
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), within)
        return self.connected

    async def _run(self) -> None:
        backoff = self._backoff_min
        warned = False
        while True:
            try:
                async with connect(self.url, open_timeout=5, max_size=None, ping_interval=20,
                                   additional_headers={"Authorization": f"Bearer {self._token()}"}
                                   ) as ws:
                    self._ws = ws
                    self._connected.set()
                    self.connects += 1
                    backoff = self._backoff_min
                    warned = False
                    log.info("switch link up", url=self.url)
                    async for message in ws:
                        if isinstance(message, bytes):
                            continue
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionClosed, TimeoutError, Exception) as error:
                # Only the first failure of a streak is worth a warning; CTI may simply not
                # be up yet in a suite that starts every service together.
                (log.debug if warned else log.warning)(
                    "switch link down; reconnecting", url=self.url, error=repr(error),
                    retry_in=backoff)
                warned = True
            finally:
                self._ws = None
                self._connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max)

    def _dispatch(self, message: str) -> None:
        try:
            frame = frames.parse_from_cti(message)
        except frames.BadFrame as bad:
            log.warning("switch link: a frame from CTI that is not one", error=str(bad),
                        frame=message[:200])
            return
        # Each frame in its own task: a handler that awaits (an HTTP call, a send) must not
        # hold up the frames of other calls.
        task = asyncio.create_task(self._handle(frame))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _handle(self, frame: Frame) -> None:
        try:
            if (isinstance(frame, frames.Response | frames.ErrorFrame)
                    and frame.cseq is not None and frame.cseq in self._pending):
                final = isinstance(frame, frames.ErrorFrame) or frame.status >= 200
                callback = self._pending.pop(frame.cseq) if final else self._pending[frame.cseq]
                await callback(frame)
                return
            await self._handler(frame)
        except Exception:
            log.exception("switch frame handler failed", frame=repr(frame))

    async def _send(self, frame: dict[str, Any], within: float = 10.0) -> None:
        """Send over the link, waiting up to ``within`` seconds for it to be up. A frame the
        closing connection refused was not sent: it goes once more over the next one (CTI
        restarted, say), so that a call does not end on the restart alone."""
        text = json.dumps(frame)
        for attempt in (1, 2):
            if not self.connected:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), within)
            ws = self._ws
            if ws is None:
                raise LinkDown("switch link to CTI is down")
            try:
                await ws.send(text)
                return
            except ConnectionClosed as error:
                if attempt == 2:
                    raise LinkDown(str(error)) from error
                if self._ws is ws:  # the reader has not seen the close yet
                    self._connected.clear()

    async def request(self, method: frames.Method, call_id: str, leg: frames.Leg, *,
                      on_response: ResponseHandler | None = None, **fields: Any) -> int:
        """Send a request; ``on_response`` gets its responses (provisional and final) and
        any error frame about it. Registered before sending, so no response can slip by."""
        cseq = next(self._cseq)
        if on_response is not None:
            self._pending[cseq] = on_response
        try:
            await self._send(frames.request(method, call_id, cseq, leg, fields))
        except BaseException:
            self._pending.pop(cseq, None)
            raise
        return cseq

    def forget(self, cseq: int) -> None:
        self._pending.pop(cseq, None)

    async def respond(self, request: frames.CtiRequest, status: int) -> None:
        await self._send(frames.response(request, status))

    async def error(self, request: frames.CtiRequest, code: frames.ErrorCode,
                    message: str) -> None:
        await self._send(frames.error(code, message, request.call_id, request.cseq))
