"""A running acd_router on the in-memory bus and a fake clock, with an event observer."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from services.acd_router.app import create_app
from services.acd_router.settings import AcdSettings
from shared.auth import Auth
from shared.bus.memory import MemoryBus
from shared.clock import FakeClock
from shared.envelope import Envelope
from shared.settings import CommonSettings
from tests.conftest import bearer, eventually, running

CONSUMER_QUEUE = "acd_router.events"
SOURCES = {"ivr": "/hotline/ivr_engine", "cti": "/hotline/cti_gateway"}


class Harness:
    def __init__(self, client: httpx.AsyncClient, bus: MemoryBus, clock: FakeClock,
                 auth: Auth) -> None:
        self.client = client
        self.bus = bus
        self.clock = clock
        self.auth = auth
        self.events: list[Envelope] = []
        self._sequences: dict[tuple[str, str], int] = defaultdict(int)

    @property
    def agent_headers(self) -> dict[str, str]:
        """A token that reads (an agent's desktop, not one of the floor's agents)."""
        return bearer(self.auth, "agent", subject="agent-desktop")

    def headers_of(self, agent_id: str) -> dict[str, str]:
        """The agent's own token: it acts for that agent only."""
        return bearer(self.auth, "agent", subject=agent_id)

    async def observe(self, envelope: Envelope) -> None:
        if envelope.type.startswith("acd."):
            self.events.append(envelope)

    # -- driving ---------------------------------------------------------------------------

    async def publish(self, event_type: str, data: dict[str, Any]) -> Envelope:
        """Publish as the producing service would; returns once acd_router has handled it."""
        call_id = data["call_id"]
        source = SOURCES[event_type.split(".")[0]]
        self._sequences[(source, call_id)] += 1
        envelope = Envelope(source=source, type=event_type, time=self.clock.now(),
                            subject=f"call/{call_id}",
                            sequence=self._sequences[(source, call_id)], correlationid=call_id,
                            data=data)
        await self.bus.publish(envelope)
        return envelope

    async def login(self, agent_id: str, skills: dict[str, int] | None = None,
                    *, ready: bool = True) -> dict[str, Any]:
        response = await self.client.post(f"/v1/agents/{agent_id}/login",
                                          json={"skills": skills or {"repair": 8}, "team": "T1"},
                                          headers=self.headers_of(agent_id))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if ready:
            body = await self.set_state(agent_id, "ready")
        return body

    async def set_state(self, agent_id: str, state: str, reason: str | None = None,
                        *, expect: int = 200) -> dict[str, Any]:
        response = await self.client.post(f"/v1/agents/{agent_id}/state",
                                          json={"state": state, "reason": reason},
                                          headers=self.headers_of(agent_id))
        assert response.status_code == expect, response.text
        body: dict[str, Any] = response.json()
        return body

    async def route_call(self, call_id: str, *, queue: str = "repair", priority: int = 0,
                         tier: str = "regular") -> Envelope:
        return await self.publish("ivr.session.completed", {
            "call_id": call_id, "session_id": f"S-{call_id}", "outcome": "routed",
            "path": ["1"], "route": {
                "queue": queue, "skills": [queue], "priority": priority,
                "customer": {"account": f"31000{call_id}", "tier": tier, "area": "A-017"},
                "from_number": "+8613800000001"}})

    async def connected(self, reserved: Envelope) -> Envelope:
        data = reserved.data
        return await self.publish("cti.call.connected", {
            "call_id": data["call_id"], "direction": "inbound", "agent_id": data["agent_id"],
            "queue": data["queue"], "reservation_id": data["reservation_id"],
            "from_number": "+8613800000001", "to_number": "95598",
            "connected_at": self.clock.now().isoformat()})

    async def released(self, call_id: str, *, state: str, agent_id: str | None = None,
                       cause: str = "caller_hangup") -> Envelope:
        return await self.publish("cti.call.released", {
            "call_id": call_id, "direction": "inbound", "cause": cause, "state": state,
            "agent_id": agent_id, "from_number": "+8613800000001", "to_number": "95598",
            "released_at": self.clock.now().isoformat()})

    async def ring_failed(self, reserved: Envelope, reason: str = "no_answer") -> Envelope:
        data = reserved.data
        return await self.publish("cti.agent.ring_failed", {
            "call_id": data["call_id"], "agent_id": data["agent_id"],
            "reservation_id": data["reservation_id"], "reason": reason})

    # -- observing -------------------------------------------------------------------------

    def emitted(self, event_type: str, **match: Any) -> list[Envelope]:
        return [e for e in self.events if e.type == event_type
                and all(e.data.get(k) == v for k, v in match.items())]

    async def wait_for(self, event_type: str, count: int = 1, **match: Any) -> Envelope:
        found = await eventually(lambda: len(self.emitted(event_type, **match)) >= count
                                 and self.emitted(event_type, **match), timeout=10)
        result: Envelope = found[count - 1]
        return result

    async def get(self, path: str, *, expect: int = 200) -> Any:
        response = await self.client.get(path, headers=self.agent_headers)
        assert response.status_code == expect, response.text
        return response.json()

    async def agent(self, agent_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.get(f"/v1/agents/{agent_id}")
        return body

    async def agent_becomes(self, agent_id: str, state: str,
                            check: Callable[[dict[str, Any]], bool] = lambda _: True
                            ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            body = await self.agent(agent_id)
            return body if body["state"] == state and check(body) else None

        result: dict[str, Any] = await eventually(reached, timeout=10)
        return result

    def dead_letters(self) -> list[Envelope]:
        queue = self.bus.queues.get(CONSUMER_QUEUE)
        return list(queue.dead_letters) if queue else []


@contextlib.asynccontextmanager
async def acd_running(common: CommonSettings, auth: Auth, **settings: Any
                      ) -> AsyncIterator[Harness]:
    bus, clock = MemoryBus(), FakeClock()
    app = create_app(AcdSettings(common=common, poll_interval_wall_seconds=0.05, **settings),
                     bus=bus, clock=clock)
    harness: Harness | None = None

    async def observe(envelope: Envelope) -> None:
        if harness is not None:
            await harness.observe(envelope)

    await bus.subscribe("test.observer", ["#"], observe)
    try:
        async with running(app) as client:
            harness = Harness(client, bus, clock, auth)
            yield harness
            assert harness.dead_letters() == []
    finally:
        await bus.close()
