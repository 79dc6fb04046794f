"""ivr_engine's composition root: the menus validated, the engine, its consumer and timer,
the routes."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import FastAPI

from services.ivr_engine import handlers
from services.ivr_engine.db import SCHEMA, metadata
from services.ivr_engine.domain import (
    Defaults,
    MenuCatalog,
    MenuError,
    parse_menu_yaml,
)
from services.ivr_engine.handlers import IvrEngine
from services.ivr_engine.routes import build_router
from services.ivr_engine.settings import IvrSettings
from shared.bus import Bus
from shared.clock import Clock
from shared.service import Service

NAME = "ivr_engine"


def load_menus(settings: IvrSettings) -> MenuCatalog:
    """Read and validate every configured menu; a bad one raises :class:`MenuError`."""
    defaults = Defaults(timeout_seconds=settings.digit_timeout_seconds,
                        max_attempts=settings.max_attempts)
    menus = []
    for path in [settings.menu_file, *settings.extra_menu_files]:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise MenuError(str(path), f"cannot be read: {error}") from None
        menus.append(parse_menu_yaml(text, str(path), defaults=defaults))
    return MenuCatalog(menus)


def create_app(settings: IvrSettings | None = None, *, bus: Bus | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or IvrSettings()
    # Validated before anything starts: a bad tree must refuse to serve, naming its node.
    catalog = load_menus(settings)
    service = Service(NAME, SCHEMA, settings, metadata=metadata,
                      migrations_dir=Path(__file__).parent / "migrations", bus=bus, clock=clock,
                      writer_sessions=False)
    engine = IvrEngine(service, settings, catalog)
    service.consume("calls", handlers.consumes(engine), staged=True,
                    prepare=functools.partial(handlers.prepare, engine))
    service.background(engine.timer.run)
    app = service.create_app(
        title="Hotline IVR engine",
        description="Versioned menu trees, IVR sessions and satisfaction surveys.",
        routers=[build_router(catalog)])
    app.state.ivr = engine
    return app
