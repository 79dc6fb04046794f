"""The recording service end to end over a real socket: media over WebSocket, call events on
an in-memory bus, PostgreSQL, files on disk, REST search and download."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import math
import struct
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI
from sqlalchemy import select

from services.recording.app import create_app
from services.recording.db import access_audit
from services.recording.settings import RecordingSettings
from shared.bus.memory import MemoryBus
from shared.envelope import Envelope
from tests.conftest import bearer, eventually, uvicorn_serving

T0 = datetime(2026, 7, 15, 8, 0, tzinfo=UTC)
RATE = 8000


def tone(seconds: float) -> bytes:
    count = int(seconds * RATE)
    return struct.pack(f"<{count}h", *(int(6000 * math.sin(2 * math.pi * 440 * i / RATE))
                                       for i in range(count)))


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run the app under uvicorn in this event loop (so it shares the test's MemoryBus) on a
    free port; yield its base URL."""
    async with uvicorn_serving(app, lifespan="on", ws="auto") as base:
        yield base


class Harness:
    def __init__(self, common: Any, auth: Any, tmp_path: Any) -> None:
        self.bus = MemoryBus()
        self.auth = auth
        self.settings = RecordingSettings(common=common, storage_dir=tmp_path / "recordings")
        self.app = create_app(self.settings, bus=self.bus)
        self.seen: list[Envelope] = []
        self.sequence = 0

    async def observe(self) -> None:
        async def handler(envelope: Envelope) -> None:
            self.seen.append(envelope)

        await self.bus.subscribe("test.observer", ["#"], handler)

    def stored(self, call_id: str) -> list[Envelope]:
        return [e for e in self.seen
                if e.type == "recording.file.stored" and e.correlationid == call_id]

    def ws_url(self, base: str, call_id: str, token: bool = True) -> str:
        url = f"ws://{base}/v1/media/{call_id}"
        if token:
            url += "?access_token=" + self.auth.mint_media_grant("sw", call_id)
        return url

    async def send_media(self, base: str, call_id: str, audio: bytes, frame: int = 320,
                         stop: bool = True) -> None:
        async with websockets.connect(self.ws_url(base, call_id)) as ws:
            await ws.send(json.dumps({"type": "start", "call_id": call_id,
                                      "encoding": "pcm_s16le", "sample_rate": RATE,
                                      "channels": 1}))
            for offset in range(0, len(audio), frame):
                await ws.send(audio[offset:offset + frame])
            if stop:
                await ws.send(json.dumps({"type": "stop"}))
                # The server closes once the stream is finalized.
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)

    async def call_event(self, event_type: str, subject_call: str, **data: Any) -> None:
        self.sequence += 1
        await self.bus.publish(Envelope(
            source="/hotline/cti_gateway", type=event_type, time=T0, subject=f"call/{subject_call}",
            sequence=self.sequence, correlationid=subject_call, data=data))

    async def connected(self, call_id: str) -> None:
        await self.call_event("cti.call.connected", call_id, call_id=call_id,
                              direction="inbound", agent_id="A001", queue="repair",
                              from_number="+8613800000001", to_number="95598", connected_at=T0,
                              team="T1", department="D1")

    async def released(self, call_id: str, connected: bool = True) -> None:
        await self.call_event("cti.call.released", call_id, call_id=call_id,
                              direction="inbound", cause="caller_hangup",
                              state="connected" if connected else "queued",
                              agent_id="A001" if connected else None,
                              from_number="+8613800000001", to_number="95598",
                              connected_at=T0 if connected else None,
                              released_at=T0 + timedelta(seconds=2),
                              team="T1" if connected else None,
                              department="D1" if connected else None)


@pytest.fixture
def harness(common, auth, tmp_path) -> Harness:
    return Harness(common, auth, tmp_path)


@pytest.mark.parametrize("order", ["media_first", "events_first", "release_only"])
async def test_call_is_recorded_in_either_order(harness: Harness, order: str) -> None:
    call_id = f"C-{order}"
    audio = tone(1.5)
    async with serve(harness.app) as base:
        await harness.observe()
        if order == "media_first":
            await harness.send_media(base, call_id, audio)
            await asyncio.sleep(0.2)
            assert not harness.stored(call_id)  # metadata still unknown
            await harness.connected(call_id)
            await harness.released(call_id)
        elif order == "events_first":
            await harness.connected(call_id)
            await harness.released(call_id)
            assert not harness.stored(call_id)
            await harness.send_media(base, call_id, audio)
        else:
            # connected lost: the release's connected_at and agent are enough.
            await harness.send_media(base, call_id, audio)
            await harness.released(call_id)
        stored = await eventually(lambda: harness.stored(call_id))
        assert len(stored) == 1
        event = stored[0]
        assert event.subject == f"recording/{event.data['recording_id']}"
        assert event.data["duration_seconds"] == 1.5
        assert event.data["agent_id"] == "A001"
        assert event.data["caller"] == "+8613800000001"

        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            reader = bearer(harness.auth, "supervisor", subject="sup-1")
            found = (await client.get("/v1/recordings", params={"call_id": call_id},
                                      headers=reader)).json()
            assert len(found) == 1
            rec = found[0]
            assert rec["state"] == "stored" and rec["duration_seconds"] == 1.5
            assert rec["started_at"].startswith("2026-07-15T08:00:00")
            assert rec["recording_id"] == event.data["recording_id"]
            by_agent = (await client.get("/v1/recordings", params={"agent_id": "A001"},
                                         headers=reader)).json()
            assert [r["call_id"] for r in by_agent] == [call_id]

            download = await client.get(rec["audio_url"], headers=reader)
            assert download.status_code == 200
            assert download.headers["content-type"] == "audio/wav"
            assert hashlib.sha256(download.content).hexdigest() == event.data["sha256"]
            assert len(download.content) == event.data["size_bytes"]
            with wave.open(io.BytesIO(download.content), "rb") as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
                assert wav.getnframes() == 12000
                assert wav.readframes(12000) == audio
            assert rec["path"] is None  # the storage layout is the operators' business

            # Data scopes (H6 of the security review): an agent reads its own recordings.
            other = bearer(harness.auth, "agent", subject="A002")
            assert (await client.get("/v1/recordings", headers=other)).json() == []
            for url, params in (("/v1/recordings", {"agent_id": "A001"}),
                                (f"/v1/recordings/{rec['recording_id']}", {}),
                                (rec["audio_url"], {})):
                refused = await client.get(url, params=params, headers=other)
                assert refused.status_code == 403, (url, refused.text)
            own = bearer(harness.auth, "agent", subject="A001")
            mine = (await client.get("/v1/recordings", headers=own)).json()
            assert [r["call_id"] for r in mine] == [call_id]
            assert (await client.get(rec["audio_url"], headers=own)).status_code == 200
            # An integrator gets no audio and masked numbers unless its grants say so.
            plain = bearer(harness.auth, "integrator")
            masked = (await client.get("/v1/recordings", params={"call_id": call_id},
                                       headers=plain)).json()[0]
            assert masked["caller"] == "+*********0001" and masked["audio_url"] is None
            assert (await client.get(rec["audio_url"], headers=plain)).status_code == 403
            granted = {"Authorization": "Bearer " + harness.auth.mint(
                "bi", ["integrator"], grants=("personal", "audio"))}
            full = (await client.get("/v1/recordings", params={"call_id": call_id},
                                     headers=granted)).json()[0]
            assert full["caller"] == "+8613800000001" and full["audio_url"] == rec["audio_url"]
            assert (await client.get(rec["audio_url"], headers=granted)).status_code == 200
            # A team's or department's supervisor finds and hears its own agents' only.
            assert (rec["team"], rec["department"]) == ("T1", "D1")
            for oversight, allowed in (({"team": "T1"}, True), ({"team": "T2"}, False),
                                       ({"department": "D1"}, True),
                                       ({"department": "D2"}, False)):
                team_lead = {"Authorization": "Bearer " + harness.auth.mint(
                    "sup-t", ["supervisor"], **oversight)}
                listed = (await client.get("/v1/recordings", params={"call_id": call_id},
                                           headers=team_lead)).json()
                assert len(listed) == (1 if allowed else 0), oversight
                for url in (f"/v1/recordings/{rec['recording_id']}", rec["audio_url"]):
                    answer = await client.get(url, headers=team_lead)
                    assert answer.status_code == (200 if allowed else 403), (oversight, url)

        async with harness.app.state.service.sessions() as session:
            audits = (await session.execute(select(access_audit))).all()
        # Every download that was served, and none that was refused.
    assert [(a.recording_id, a.subject, a.action) for a in audits] == [
            (rec["recording_id"], subject, "download")
            for subject in ("sup-1", "A001", "bi", "sup-t", "sup-t")]


@pytest.mark.parametrize("order", ["media_first", "release_first"])
async def test_media_of_a_call_never_bridged_is_discarded(harness: Harness, order: str) -> None:
    """The agent's phone answered as the caller hung up: the switch forked a few samples, CTI
    released the call unconnected. That is no conversation: discard it, keep no audio."""
    call_id = f"C-unbridged-{order}"
    async with serve(harness.app) as base:

        async def recordings() -> list[Any]:
            async with httpx.AsyncClient(base_url=f"http://{base}") as client:
                response = await client.get("/v1/recordings", params={"call_id": call_id},
                                            headers=bearer(harness.auth, "admin"))
            return list(response.json())

        await harness.observe()
        if order == "media_first":
            await harness.send_media(base, call_id, tone(0.01))
            await harness.released(call_id, connected=False)
        else:
            # The release arrives while the stream is still open.
            async with websockets.connect(harness.ws_url(base, call_id)) as ws:
                await ws.send(json.dumps({"type": "start", "call_id": call_id,
                                          "encoding": "pcm_s16le", "sample_rate": RATE,
                                          "channels": 1}))
                await ws.send(tone(0.01))
                # The release must find the stream's row: a release of a call with no row
                # and no connection records nothing (most calls never reach an agent).
                await eventually(recordings)
                await harness.released(call_id, connected=False)
                await ws.send(json.dumps({"type": "stop"}))
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)

        async def discarded() -> list[Any]:
            return [r for r in await recordings() if r["state"] == "discarded"]

        [rec] = await eventually(discarded)
        assert rec["audio_url"] is None
        assert not harness.stored(call_id)
        await eventually(lambda: not (harness.settings.storage / rec["path"]).exists())


async def test_duplicate_and_stale_events_are_tolerated(harness: Harness) -> None:
    async with serve(harness.app) as base:
        await harness.observe()
        await harness.released("C-never", connected=False)  # never connected: nothing
        await harness.connected("C1")
        await harness.send_media(base, "C1", tone(0.5))
        await eventually(lambda: harness.stored("C1"))
        # After storing: a late connect/release (new ids) is logged and ignored.
        await harness.connected("C1")
        await harness.released("C1")
        queue = harness.bus.queues["recording.calls"]
        assert not queue.dead_letters
        assert len(harness.stored("C1")) == 1
        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            headers = bearer(harness.auth, "agent")
            assert (await client.get("/v1/recordings", params={"call_id": "C-never"},
                                     headers=headers)).json() == []


async def test_bad_frames_get_errors_and_change_nothing(harness: Harness) -> None:
    call_id = "C-bad"
    audio = tone(1.0)
    async with serve(harness.app) as base:
        await harness.observe()
        await harness.connected(call_id)
        async with websockets.connect(harness.ws_url(base, call_id)) as ws:
            async def expect_error(code: str) -> None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert frame["type"] == "error" and frame["code"] == code, frame
                assert frame["message"]

            await ws.send(b"\x00\x00")
            await expect_error("bad_frame")  # audio before start
            await ws.send("{not json")
            await expect_error("bad_frame")
            await ws.send(json.dumps({"type": "start", "call_id": call_id, "encoding": "opus",
                                      "sample_rate": RATE, "channels": 1}))
            await expect_error("unsupported_encoding")
            await ws.send(json.dumps({"type": "start", "call_id": "OTHER",
                                      "encoding": "pcm_s16le", "sample_rate": RATE,
                                      "channels": 1}))
            await expect_error("bad_frame")
            await ws.send(json.dumps({"type": "start", "call_id": call_id,
                                      "encoding": "pcm_s16le", "sample_rate": RATE,
                                      "channels": 1}))
            await ws.send(audio[:8000])
            await ws.send(b"\x01\x02\x03")
            await expect_error("bad_frame")  # odd byte count
            await ws.send(json.dumps({"type": "start", "call_id": call_id,
                                      "encoding": "pcm_s16le", "sample_rate": RATE,
                                      "channels": 1}))
            await expect_error("bad_frame")  # second start
            await ws.send(json.dumps({"type": "pause"}))
            await expect_error("bad_frame")
            # Nested past the JSON parser mid-stream: an error, and the audio after it kept.
            await ws.send("[" * 5000 + "]" * 5000)
            await expect_error("bad_frame")
            await ws.send(audio[8000:])
            await ws.send(json.dumps({"type": "stop"}))
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        event = (await eventually(lambda: harness.stored(call_id)))[0]
        assert event.data["duration_seconds"] == 1.0
        path = harness.settings.storage
        files = list(path.rglob("*.wav"))
        assert len(files) == 1
        with wave.open(str(files[0]), "rb") as wav:
            assert wav.readframes(wav.getnframes()) == audio

        # The call has had its stream: another one is refused.
        async with websockets.connect(harness.ws_url(base, call_id)) as ws:
            await ws.send(json.dumps({"type": "start", "call_id": call_id,
                                      "encoding": "pcm_s16le", "sample_rate": RATE,
                                      "channels": 1}))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame["code"] == "illegal_state"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409


async def test_dropped_stream_is_finalized(harness: Harness) -> None:
    call_id = "C-drop"
    async with serve(harness.app) as base:
        await harness.observe()
        await harness.connected(call_id)
        await harness.send_media(base, call_id, tone(0.75), stop=False)
        event = (await eventually(lambda: harness.stored(call_id)))[0]
        assert event.data["duration_seconds"] == 0.75


async def test_websocket_needs_the_calls_media_grant(harness: Harness) -> None:
    """Only CTI's grant for this very call opens its media: not a plain switch token (any
    switch could then claim any call's recording), not an admin's, not a grant for another
    call (security finding M6)."""
    refused = {
        "no token": None,
        "agent": harness.auth.mint("a", ["agent"]),
        "plain switch": harness.auth.mint("sw", ["switch"]),
        "admin": harness.auth.mint("root", ["admin"]),
        "another call's grant": harness.auth.mint_media_grant("sw", "C2"),
    }
    async with serve(harness.app) as base:
        for name, token in refused.items():
            query = "" if token is None else f"?access_token={token}"
            with pytest.raises(websockets.InvalidStatus) as refusal:
                async with websockets.connect(f"ws://{base}/v1/media/C1{query}"):
                    pass
            assert refusal.value.response.status_code in (401, 403), name
        async with websockets.connect(
                f"ws://{base}/v1/media/C1",
                additional_headers={"Authorization":
                                    "Bearer " + harness.auth.mint_media_grant("sw", "C1")}
                ) as ws:
            await ws.send(b"\x00\x00")
            assert json.loads(await ws.recv())["code"] == "bad_frame"


async def test_rest_errors_and_scopes(harness: Harness) -> None:
    async with serve(harness.app) as base:
        async with httpx.AsyncClient(base_url=f"http://{base}") as client:
            reader = {"Authorization": "Bearer " + harness.auth.mint(
                "bi", ["integrator"], grants=("audio",))}
            missing = await client.get("/v1/recordings/rec-nope", headers=reader)
            assert missing.status_code == 404
            assert missing.json()["detail"]["id"] == "rec-nope"
            assert (await client.get("/v1/recordings/rec-nope/audio",
                                     headers=reader)).status_code == 404
            assert (await client.get("/v1/recordings")).status_code == 401
            assert (await client.get("/v1/recordings",
                                     headers=bearer(harness.auth, "switch"))).status_code == 403
            assert (await client.get("/v1/recordings", params={"limit": 0},
                                     headers=reader)).status_code == 422

            await harness.connected("C-open")  # recording, no audio yet
            rec = (await client.get("/v1/recordings", params={"call_id": "C-open"},
                                    headers=reader)).json()[0]
            assert rec["state"] == "recording" and rec["audio_url"] is None
            audio = await client.get(f"/v1/recordings/{rec['recording_id']}/audio",
                                     headers=reader)
            assert audio.status_code == 404
            assert "audio" in audio.json()["detail"]["message"]
            one = await client.get(f"/v1/recordings/{rec['recording_id']}", headers=reader)
            assert one.status_code == 200 and one.json()["agent_id"] == "A001"


async def test_a_stream_past_the_longest_recording_is_stopped_and_kept_up_to_it(
        common, auth, tmp_path) -> None:
    """Security review M6: a stream had no cap but the WAV format's 4 GiB, so one switch
    token could fill the disk. Past ``max_stream_seconds`` the rest is refused with an
    error frame and the stream ends, stored as far as the limit."""
    harness = Harness(common, auth, tmp_path)
    harness.settings = harness.settings.model_copy(update={"max_stream_seconds": 1.0})
    harness.app = create_app(harness.settings, bus=harness.bus)
    call_id = "C-long"
    async with serve(harness.app) as base:
        await harness.observe()
        await harness.connected(call_id)
        async with websockets.connect(harness.ws_url(base, call_id)) as ws:
            await ws.send(json.dumps({"type": "start", "call_id": call_id,
                                      "encoding": "pcm_s16le", "sample_rate": RATE,
                                      "channels": 1}))
            audio = tone(1.5)
            for offset in range(0, len(audio), 3200):
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send(audio[offset:offset + 3200])
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame["code"] == "too_long", frame
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        await harness.released(call_id)
        stored = await eventually(lambda: harness.stored(call_id))
        assert stored[0].data["duration_seconds"] == 1.0
