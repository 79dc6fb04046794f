"""The IVR engine as a service: cti events in over the in-memory bus, ivr events out, real
PostgreSQL, and a stand-in workorder (a peer service) served over HTTP by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request

from services.ivr_engine.app import create_app
from services.ivr_engine.settings import IvrSettings
from shared.bus.memory import MemoryBus
from shared.clock import FakeClock
from shared.envelope import Envelope
from shared.settings import CommonSettings
from tests.conftest import bearer, eventually, running, uvicorn_serving

VIP_NUMBER = "+8613800000001"
REGULAR_NUMBER = "+8613800000002"
SLOW_NUMBER = "+8613800000009"
# A current workorder lists the area's outages with the customer: no second request.
LISTING_NUMBER = "+8613800000007"
CUSTOMERS: dict[str, dict[str, Any]] = {
    VIP_NUMBER: {"account": "3100012345", "name": "Wang Wei", "tier": "vip", "area": "A-017",
                 "flags": ["elderly_alone"], "balance": "120.50", "phones": [VIP_NUMBER]},
    REGULAR_NUMBER: {"account": "3100054321", "name": "Li Na", "tier": "regular",
                     "area": "B-002", "flags": [], "balance": 35.0},
}
RESTORE = datetime(2026, 7, 15, 6, 30, tzinfo=UTC)  # 14:30 Shanghai, same day as FakeClock
OUTAGES = [{"outage_id": "OUT1", "area": "A-017", "type": "fault",
            "restore_eta": RESTORE.isoformat(), "active": True}]


# -- a stand-in for workorder's customer and outage endpoints --------------------------------


class FakeWorkorder:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.app = FastAPI()

        @self.app.get("/v1/customers/lookup")
        async def lookup(number: str, request: Request) -> dict[str, Any]:
            self.requests.append(request)
            if number == SLOW_NUMBER:
                await asyncio.sleep(1.0)
            if number == LISTING_NUMBER:
                return {**CUSTOMERS[VIP_NUMBER], "active_outages": OUTAGES}
            if number not in CUSTOMERS:
                raise HTTPException(404, f"no customer with number {number}")
            return CUSTOMERS[number]

        @self.app.get("/v1/outages")
        async def outages(area: str, request: Request, active: bool = True
                          ) -> list[dict[str, Any]]:
            self.requests.append(request)
            return [o for o in OUTAGES if o["area"] == area]


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    async with uvicorn_serving(app, log_level="warning", lifespan="off",
                               timeout_graceful_shutdown=1) as base:
        yield f"http://{base}"


def free_port_url() -> str:
    """A URL nothing listens on: workorder is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- harness ---------------------------------------------------------------------------------


class Observer:
    def __init__(self) -> None:
        self.events: list[Envelope] = []

    async def __call__(self, envelope: Envelope) -> None:
        self.events.append(envelope)

    def of(self, event_type: str, call_id: str | None = None) -> list[Envelope]:
        return [e for e in self.events if e.type == event_type
                and (call_id is None or e.data.get("call_id") == call_id)]

    def ivr(self, call_id: str) -> list[Envelope]:
        return [e for e in self.events
                if e.type.startswith("ivr.") and e.data.get("call_id") == call_id]

    async def wait(self, event_type: str, call_id: str, count: int = 1) -> list[Envelope]:
        await eventually(lambda: len(self.of(event_type, call_id)) >= count)
        return self.of(event_type, call_id)


class Cti:
    """Publishes cti events as cti_gateway would (per-call sequence numbers)."""

    def __init__(self, bus: MemoryBus, clock: FakeClock) -> None:
        self.bus = bus
        self.clock = clock
        self.sequences: dict[str, int] = {}

    async def publish(self, event_type: str, call_id: str, **data: Any) -> Envelope:
        self.sequences[call_id] = self.sequences.get(call_id, 0) + 1
        envelope = Envelope(source="/hotline/cti_gateway", type=event_type,
                            time=self.clock.now(), subject=f"call/{call_id}",
                            sequence=self.sequences[call_id], correlationid=call_id,
                            data={"call_id": call_id, **data})
        await self.bus.publish(envelope)
        return envelope

    async def offered(self, call_id: str, from_number: str, to_number: str = "95598"
                      ) -> Envelope:
        return await self.publish("cti.call.offered", call_id, direction="inbound",
                                  from_number=from_number, to_number=to_number,
                                  offered_at=self.clock.now().isoformat())

    async def dtmf(self, call_id: str, digits: str, prompt_id: str | None = None) -> Envelope:
        return await self.publish("cti.call.dtmf_received", call_id, digits=digits,
                                  prompt_id=prompt_id)

    async def released(self, call_id: str, direction: str = "inbound") -> Envelope:
        return await self.publish("cti.call.released", call_id, direction=direction,
                                  cause="caller_hangup", state="in_ivr",
                                  from_number=REGULAR_NUMBER, to_number="95598",
                                  released_at=self.clock.now().isoformat())


@pytest.fixture
def harness(common: CommonSettings) -> Any:
    """``async with harness(...) as (client, cti, observer, clock)``: the app running on a
    fresh in-memory bus and a FakeClock."""
    @contextlib.asynccontextmanager
    async def start(*, workorder_url: str | None = None, lookup_timeout: float = 1.0
                    ) -> AsyncIterator[tuple[Any, Cti, Observer, FakeClock]]:
        bus = MemoryBus()
        clock = FakeClock(datetime(2026, 7, 15, 0, 0, tzinfo=UTC))
        observer = Observer()
        await bus.subscribe("test.observer", ["#"], observer)
        settings = IvrSettings(
            common=common.model_copy(update={"workorder_url": workorder_url or free_port_url()}),
            lookup_timeout_seconds=lookup_timeout, timeout_poll_seconds=0.02)
        app = create_app(settings, bus=bus, clock=clock)
        try:
            async with running(app) as client:
                yield client, Cti(bus, clock), observer, clock
        finally:
            await bus.close()

    return start


@pytest.fixture
async def workorder() -> AsyncIterator[tuple[FakeWorkorder, str]]:
    fake = FakeWorkorder()
    async with serving(fake.app) as url:
        yield fake, url


# -- tests -----------------------------------------------------------------------------------


async def test_vip_outage_call_is_told_the_outage_and_routed_to_repair(
        harness: Any, workorder: tuple[FakeWorkorder, str], auth: Any) -> None:
    fake, url = workorder
    async with harness(workorder_url=url) as (client, cti, seen, _clock):
        await cti.offered("C1", VIP_NUMBER)
        [started] = await seen.wait("ivr.session.started", "C1")
        assert started.data["menu"] == "95598" and started.data["menu_version"] == 1
        [first] = await seen.wait("ivr.prompt.requested", "C1")
        assert first.data["collect"] == {"max_digits": 1, "timeout_seconds": 6.0}

        await cti.dtmf("C1", "1", prompt_id=first.data["prompt_id"])
        [done] = await seen.wait("ivr.session.completed", "C1")
        outage_prompt = seen.of("ivr.prompt.requested", "C1")[1]
        assert outage_prompt.data["collect"] is None
        assert "restored by 14:30" in outage_prompt.data["text"]
        assert done.data["outcome"] == "routed"
        assert done.data["path"] == ["main", "outage", "to_repair"]
        assert done.data["route"] == {
            "queue": "repair", "skills": ["repair"], "priority": 10,
            "customer": {"account": "3100012345", "name": "Wang Wei", "tier": "vip",
                         "area": "A-017", "flags": ["elderly_alone"]},
            "from_number": VIP_NUMBER}
        assert not seen.of("ivr.release.requested", "C1")

        events = seen.ivr("C1")
        assert [e.type for e in events] == ["ivr.session.started", "ivr.prompt.requested",
                                            "ivr.prompt.requested", "ivr.session.completed"]
        assert {e.subject for e in events} == {"call/C1"}
        assert {e.correlationid for e in events} == {"C1"}
        assert [e.sequence for e in events] == [1, 2, 3, 4]

        # Workorder was asked with a service token.
        assert [r.url.path for r in fake.requests] == ["/v1/customers/lookup", "/v1/outages"]
        token = fake.requests[0].headers["authorization"].split()[1]
        assert "service" in auth.verify(token).scopes

        response = await client.get("/v1/sessions/C1", headers=bearer(auth, "agent"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["outcome"], body["menu_version"]) == (
            "completed", "routed", 1)
        assert body["facts"]["outage"]["area"] == "A-017"
        assert body["inputs"][0]["digits"] == "1"


async def test_outages_listed_with_the_customer_need_no_second_lookup(
        harness: Any, workorder: tuple[FakeWorkorder, str]) -> None:
    fake, url = workorder
    async with harness(workorder_url=url) as (_client, cti, seen, _clock):
        await cti.offered("C9", LISTING_NUMBER)
        [first] = await seen.wait("ivr.prompt.requested", "C9")
        await cti.dtmf("C9", "1", prompt_id=first.data["prompt_id"])
        [done] = await seen.wait("ivr.session.completed", "C9")
        assert done.data["path"] == ["main", "outage", "to_repair"]
        assert "restored by 14:30" in seen.of("ivr.prompt.requested", "C9")[1].data["text"]
        assert [r.url.path for r in fake.requests] == ["/v1/customers/lookup"]


async def test_complaint_from_vip_takes_the_green_channel(
        harness: Any, workorder: tuple[FakeWorkorder, str]) -> None:
    _, url = workorder
    async with harness(workorder_url=url) as (_client, cti, seen, _clock):
        await cti.offered("C2", VIP_NUMBER)
        await seen.wait("ivr.prompt.requested", "C2")
        await cti.dtmf("C2", "9")
        [done] = await seen.wait("ivr.session.completed", "C2")
        assert (done.data["route"]["queue"], done.data["route"]["priority"]) == ("complaint", 20)


async def test_billing_self_service_announces_balance_and_releases_on_no_input(
        harness: Any, workorder: tuple[FakeWorkorder, str]) -> None:
    _, url = workorder
    async with harness(workorder_url=url) as (_client, cti, seen, clock):
        await cti.offered("C3", REGULAR_NUMBER)
        await seen.wait("ivr.prompt.requested", "C3")
        await cti.dtmf("C3", "2")
        prompts = await seen.wait("ivr.prompt.requested", "C3", 3)
        assert "balance of 35.00 yuan" in prompts[1].data["text"]
        assert prompts[2].data["collect"] is not None

        clock.advance(5)  # not yet due
        await asyncio.sleep(0.2)
        assert not seen.of("ivr.session.completed", "C3")
        clock.advance(1.5)
        [done] = await seen.wait("ivr.session.completed", "C3")
        assert done.data["outcome"] == "self_served" and done.data["route"] is None
        assert done.data["path"] == ["main", "balance", "balance_more", "goodbye"]
        [release] = await seen.wait("ivr.release.requested", "C3")
        assert release.data == {"call_id": "C3", "reason": "self_served"}
        assert [e.type for e in seen.ivr("C3")][-3:] == [
            "ivr.prompt.requested", "ivr.session.completed", "ivr.release.requested"]

        # A late digit for the ended session is logged and ignored, not dead-lettered.
        await cti.dtmf("C3", "0")
        await asyncio.sleep(0.1)
        assert len(seen.of("ivr.session.completed", "C3")) == 1
        app_bus = cti.bus
        assert all(not q.dead_letters for q in app_bus.queues.values())


async def test_billing_then_agent(harness: Any, workorder: tuple[FakeWorkorder, str]) -> None:
    _, url = workorder
    async with harness(workorder_url=url) as (_client, cti, seen, _clock):
        await cti.offered("C4", REGULAR_NUMBER)
        await seen.wait("ivr.prompt.requested", "C4")
        await cti.dtmf("C4", "2")
        await seen.wait("ivr.prompt.requested", "C4", 3)
        await cti.dtmf("C4", "0")
        [done] = await seen.wait("ivr.session.completed", "C4")
        assert done.data["route"]["queue"] == "billing"
        assert not seen.of("ivr.release.requested", "C4")


async def test_workorder_down_means_unknown_caller_and_no_input_twice_goes_to_an_agent(
        harness: Any) -> None:
    async with harness() as (_client, cti, seen, clock):
        await cti.offered("C5", VIP_NUMBER)
        [first] = await seen.wait("ivr.prompt.requested", "C5")
        clock.advance(6)
        prompts = await seen.wait("ivr.prompt.requested", "C5", 2)
        assert prompts[1].data["text"].startswith("Sorry")
        assert prompts[1].data["prompt_id"] != first.data["prompt_id"]
        clock.advance(6)
        [done] = await seen.wait("ivr.session.completed", "C5")
        assert done.data["outcome"] == "routed"
        assert done.data["route"]["queue"] == "billing"
        # Unknown caller: no customer context, no VIP priority.
        assert done.data["route"]["customer"] is None
        assert done.data["route"]["priority"] == 0


async def test_slow_workorder_does_not_hold_the_call(
        harness: Any, workorder: tuple[FakeWorkorder, str]) -> None:
    _, url = workorder
    async with harness(workorder_url=url, lookup_timeout=0.2) as (_client, cti, seen, _clock):
        loop = asyncio.get_running_loop()
        began = loop.time()
        await cti.offered("C6", SLOW_NUMBER)
        await seen.wait("ivr.prompt.requested", "C6")
        assert loop.time() - began < 0.9
        await cti.dtmf("C6", "2")  # balance of an unknown caller: straight to billing
        [done] = await seen.wait("ivr.session.completed", "C6")
        assert done.data["path"] == ["main", "balance", "to_billing"]


async def test_invalid_twice_goes_to_an_agent_and_stale_digits_are_ignored(
        harness: Any, workorder: tuple[FakeWorkorder, str]) -> None:
    _, url = workorder
    async with harness(workorder_url=url) as (_client, cti, seen, _clock):
        await cti.offered("C7", REGULAR_NUMBER)
        [first] = await seen.wait("ivr.prompt.requested", "C7")
        await cti.dtmf("C7", "7", prompt_id=first.data["prompt_id"])
        prompts = await seen.wait("ivr.prompt.requested", "C7", 2)
        # An answer to the first prompt arriving after the re-prompt changes nothing.
        await cti.dtmf("C7", "1", prompt_id=first.data["prompt_id"])
        await cti.dtmf("C7", "*", prompt_id=prompts[1].data["prompt_id"])
        [done] = await seen.wait("ivr.session.completed", "C7")
        assert done.data["route"]["queue"] == "billing"
        assert done.data["path"] == ["main", "to_billing"]


async def test_caller_hangs_up_in_the_menu(harness: Any, auth: Any) -> None:
    async with harness() as (client, cti, seen, clock):
        offered = await cti.offered("C8", REGULAR_NUMBER)
        await seen.wait("ivr.prompt.requested", "C8")
        await cti.released("C8")
        [done] = await seen.wait("ivr.session.completed", "C8")
        assert done.data["outcome"] == "caller_hung_up" and done.data["route"] is None
        assert not seen.of("ivr.release.requested", "C8")

        # Redelivery, a second offer, a second release and a late timeout: all ignored.
        await cti.bus.publish(offered)
        await cti.offered("C8", REGULAR_NUMBER)
        await cti.released("C8")
        clock.advance(60)
        await asyncio.sleep(0.2)
        assert len(seen.ivr("C8")) == 3
        body = (await client.get("/v1/sessions/C8", headers=bearer(auth, "service"))).json()
        assert (body["status"], body["outcome"], body["deadline"]) == (
            "completed", "caller_hung_up", None)
        # A release for a call the IVR never saw is ignored too.
        await cti.released("C-unknown")
        assert all(not q.dead_letters for q in cti.bus.queues.values())


async def test_satisfaction_survey(harness: Any) -> None:
    context = {"purpose": "survey", "order_id": "O-1", "callback_id": "CB-1", "attempt": 2}
    async with harness() as (_client, cti, seen, clock):
        # Inbound answers and non-survey outbound calls start nothing.
        await cti.publish("cti.call.answered", "C9", direction="inbound",
                          from_number=REGULAR_NUMBER, to_number="95598")
        await cti.publish("cti.call.answered", "C10", direction="outbound",
                          from_number="95598", to_number=REGULAR_NUMBER,
                          context={"purpose": "courtesy"})
        await cti.publish("cti.call.answered", "S1", direction="outbound",
                          from_number="95598", to_number=REGULAR_NUMBER, context=context)
        [started] = await seen.wait("ivr.session.started", "S1")
        assert started.data["purpose"] == "survey"
        [ask] = await seen.wait("ivr.prompt.requested", "S1")
        assert ask.data["collect"]["max_digits"] == 1
        await cti.dtmf("S1", "3")
        [survey] = await seen.wait("ivr.survey.completed", "S1")
        assert survey.data == {"call_id": "S1", "context": context,
                               "satisfaction": "dissatisfied"}
        [done] = await seen.wait("ivr.session.completed", "S1")
        assert done.data["outcome"] == "survey"
        [release] = await seen.wait("ivr.release.requested", "S1")
        assert release.data["reason"] == "survey_completed"
        assert not seen.ivr("C9") and not seen.ivr("C10")

        # No valid answer twice: satisfaction null, still released.
        await cti.publish("cti.call.answered", "S2", direction="outbound",
                          from_number="95598", to_number=REGULAR_NUMBER, context=context)
        await seen.wait("ivr.prompt.requested", "S2")
        await cti.dtmf("S2", "8")
        await seen.wait("ivr.prompt.requested", "S2", 2)
        clock.advance(8)
        [survey] = await seen.wait("ivr.survey.completed", "S2")
        assert survey.data["satisfaction"] is None
        await seen.wait("ivr.release.requested", "S2")


async def test_rest_sessions_and_menus(harness: Any, auth: Any) -> None:
    async with harness() as (client, _cti, _seen, _clock):
        missing = await client.get("/v1/sessions/NOPE", headers=bearer(auth, "supervisor"))
        assert missing.status_code == 404
        assert "NOPE" in missing.json()["detail"]["message"]
        assert (await client.get("/v1/sessions/NOPE")).status_code == 401
        assert (await client.get("/v1/menus", headers=bearer(auth, "switch"))).status_code == 403
        menus = await client.get("/v1/menus", headers=bearer(auth, "integrator"))
        assert menus.status_code == 200
        [menu] = menus.json()
        assert (menu["name"], menu["version"], menu["default"]) == ("95598", 1, True)
        assert menu["nodes"]["main"]["options"]["1"] == "outage"
        assert (await client.get("/ready")).json()["ready"] is True


async def test_timeout_after_restart_is_still_fired(common: CommonSettings) -> None:
    """Deadlines live in PostgreSQL: a session left waiting by one process times out in the
    next."""
    clock = FakeClock(datetime(2026, 7, 15, tzinfo=UTC))
    settings = IvrSettings(common=common.model_copy(update={"workorder_url": free_port_url()}),
                           timeout_poll_seconds=0.02)
    first_bus = MemoryBus()
    async with running(create_app(settings, bus=first_bus, clock=clock)):
        cti = Cti(first_bus, clock)
        await cti.offered("R1", REGULAR_NUMBER)
    await first_bus.close()

    bus = MemoryBus()
    seen = Observer()
    await bus.subscribe("test.observer", ["#"], seen)
    async with running(create_app(settings, bus=bus, clock=clock)):
        clock.advance(timedelta(seconds=6).total_seconds())
        # The first prompt may come from the first process's outbox, relayed by this one.
        await eventually(lambda: [p for p in seen.of("ivr.prompt.requested", "R1")
                                  if p.data["text"].startswith("Sorry")])
    await bus.close()
