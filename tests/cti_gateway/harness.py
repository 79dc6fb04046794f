"""Test harness: the gateway served by uvicorn in this event loop (so the WebSocket is real),
a scripted softswitch on the other end, and an observer on the in-memory bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from services.cti_gateway.app import create_app
from services.cti_gateway.settings import CtiSettings
from shared.auth import Auth
from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.clock import FakeClock
from shared.envelope import Envelope
from shared.settings import CommonSettings
from tests.conftest import bearer, eventually

TIMEOUT = 5.0


@dataclass
class Observer:
    """Every event that crosses the bus, in order."""

    events: list[Envelope] = field(default_factory=list)

    async def __call__(self, envelope: Envelope) -> None:
        self.events.append(envelope)

    def of(self, event_type: str, call_id: str | None = None) -> list[Envelope]:
        return [e for e in self.events
                if e.type == event_type and (call_id is None or e.correlationid == call_id)]

    async def wait(self, event_type: str, call_id: str | None = None, count: int = 1
                   ) -> Envelope:
        found = await eventually(lambda: len(self.of(event_type, call_id)) >= count and
                                 self.of(event_type, call_id), timeout=TIMEOUT)
        return found[count - 1]  # type: ignore[no-any-return]

    def cti_types(self, call_id: str) -> list[str]:
        return [e.type for e in self.events
                if e.source == "/hotline/cti_gateway" and e.correlationid == call_id]


class Switch:
    """The softswitch side of ``/v1/switch``, driven step by step by a test."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.cseq = 100

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def request(self, method: str, call_id: str, leg: str, **fields: Any) -> int:
        self.cseq += 1
        await self.send({"type": "request", "method": method, "call_id": call_id,
                         "cseq": self.cseq, "leg": leg, **fields})
        return self.cseq

    async def respond(self, to: dict[str, Any], status: int, reason: str = "") -> None:
        await self.send({"type": "response", "status": status, "reason": reason,
                         "call_id": to["call_id"], "cseq": to["cseq"], "method": to["method"],
                         "leg": to["leg"]})

    async def recv(self, within: float = TIMEOUT) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), within))
        return frame

    async def expect_request(self, method: str, leg: str) -> dict[str, Any]:
        frame = await self.recv()
        assert (frame["type"], frame.get("method"), frame.get("leg")) == ("request", method, leg), frame
        return frame

    async def expect_response(self, cseq: int, status: int = 200) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == "response" and frame["cseq"] == cseq, frame
        assert frame["status"] == status, frame
        return frame

    async def expect_error(self, code: str) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == "error" and frame["code"] == code, frame
        return frame

    async def silent(self, seconds: float = 0.3) -> None:
        with contextlib.suppress(TimeoutError):
            frame = await self.recv(within=seconds)
            raise AssertionError(f"unexpected frame {frame}")

    async def invite(self, call_id: str, from_number: str = "+8613800000001",
                     to_number: str = "95598") -> None:
        cseq = await self.request("INVITE", call_id, "caller", **{"from": from_number,
                                                                   "to": to_number})
        await self.expect_response(cseq, 200)
        await self.request("ACK", call_id, "caller")


@dataclass
class Gateway:
    base: str
    http: httpx.AsyncClient
    bus: Bus
    clock: FakeClock
    observer: Observer
    auth: Auth
    app: Any
    _sequences: dict[str, int] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def switch(self, *scopes: str, subject: str = "softswitch") -> AsyncIterator[Switch]:
        headers = bearer(self.auth, *(scopes or ("switch",)), subject=subject)
        async with connect(f"ws://{self.base}/v1/switch", additional_headers=headers) as ws:
            yield Switch(ws)

    async def publish(self, event_type: str, data: dict[str, Any], *,
                      call_id: str | None = None, source: str | None = None) -> Envelope:
        """Publish as another service would; returns once CTI's consumer has handled it."""
        subject = f"call/{call_id}" if call_id else f"test/{event_type}"
        self._sequences[subject] = self._sequences.get(subject, 0) + 1
        envelope = Envelope(source=source or f"/hotline/{event_type.split('.')[0]}",
                            type=event_type, time=self.clock.now(), subject=subject,
                            sequence=self._sequences[subject], correlationid=call_id, data=data)
        await self.bus.publish(envelope)
        return envelope

    async def call(self, call_id: str, scope: str = "supervisor") -> dict[str, Any]:
        response = await self.http.get(f"/v1/calls/{call_id}", headers=bearer(self.auth, scope))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def state(self, call_id: str) -> str:
        return str((await self.call(call_id))["state"])

    async def wait_state(self, call_id: str, state: str) -> None:
        async def check() -> bool:
            return await self.state(call_id) == state

        await eventually(check, timeout=TIMEOUT)

    def service(self) -> Any:
        return self.app.state.service


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serve(common: CommonSettings, auth: Auth, *, bus: Bus | None = None,
                configure: Callable[[CtiSettings], None] | None = None
                ) -> AsyncIterator[Gateway]:
    """``bus``: a started bus to run on (default: a fresh in-memory one, closed after)."""
    own_bus = bus is None
    bus = bus or MemoryBus(retry_delay=0.01)
    clock = FakeClock()
    observer = Observer()
    await bus.subscribe("test.observer", ["#"], observer)
    settings = CtiSettings(common=common, timer_poll_seconds=0.05)
    if configure:
        configure(settings)
    app = create_app(settings, bus=bus, clock=clock)
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on",
                                           ws_ping_interval=None, timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), timeout=60)
        if task.done():
            task.result()
        base = f"127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            yield Gateway(base, http, bus, clock, observer, auth, app)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        sock.close()
        if own_bus:
            await bus.close()
