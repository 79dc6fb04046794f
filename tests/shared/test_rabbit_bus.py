"""The RabbitMQ bus against a real broker, in a private vhost per test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.bus.rabbit import RabbitBus
from shared.envelope import Envelope
from tests.conftest import close_broker_connections, eventually, rabbitmqctl

pytestmark = pytest.mark.integration


def offered(call_id: str, sequence: int = 1) -> Envelope:
    return Envelope(source="/test", type="cti.call.offered", time=datetime.now(UTC),
                    subject=f"call/{call_id}", sequence=sequence, correlationid=call_id,
                    data={"call_id": call_id, "from_number": "+8613800000001",
                          "to_number": "95598", "offered_at": datetime.now(UTC).isoformat()})


def vhost_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


async def test_delivers_in_order_and_declares_quorum_queue_with_limit(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, connection_name="test-order", delivery_limit=4)
    await bus.start()
    try:
        got: list[str] = []

        async def handler(envelope: Envelope) -> None:
            got.append(envelope.data["call_id"])

        await bus.subscribe("test.order", ["cti.call.*.v1"], handler)
        for index in range(50):
            await bus.publish(offered(f"C{index}"))
        await eventually(lambda: len(got) == 50)
        assert got == [f"C{index}" for index in range(50)]
        listing = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), "name", "type", "arguments")
        line = next(row for row in listing.splitlines() if row.startswith("test.order\t"))
        assert "quorum" in line and "x-delivery-limit" in line and "hotline.dlx" in line
    finally:
        await bus.close()


async def test_failing_handler_is_redelivered_then_dead_lettered(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, connection_name="test-dlq", delivery_limit=2)
    await bus.start()
    try:
        attempts: list[str] = []

        async def always_fails(envelope: Envelope) -> None:
            attempts.append(envelope.id)
            raise RuntimeError("handler broke")

        await bus.subscribe("test.dlq", ["cti.call.offered.v1"], always_fails)
        await bus.publish(offered("C1"))

        def dead_lettered() -> bool:
            listing = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), "name", "messages")
            counts = dict(row.split("\t") for row in listing.splitlines() if "\t" in row)
            return counts.get("test.dlq.dlq") == "1"

        await eventually(dead_lettered, timeout=20, interval=0.5)
        # The first delivery plus the limit's redeliveries, then no more.
        assert len(attempts) == 3
    finally:
        await bus.close()


async def test_unrouted_events_are_dropped_by_default(amqp_url: str) -> None:
    dropping = RabbitBus(amqp_url, connection_name="test-dropped")
    await dropping.start()
    try:
        await dropping.publish(offered("nobody-listens"))
        assert await dropping.publish_many([offered("nor-here")]) == [True]
        listing = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), "name")
        assert "hotline.unrouted" not in listing
    finally:
        await dropping.close()


async def test_unrouted_events_are_kept_when_asked(amqp_url: str) -> None:
    # On a vhost where the exchange is new: its arguments are fixed when first declared.
    keeping = RabbitBus(amqp_url, connection_name="test-kept", keep_unrouted=True)
    await keeping.start()
    try:
        await keeping.publish(offered("C1"))

        def kept() -> bool:
            listing = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), "name", "messages")
            return "hotline.unrouted\t1" in listing

        await eventually(kept, timeout=10, interval=0.3)
    finally:
        await keeping.close()


async def test_batched_consumer_gets_queue_order_and_settles_with_few_frames(amqp_url: str
                                                                            ) -> None:
    """publish_many pipelines a batch; consume hands deliveries over in order; acks are
    coalesced, a nack is redelivered (marked as such), and nothing is left unacked."""
    from shared.bus import Delivery

    bus = RabbitBus(amqp_url, connection_name="test-batch", delivery_limit=3)
    await bus.start()
    try:
        got: list[Delivery] = []
        await bus.consume("test.batch", ["cti.call.offered.v1"], got.append)
        confirmed = await bus.publish_many([offered(f"C{index}") for index in range(200)])
        assert confirmed == [True] * 200
        await eventually(lambda: len(got) == 200)
        assert [d.envelope.data["call_id"] for d in got] == [f"C{i}" for i in range(200)]
        assert not any(d.redelivered for d in got)
        for delivery in got[:150]:
            delivery.ack()
        got[150].nack()
        for delivery in got[151:]:
            delivery.ack()
        await eventually(lambda: len(got) == 201, timeout=10)
        again = got[200]
        assert again.envelope.data["call_id"] == "C150" and again.redelivered
        again.ack()

        def settled() -> bool:
            listing = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), "name",
                                  "messages_unacknowledged", "messages_ready")
            return "test.batch\t0\t0" in listing

        await eventually(settled, timeout=10, interval=0.3)
    finally:
        await bus.close()


async def test_batched_consumer_dead_letters_past_the_delivery_limit(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, connection_name="test-batch-dlq", delivery_limit=2)
    await bus.start()
    try:
        attempts: list[str] = []

        def refuse(delivery: object) -> None:
            attempts.append(delivery.envelope.id)  # type: ignore[attr-defined]
            delivery.nack()  # type: ignore[attr-defined]

        await bus.consume("test.bdlq", ["cti.call.offered.v1"], refuse)
        await bus.publish_many([offered("C1")])

        def dead_lettered() -> bool:
            listing = rabbitmqctl("list_queues", "-p", vhost_of(amqp_url), "name", "messages")
            counts = dict(row.split("\t") for row in listing.splitlines() if "\t" in row)
            return counts.get("test.bdlq.dlq") == "1"

        await eventually(dead_lettered, timeout=20, interval=0.5)
        assert len(attempts) == 3
    finally:
        await bus.close()


async def test_consumers_come_back_after_the_broker_closes_the_connection(amqp_url: str) -> None:
    bus = RabbitBus(amqp_url, connection_name="test-reconnect")
    await bus.start()
    try:
        got: list[str] = []

        async def handler(envelope: Envelope) -> None:
            got.append(envelope.data["call_id"])

        await bus.subscribe("test.reconnect", ["cti.call.offered.v1"], handler)
        await bus.publish(offered("before"))
        await eventually(lambda: got == ["before"])

        assert close_broker_connections(vhost_of(amqp_url)) >= 1

        async def publish_after() -> bool:
            try:
                await bus.publish(offered("after"))
                return True
            except Exception:
                return False

        await eventually(publish_after, timeout=20, interval=0.5)
        await eventually(lambda: "after" in got, timeout=20)
        assert await bus.healthy()
    finally:
        await bus.close()


async def test_unknown_event_type_never_reaches_the_broker(amqp_url: str) -> None:
    from shared.events import UnknownEventType

    bus = RabbitBus(amqp_url, connection_name="test-unknown")
    await bus.start()
    try:
        bad: dict[str, Any] = offered("C1").model_dump()
        bad["type"] = "cti.call.vanished"
        with pytest.raises(UnknownEventType):
            await bus.publish(Envelope.model_validate(bad))
    finally:
        await bus.close()


async def test_subjects_run_concurrently_but_each_in_order(amqp_url: str) -> None:
    """A slow call does not hold up other calls; one call's events stay in order."""
    import asyncio

    bus = RabbitBus(amqp_url, connection_name="test-subjects")
    await bus.start()
    try:
        got: list[tuple[str, int]] = []

        async def handler(envelope: Envelope) -> None:
            if envelope.subject == "call/slow":
                await asyncio.sleep(0.3)
            got.append((envelope.subject, envelope.sequence))

        await bus.subscribe("test.subjects", ["cti.call.offered.v1"], handler)
        for sequence in (1, 2, 3):
            await bus.publish(offered("slow", sequence))
        for sequence in (1, 2, 3):
            await bus.publish(offered("fast", sequence))
        await eventually(lambda: len(got) == 6, timeout=15)
        assert [s for subject, s in got if subject == "call/slow"] == [1, 2, 3]
        assert [s for subject, s in got if subject == "call/fast"] == [1, 2, 3]
        # The fast call finished while the slow one was still being handled.
        assert got.index(("call/fast", 3)) < got.index(("call/slow", 2))
    finally:
        await bus.close()
