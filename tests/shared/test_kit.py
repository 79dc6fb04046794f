"""The service kit end to end: REST in, outbox, bus, inbox-deduplicated consumer, persisted."""

from __future__ import annotations

import pytest

from shared.bus import topic_matches
from shared.bus.memory import MemoryBus
from shared.envelope import Envelope
from tests.conftest import bearer, eventually, running
from tests.shared.kit_service import create_app


@pytest.mark.parametrize(("binding", "key", "expected"), [
    ("cti.call.offered.v1", "cti.call.offered.v1", True),
    ("cti.call.*.v1", "cti.call.offered.v1", True),
    ("cti.*.v1", "cti.call.offered.v1", False),
    ("cti.#", "cti.call.offered.v1", True),
    ("#", "cti.call.offered.v1", True),
    ("#.v1", "acd.agent.reserved.v1", True),
    ("cti.#.v2", "cti.call.offered.v1", False),
    ("cti.call.#", "cti.call", True),
])
def test_topic_matching(binding: str, key: str, expected: bool) -> None:
    assert topic_matches(binding, key) is expected


async def test_event_flows_through_outbox_and_bus_once(common, auth) -> None:
    bus = MemoryBus()
    app = create_app(common, bus=bus)
    async with running(app) as client:
        service = app.state.service
        for call in ("C1", "C2"):
            response = await client.post("/offers", json={"call_id": call, "from_number": "+861"},
                                         headers=bearer(auth, "switch"))
            assert response.status_code == 200, response.text
        await eventually(lambda: len(service.seen) == 2)
        # A redelivery of the same event is skipped by the inbox.
        await bus.publish(service.seen[0])
        notes = await client.get("/notes", headers=bearer(auth, "agent"))
        assert sorted(notes.json()) == ["C1", "C2"]
        assert len(service.seen) == 2
        assert await service.messaging.pending_count() == 0
        assert (await client.get("/ready")).json()["ready"] is True
        assert "hotline_events_published_total" in (await client.get("/metrics")).text


async def test_a_newer_producers_extra_field_does_not_break_the_consumer(common, auth,
                                                                     monkeypatch) -> None:
    """During a rolling deploy a producer already on a newer model adds a field: the older
    consumer reads what it knows and handles the event (once), rather than dead-lettering
    it; a payload missing a field it needs is still refused."""
    from datetime import UTC, datetime

    import shared.bus.memory

    monkeypatch.setattr(shared.bus.memory, "check_publishable", lambda envelope: None)
    bus = MemoryBus()
    app = create_app(common, bus=bus)
    async with running(app) as client:
        service = app.state.service
        data = {"call_id": "C9", "from_number": "+861", "to_number": "95598",
                "offered_at": datetime.now(UTC).isoformat(), "channel": "video"}
        newer = Envelope(source="/newer", type="cti.call.offered", time=datetime.now(UTC),
                         subject="call/C9", sequence=1, data=data)
        await bus.publish(newer)
        await eventually(lambda: len(service.seen) == 1)
        notes = await client.get("/notes", headers=bearer(auth, "agent"))
        assert notes.json() == ["C9"]
        broken = newer.model_copy(update={"id": "broken", "data": {"call_id": "C10"}})
        await bus.publish(broken)  # returns once retried up to the limit and dead-lettered
        assert [e.id for e in bus.queues["kit.notes"].dead_letters] == ["broken"]
        assert len(service.seen) == 1


async def test_unknown_event_type_is_refused_at_publish() -> None:
    from datetime import UTC, datetime

    from shared.events import UnknownEventType
    bus = MemoryBus()
    envelope = Envelope(source="/t", type="cti.call.exploded", time=datetime.now(UTC),
                        subject="call/x", sequence=1, data={})
    with pytest.raises(UnknownEventType):
        await bus.publish(envelope)


async def test_auth_refusals(common, auth) -> None:
    app = create_app(common, bus=MemoryBus())
    async with running(app) as client:
        assert (await client.get("/notes")).status_code == 401
        bad = {"Authorization": "Bearer " + auth.mint("x", ["agent"])[:-4] + "AAAA"}
        assert (await client.get("/notes", headers=bad)).status_code == 401
        assert (await client.get("/notes", headers=bearer(auth, "switch"))).status_code == 403
        assert (await client.get("/notes", headers=bearer(auth, "admin"))).status_code == 200


async def test_invalid_body_is_422_with_field(common, auth) -> None:
    app = create_app(common, bus=MemoryBus())
    async with running(app) as client:
        response = await client.post("/offers", json={"call_id": "C1"},
                                     headers=bearer(auth, "switch"))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "from_number"]


@pytest.mark.integration
async def test_outbox_over_rabbitmq_survives_broker_closing_connections(common, auth,
                                                                       amqp_url) -> None:
    """Publishing through the outbox while the broker drops our connections: every event
    arrives, and a redelivered one is not handled twice."""
    from tests.conftest import close_broker_connections

    settings = common.model_copy(update={"amqp_url": amqp_url})
    app = create_app(settings)
    async with running(app) as client:
        service = app.state.service
        for index in range(40):
            if index == 20:
                assert close_broker_connections(amqp_url.rsplit("/", 1)[1]) >= 1
            response = await client.post("/offers", json={"call_id": f"C{index}",
                                                          "from_number": "+861"},
                                         headers=bearer(auth, "switch"))
            assert response.status_code == 200
        await eventually(lambda: len({e.data["call_id"] for e in service.seen}) == 40, timeout=30)
        notes = (await client.get("/notes", headers=bearer(auth, "agent"))).json()
        assert sorted(notes) == sorted(f"C{index}" for index in range(40))
        assert await service.messaging.pending_count() == 0


def test_scaled_clock_runs_from_its_start_at_its_scale() -> None:
    import time
    from datetime import UTC, datetime

    from shared.clock import ScaledClock

    start = datetime(2026, 7, 15, 0, 0, tzinfo=UTC)
    clock = ScaledClock(scale=100, origin=time.time() - 3, start=start)
    elapsed = (clock.now() - start).total_seconds()
    assert 299 <= elapsed <= 310  # 3 wall seconds at 100x
    assert clock.wall_seconds(50) == 0.5


async def test_deferred_consumers_start_only_when_asked(common, auth) -> None:
    # acd_router's standby relays its outbox but must not consume until it is promoted.
    bus = MemoryBus()
    app = create_app(common, bus=bus)
    service = app.state.service
    service.defer_consumers = True
    service.ready_info = lambda: {"role": "standby"}
    async with running(app) as client:
        assert not service.messaging.consuming
        assert "kit.notes" not in bus.queues
        ready = (await client.get("/ready")).json()
        assert ready["ready"] is True and ready["role"] == "standby"
        response = await client.post("/offers", json={"call_id": "C1", "from_number": "+861"},
                                     headers=bearer(auth, "switch"))
        assert response.status_code == 200, response.text
        await service.start_consumers()
        await service.start_consumers()  # idempotent: still one subscriber
        assert service.messaging.consuming and len(bus.queues["kit.notes"].handlers) == 1
        # From now on the service's events reach its consumer.
        await client.post("/offers", json={"call_id": "C2", "from_number": "+861"},
                          headers=bearer(auth, "switch"))
        await eventually(lambda: any(e.data["call_id"] == "C2" for e in service.seen))
