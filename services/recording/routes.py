"""REST: search, metadata and audio download (every download is audited)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from services.recording import db
from services.recording.handlers import Recorder
from shared.auth import Principal, require
from shared.data_scope import DataScope, data_scope
from shared.errors import NotFound

READERS = require("agent", "supervisor", "service", "integrator")
Id = Annotated[str, Path(min_length=1, max_length=128)]
Key = Annotated[str, Query(min_length=1, max_length=128)]


class RecordingOut(BaseModel):
    recording_id: str
    call_id: str
    state: str
    agent_id: str | None
    team: str | None
    department: str | None
    caller: str | None
    callee: str | None
    started_at: datetime | None
    call_ended_at: datetime | None
    media_started_at: datetime | None
    media_ended_at: datetime | None
    duration_seconds: float | None
    sample_rate: int | None
    size_bytes: int | None
    sha256: str | None
    path: str | None
    stored_at: datetime | None
    audio_url: str | None

    @classmethod
    def of(cls, row: object, scope: DataScope, principal: Principal) -> RecordingOut:
        fields = scope.shown({name: getattr(row, name) for name in cls.model_fields
                              if name != "audio_url"})
        if not principal.scopes & {"admin", "service"}:
            fields["path"] = None  # where the file lies is the operators' business
        audible = fields["state"] == "stored" and scope.audio
        return cls(**fields, audio_url=f"/v1/recordings/{fields['recording_id']}/audio"
                   if audible else None)


def api_router(recorder: Recorder) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["recordings"])
    service = recorder.service
    max_limit = recorder.settings.max_search_limit

    @router.get("/recordings")
    async def search(call_id: Key | None = None, agent_id: Key | None = None,
                     limit: int = Query(default=50, ge=1, le=max_limit),
                     principal: Principal = Depends(READERS)) -> list[RecordingOut]:
        """Newest first. An agent token finds its own recordings only."""
        scope = data_scope(principal)
        async with service.sessions() as session:
            rows = await db.search(session, call_id=call_id,
                                   agent_id=scope.agent_filter(agent_id), limit=limit,
                                   team=scope.team, department=scope.department)
        return [RecordingOut.of(row, scope, principal) for row in rows]

    @router.get("/recordings/{recording_id}")
    async def get(recording_id: Id, principal: Principal = Depends(READERS)) -> RecordingOut:
        scope = data_scope(principal)
        async with service.sessions() as session:
            row = await db.get(session, recording_id)
        if row is None:
            raise NotFound("recording", recording_id)
        scope.check_agent(row.agent_id, "recordings", row.team, row.department)
        return RecordingOut.of(row, scope, principal)

    @router.get("/recordings/{recording_id}/audio", response_class=FileResponse,
                responses={200: {"content": {"audio/wav": {}}}})
    async def audio(recording_id: Id, principal: Principal = Depends(READERS)) -> FileResponse:
        """The WAV file; every download is audited. An agent token gets its own calls'; an
        integrator needs the ``audio`` grant."""
        scope = data_scope(principal)
        scope.check_audio()
        async with service.transaction() as tx:
            row = await db.get(tx.session, recording_id)
            if row is None:
                raise NotFound("recording", recording_id)
            scope.check_agent(row.agent_id, "recordings", row.team, row.department)
            if row.state != "stored" or row.path is None:
                raise NotFound("recording audio", recording_id)
            path = recorder.file_of(row.path)
            if not await asyncio.to_thread(path.is_file):
                raise NotFound("recording audio", recording_id)
            # Audited in the same transaction as the lookup: no download goes unrecorded.
            await tx.session.execute(db.access_audit.insert().values(
                recording_id=recording_id, action="download", subject=principal.subject,
                scopes=" ".join(sorted(principal.scopes)), at=tx.now))
        return FileResponse(path, media_type="audio/wav", filename=f"{recording_id}.wav")

    return router
