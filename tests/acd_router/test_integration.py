"""acd_router over real RabbitMQ: the consumer queue, outbox relay and confirms end to end."""

from __future__ import annotations

from datetime import UTC, datetime

import aio_pika
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


async def test_poison_messages_are_dead_lettered_and_the_good_ones_around_them_processed(
        common: CommonSettings, amqp_url: str, auth: Auth) -> None:
    """Malformed and unknown messages on a real broker: each is dead-lettered (into the
    consumer queue's ``.dlq``) after its deliveries, and every good event published between
    them is processed, in order."""
    settings = AcdSettings(common=common.model_copy(update={"amqp_url": amqp_url}))
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()

    def good(call_id: str) -> bytes:
        return Envelope(
            source="/hotline/ivr_engine", type="ivr.session.completed", time=datetime.now(UTC),
            subject=f"call/{call_id}", sequence=1, correlationid=call_id,
            data={"call_id": call_id, "session_id": f"S-{call_id}", "outcome": "routed",
                  "route": {"queue": "repair", "skills": ["repair"], "priority": 0}},
        ).model_dump_json().encode()

    poison = [
        b"not json at all",
        b'{"specversion": "1.0", "type": "ivr.session.completed"}',  # not an envelope
        Envelope(source="/hotline/ivr_engine", type="ivr.session.completed",
                 time=datetime.now(UTC), subject="call/CX", sequence=1, correlationid="CX",
                 data={"call_id": "CX", "outcome": 42}).model_dump_json().encode(),
        "{\"half\": \"\udc80\"}".encode("utf-8", "surrogateescape"),  # invalid UTF-8
    ]
    try:
        async with running(create_app(settings)) as client:
            exchange = await channel.get_exchange("hotline.events")
            for n, body in enumerate([good("G1"), *poison[:2], good("G2"), *poison[2:],
                                      good("G3")]):
                await exchange.publish(aio_pika.Message(body, message_id=f"m{n}",
                                                        delivery_mode=2),
                                       routing_key="ivr.session.completed.v1")
            headers = bearer(auth, "supervisor")

            async def all_queued() -> bool:
                found = [await client.get(f"/v1/calls/{c}", headers=headers)
                         for c in ("G1", "G2", "G3")]
                return all(r.status_code == 200 for r in found)

            await eventually(all_queued, timeout=30)

            counts: list[int | None] = []

            async def all_dead_lettered() -> bool:
                queue = await channel.declare_queue("acd_router.events.dlq", passive=True)
                counts.append(queue.declaration_result.message_count)
                return counts[-1] == len(poison)

            await eventually(all_dead_lettered, timeout=60)
            assert counts[-1] == len(poison), counts[-5:]
            assert (await client.get("/v1/calls/CX", headers=headers)).status_code == 404
    finally:
        await connection.close()
