"""Structured logs (structlog): JSON lines carrying the service and, when known, the call id.

Every line, ours and the libraries' (uvicorn, httpx, SQLAlchemy tracebacks with their
parameters), passes one redaction step before it is written: what looks like a phone number
keeps only its last four digits. Logs are read by more people than the customer records."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_configured = False

# 7 to 15 digits (E.164 without its +, a national mobile number, an account) standing alone,
# after a "+", or URL-encoded as "%2B"; not inside an identifier, a decimal or a timestamp.
PHONE_LIKE = re.compile(r"(\+|%2[bB]|(?<![\w.:/-]))(\d{3,11})(\d{4})(?![\w.])")


def redact(text: str) -> str:
    """``text`` with every phone-number-like run masked but for its last four digits."""
    return PHONE_LIKE.sub(lambda m: f"{m.group(1)}{'*' * len(m.group(2))}{m.group(3)}", text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(inner) for inner in value]
    return value


def _redact_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Before rendering: every string field (the formatted exception included) redacted;
    numbers stay numbers, so a JSON line stays valid JSON."""
    return {key: _redacted(value) for key, value in event.items()}


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logging.basicConfig(handlers=[handler], level=level.upper())
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, _redact_fields, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # uvicorn's access log would duplicate our request metrics at every call.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request line, query string (a number looked up) included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
