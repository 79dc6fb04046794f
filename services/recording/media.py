"""The media fork endpoint: ``WS /v1/media/{call_id}`` (a switch's media grant for the call).

Protocol (docs/CONTRACTS.md, "Media fork"): a ``start`` text frame, binary PCM frames, a
``stop`` text frame, close. A frame we cannot use gets ``{"type":"error","code","message"}``
and is dropped without touching what was written. A socket that drops without ``stop``
still finalizes the audio received so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Literal

import structlog
from fastapi import APIRouter, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from services.recording import handlers
from services.recording.handlers import Recorder
from services.recording.wav import WavWriter
from shared.auth import WS_FORBIDDEN, authorize_websocket
from shared.errors import IllegalTransition

log = structlog.get_logger(__name__)

SUPPORTED_ENCODINGS = ("pcm_s16le",)
# Close code after a start the call's state refuses (4000-4999: application codes).
WS_ILLEGAL_STATE = 4409


class StartFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["start"]
    call_id: str = Field(min_length=1, max_length=128)
    encoding: str
    sample_rate: int = Field(ge=8000, le=48000)
    channels: int = Field(ge=1)


class MediaError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MediaSession:
    """One forked stream. Audio is collected up to ``flush_bytes`` and written from a worker
    thread, so the event loop never blocks on the disk and memory stays bounded."""

    def __init__(self, websocket: WebSocket, recorder: Recorder, call_id: str) -> None:
        self.ws = websocket
        self.recorder = recorder
        self.call_id = call_id
        self.flush_bytes = recorder.settings.flush_bytes
        self.max_frame_bytes = recorder.settings.max_frame_bytes
        self.max_stream_seconds = recorder.settings.max_stream_seconds
        # Bytes of audio the stream may still carry (set by its start frame).
        self.room = 0
        self.writer: WavWriter | None = None
        self.buffer = bytearray()
        self.stopped = False

    async def run(self) -> None:
        try:
            while not self.stopped:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    if self.writer is not None:
                        log.warning("media stream dropped without stop; finalizing")
                    break
                try:
                    if message.get("bytes") is not None:
                        await self._audio(message["bytes"])
                    elif message.get("text") is not None:
                        await self._control(message["text"])
                except MediaError as error:
                    await self._send_error(error.code, error.message)
        except WebSocketDisconnect:
            pass
        finally:
            if self.writer is not None:
                # Shielded: a server shutting down must not leave a half-patched file.
                await asyncio.shield(self._finalize())
        if self.stopped:
            with contextlib.suppress(Exception):
                await self.ws.close(code=1000)

    async def _control(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except RecursionError:
            # Security review H3: it used to end the stream and lose the audio after it.
            raise MediaError("bad_frame", "text frame nested too deeply") from None
        except ValueError:
            raise MediaError("bad_frame", "text frame is not valid JSON") from None
        if not isinstance(frame, dict):
            raise MediaError("bad_frame", "text frame must be a JSON object")
        kind = frame.get("type")
        if kind == "start":
            await self._start(frame)
        elif kind == "stop":
            if self.writer is None:
                raise MediaError("bad_frame", "stop before start")
            self.stopped = True
        else:
            raise MediaError("bad_frame", f"unknown frame type {kind!r}")

    async def _start(self, frame: dict[str, Any]) -> None:
        if self.writer is not None:
            raise MediaError("bad_frame", "the stream has already started")
        try:
            start = StartFrame.model_validate(frame)
        except ValidationError as error:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in error.errors())
            raise MediaError("bad_frame", f"invalid start frame ({fields})") from None
        if start.call_id != self.call_id:
            raise MediaError("bad_frame",
                             f"start is for call {start.call_id!r}, the socket for {self.call_id!r}")
        if start.encoding not in SUPPORTED_ENCODINGS or start.channels != 1:
            raise MediaError("unsupported_encoding",
                             f"only {', '.join(SUPPORTED_ENCODINGS)} mono is accepted "
                             f"(got {start.encoding}, {start.channels} channels)")
        try:
            recording_id, self.writer = await handlers.start_media(
                self.recorder, self.call_id, start.sample_rate)
        except IllegalTransition as error:
            await self._send_error("illegal_state", str(error))
            await self.ws.close(code=WS_ILLEGAL_STATE, reason="call already recorded")
            self.stopped = True
            return
        self.room = 2 * int(self.max_stream_seconds * start.sample_rate)
        structlog.contextvars.bind_contextvars(recording_id=recording_id)
        log.info("media stream started", sample_rate=start.sample_rate)

    async def _audio(self, data: bytes) -> None:
        if self.writer is None:
            raise MediaError("bad_frame", "audio before start")
        if len(data) % 2:
            raise MediaError("bad_frame", f"audio frame of {len(data)} bytes is not whole samples")
        if len(data) > self.max_frame_bytes:
            raise MediaError("bad_frame", f"audio frame over {self.max_frame_bytes} bytes")
        if len(data) > self.room:
            # Keep what fits, then end the stream as if it had stopped.
            self.buffer += data[:self.room]
            self.room = 0
            self.stopped = True
            raise MediaError("too_long", f"a stream carries at most {self.max_stream_seconds:g} "
                             "s of audio; stored up to there")
        self.room -= len(data)
        self.buffer += data
        if len(self.buffer) >= self.flush_bytes:
            await self._flush(self.writer)

    async def _flush(self, writer: WavWriter) -> None:
        if self.buffer:
            chunk, self.buffer = bytes(self.buffer), bytearray()
            await asyncio.to_thread(writer.write, chunk)

    async def _finalize(self) -> None:
        writer, self.writer = self.writer, None
        assert writer is not None
        try:
            await self._flush(writer)
            wav = await asyncio.to_thread(writer.close)
            rec = await handlers.finish_media(self.recorder, self.call_id, wav)
            log.info("media stream stopped", frames=wav.frames, state=rec.state.value)
        except Exception:
            log.exception("could not finalize media stream")

    async def _send_error(self, code: str, message: str) -> None:
        if self.ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await self.ws.send_json({"type": "error", "code": code, "message": message})


def media_router(recorder: Recorder) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["media"])

    @router.websocket("/media/{call_id}")
    async def media(websocket: WebSocket, call_id: str) -> None:
        principal = await authorize_websocket(websocket, "switch")
        if principal is None:
            return
        if principal.call_id != call_id:
            # Only CTI's grant for this call: a switch may stream (and so claim) the media
            # of the calls it carries, not of any call id it can name.
            await websocket.close(code=WS_FORBIDDEN, reason=(
                "a media stream needs the grant CTI sent with this call's agent INVITE"))
            return
        await websocket.accept()
        with structlog.contextvars.bound_contextvars(call_id=call_id):
            await MediaSession(websocket, recorder, call_id).run()

    return router
