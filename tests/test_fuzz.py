"""Schemathesis against every service's own OpenAPI document, on its real database: no
generated request, valid or not, gets a server error or an answer its schema does not
describe. Bounded here (``HOTLINE_FUZZ_EXAMPLES`` per operation, 2 by default, so ``make
test`` stays short); ``make fuzz`` runs the long one."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from hotline.suite import create_app_of, settings_class
from shared.auth import Auth
from shared.bus.memory import MemoryBus
from shared.settings import DEFAULT_PORTS
from tests.conftest import TEST_SECRET

EXAMPLES = int(os.environ.get("HOTLINE_FUZZ_EXAMPLES", "2"))
# What a request may not do whatever it sends: a replay starts real calls, a reset calls
# the other services, the stream never ends (its limits are checked in test_bad_input.py).
# Every service's key is the test secret (the ``common`` fixture).
ADMIN = {"Authorization": "Bearer " + Auth(TEST_SECRET).mint("fuzz", ["admin"])}
SKIPPED = r"^/v1/(replays|replays/reset|stats/stream)$"


@schemathesis.serializer("application/x-ndjson")
def trace_lines(ctx: Any, value: Any) -> bytes:
    """A generated trace upload: whatever was generated, as text (the replay itself is not
    fuzzed, see SKIPPED; this only lets schemathesis build the request)."""
    return str(value).encode()


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """The app behind uvicorn on a free loopback port, in a thread with its own event loop
    (the app's connections live on it), for as long as the block runs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(params=list(DEFAULT_PORTS))
def api(request: pytest.FixtureRequest, common: Any) -> Iterator[Any]:
    service = request.param
    app = create_app_of(service)(settings_class(service)(common=common), bus=MemoryBus())
    with served(app) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_undocumented_answer(case: Any) -> None:
    if re.match(SKIPPED, case.operation.path):
        return
    case.call_and_validate(headers=ADMIN,
                           checks=[not_a_server_error, response_schema_conformance])
