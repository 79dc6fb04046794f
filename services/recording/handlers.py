"""Recording's handlers: the call events consumed (``consumes``) and the media stream's start
and stop. Each loads the recording (row-locked), lets the domain decide, saves it, and adds
``recording.file.stored`` to the outbox in the same transaction."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import structlog

from services.recording import repository
from services.recording.domain import Recording
from services.recording.settings import RecordingSettings
from services.recording.wav import WavFile, WavWriter
from shared.consumers import Consumes
from shared.errors import IllegalTransition
from shared.events.cti import CallConnected, CallReleased
from shared.events.recording import FileStored
from shared.messaging import Transaction
from shared.service import Service

log = structlog.get_logger(__name__)


class Recorder:
    """The recording service at run time: its kit and settings, and where files go."""

    def __init__(self, service: Service, settings: RecordingSettings) -> None:
        self.service = service
        self.settings = settings

    def file_of(self, relative: str) -> Path:
        return self.settings.storage / relative


def consumes(recorder: Recorder) -> Consumes:
    """One consumer for both call events, so a call's connect and release are handled in
    the order the CTI emitted them."""
    table = Consumes(stale=(IllegalTransition,))
    table.add(CallConnected, functools.partial(connected, recorder))
    table.add(CallReleased, functools.partial(released, recorder))
    return table


async def connected(recorder: Recorder, tx: Transaction, event: CallConnected) -> None:
    rec = await repository.lock_or_create(tx, event.call_id, tx.now)
    rec.connect(agent_id=event.agent_id, caller=event.from_number, callee=event.to_number,
                connected_at=event.connected_at, team=event.team, department=event.department)
    await save(recorder, tx, rec)


async def released(recorder: Recorder, tx: Transaction, event: CallReleased) -> None:
    rec = await repository.lock_existing(tx, event.call_id)
    if rec is None:
        if event.connected_at is None:
            return  # Never reached an agent, so there is nothing to record.
        rec = await repository.lock_or_create(tx, event.call_id, tx.now)
    if not rec.connected and event.connected_at is not None:
        # The release repeats the connect's facts: enough metadata if connected was lost.
        rec.connect(agent_id=event.agent_id, caller=event.from_number,
                    callee=event.to_number, connected_at=event.connected_at,
                    team=event.team, department=event.department)
    if rec.untouched:
        log.info("release of a call with no recording ignored", call_id=event.call_id)
        return
    rec.end_call(now=event.released_at, bridged=event.connected_at is not None)
    await save(recorder, tx, rec)


async def start_media(recorder: Recorder, call_id: str, sample_rate: int) -> tuple[str, WavWriter]:
    """Claim the call's media half and open its file. Raises IllegalTransition if the call
    already has (or had) a stream. Through the writer, which holds its work through a
    database outage: a stream starting then is kept, not dropped."""
    async def work(tx: Transaction) -> tuple[str, WavWriter]:
        rec = await repository.lock_or_create(tx, call_id, tx.now)
        now = tx.now
        relative = f"{now:%Y/%m/%d}/{rec.recording_id}.wav"
        rec.start_media(path=relative, sample_rate=sample_rate, now=now)
        # Opened inside the transaction: if the disk refuses, the claim rolls back; if the
        # transaction is undone (to be run again), the file is closed with it.
        writer = await asyncio.to_thread(WavWriter, recorder.settings.storage / relative,
                                         sample_rate=sample_rate)
        tx.on_rollback(writer.abandon)
        await save(recorder, tx, rec)
        return rec.recording_id, writer

    started: tuple[str, WavWriter] = await recorder.service.run(work)
    return started


async def finish_media(recorder: Recorder, call_id: str, wav: WavFile) -> Recording:
    """Record the finished file. Through the writer, which holds its work through a
    database outage: the audio is on disk, and its row must not be lost with the server."""
    async def work(tx: Transaction) -> Recording:
        rec = await repository.lock_or_create(tx, call_id, tx.now)
        rec.stop_media(samples=wav.frames, size_bytes=wav.size_bytes, sha256=wav.sha256,
                       now=tx.now)
        await save(recorder, tx, rec)
        return rec

    finished: Recording = await recorder.service.run(work)
    return finished


async def save(recorder: Recorder, tx: Transaction, rec: Recording) -> None:
    if rec.ready_to_discard:
        rec.discard()
        if rec.path is not None:
            audio = recorder.file_of(rec.path)
            tx.after_commit(lambda: asyncio.to_thread(audio.unlink, missing_ok=True))
        log.info("media of a call never bridged discarded", call_id=rec.call_id)
    if rec.ready_to_store:
        rec.store(now=tx.now)
        await tx.emit(FileStored(
            recording_id=rec.recording_id, call_id=rec.call_id, agent_id=rec.agent_id,
            caller=rec.caller, started_at=rec.started_at,
            duration_seconds=rec.duration_seconds or 0.0, sha256=rec.sha256 or "",
            size_bytes=rec.size_bytes or 0,
        ), subject=f"recording/{rec.recording_id}", correlationid=rec.call_id)
        log.info("recording stored", call_id=rec.call_id, recording_id=rec.recording_id,
                 duration_seconds=rec.duration_seconds)
    await repository.save(tx, rec, tx.now)
