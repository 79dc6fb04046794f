"""``python -m services.<name>``: one service in its own process (distributed mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging


def run_standalone(create_app: Callable[..., FastAPI], settings: Any) -> None:
    common = settings.common
    configure_logging(common.log_level, common.log_json)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None,
                ws_ping_interval=20, timeout_graceful_shutdown=5)
