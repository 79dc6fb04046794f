"""Logs keep the last four digits of anything that looks like a phone number, and nothing
else changes."""

from __future__ import annotations

import json
import logging

import pytest

from shared.logging import RedactingFormatter, _redact_fields, redact


@pytest.mark.parametrize(("line", "expected"), [
    ("call offered from_number=+8613800000001", "call offered from_number=+*********0001"),
    ("GET /v1/customers/lookup?number=%2B8613810055433", "GET /v1/customers/lookup?number=%2B*********5433"),
    ("callback to 13810055433 failed", "callback to *******5433 failed"),
    ("[parameters: ('+8613800000000', 'C1')]", "[parameters: ('+*********0000', 'C1')]"),
    ("at 2026-12-03T18:45:02.522116Z", "at 2026-12-03T18:45:02.522116Z"),
    ("epoch 1733250000.123", "epoch 1733250000.123"),
    ("call C000123 on sw-c0bb69d70d-758931234567", "call C000123 on sw-c0bb69d70d-758931234567"),
    ("dialled 95598", "dialled 95598"),
])
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_structured_fields_are_redacted_and_numbers_stay_numbers() -> None:
    event = {"event": "call offered", "from_number": "+8613800000001", "elapsed_ms": 12345678,
             "context": {"numbers": ["+8613800000002"]},
             "exception": "Traceback ...\nDataError: value '+8613800000003' too long"}
    out = json.loads(json.dumps(_redact_fields(None, "info", event)))
    assert out["from_number"] == "+*********0001" and out["elapsed_ms"] == 12345678
    assert out["context"] == {"numbers": ["+*********0002"]}
    assert "8613800000003" not in out["exception"]


def test_library_log_lines_are_redacted() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: GET %s",
                               ("http://x/v1/customers/lookup?number=%2B8613810055433",), None)
    assert "8613810055433" not in RedactingFormatter("%(message)s").format(record)
