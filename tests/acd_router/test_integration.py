"""acd_router over real RabbitMQ: the consumer queue, outbox relay and confirms end to end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.acd_router.app import create_app
from services.acd_router.settings import AcdSettings
from shared.auth import Auth
from shared.bus.rabbit import RabbitBus
from shared.envelope import Envelope
from shared.settings import CommonSettings
from tests.conftest import bearer, eventually, running

pytestmark = pytest.mark.integration


async def test_routed_call_reserves_an_agent_over_rabbitmq(common: CommonSettings,
                                                           amqp_url: str, auth: Auth) -> None:
    settings = AcdSettings(common=common.model_copy(update={"amqp_url": amqp_url}))
    peer = RabbitBus(amqp_url, connection_name="test-peer")
    await peer.start()
    seen: list[Envelope] = []

    async def observe(envelope: Envelope) -> None:
        seen.append(envelope)

    try:
        await peer.subscribe("test.observer", ["acd.#"], observe)
        async with running(create_app(settings)) as client:
            headers = bearer(auth, "agent", subject="A001")
            for path, body in (("/v1/agents/A001/login", {"skills": {"repair": 8}}),
                               ("/v1/agents/A001/state", {"state": "ready"})):
                assert (await client.post(path, json=body, headers=headers)).status_code == 200
            await peer.publish(Envelope(
                source="/hotline/ivr_engine", type="ivr.session.completed",
                time=datetime.now(UTC), subject="call/C1", sequence=1, correlationid="C1",
                data={"call_id": "C1", "session_id": "S1", "outcome": "routed",
                      "route": {"queue": "repair", "skills": ["repair"], "priority": 0}}))
            reserved = await eventually(
                lambda: [e for e in seen if e.type == "acd.agent.reserved"], timeout=20)
            assert reserved[0].data["agent_id"] == "A001"
            assert reserved[0].correlationid == "C1"
            agent = await client.get("/v1/agents/A001", headers=headers)
            assert agent.json()["state"] == "reserved"
    finally:
        await peer.close()
