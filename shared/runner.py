"""``python -m services.<name>``: one service in its own process (distributed mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from shared.limits import MAX_BODY_BYTES
from shared.logging import configure_logging
from shared.settings import CommonSettings


def server_options(common: CommonSettings) -> dict[str, Any]:
    """uvicorn's options for every service, standalone or in the all-in-one: at most
    ``http_max_concurrency`` requests and sockets at once (503 beyond), and no WebSocket
    message larger than a REST body (a switch frame is at most 64 K characters, a media
    frame 64 KB); the socket closes with 1009 before a bigger one is read into memory."""
    return {"log_config": None, "ws_ping_interval": 20, "timeout_graceful_shutdown": 5,
            "limit_concurrency": common.http_max_concurrency, "ws_max_size": MAX_BODY_BYTES}


def run_standalone(create_app: Callable[..., FastAPI], settings: Any) -> None:
    common = settings.common
    configure_logging(common.log_level, common.log_json)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, **server_options(common))
