"""Events produced by recording. Subject: ``recording/<recording_id>``."""

from __future__ import annotations

from datetime import datetime

from shared.events.catalog import EventData, event


@event("recording.file.stored")
class FileStored(EventData):
    recording_id: str
    call_id: str
    agent_id: str | None = None
    caller: str | None = None
    started_at: datetime | None = None
    duration_seconds: float
    sha256: str
    size_bytes: int
