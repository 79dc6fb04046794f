"""The recording service: forked call media in, WAV files and ``recording.file.stored`` out."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.recording import handlers
from services.recording.db import SCHEMA, metadata
from services.recording.handlers import Recorder
from services.recording.media import media_router
from services.recording.routes import api_router
from services.recording.settings import RecordingSettings
from shared.bus import Bus
from shared.clock import Clock
from shared.service import Service

NAME = "recording"


def create_app(settings: RecordingSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or RecordingSettings()
    service = Service(NAME, SCHEMA, settings, metadata=metadata,
                      migrations_dir=Path(__file__).parent / "migrations", bus=bus, clock=clock,
                      writer_sessions=False)
    recorder = Recorder(service, settings)
    service.consume("calls", handlers.consumes(recorder))

    @service.on_startup
    async def make_storage() -> None:
        settings.storage.mkdir(parents=True, exist_ok=True)

    app = service.create_app(
        title="Hotline recording",
        description="Call recording: forked media to WAV files, search, download, access audit.",
        routers=[api_router(recorder), media_router(recorder)])
    app.state.recorder = recorder
    return app
