"""The workorder service with its real database, the in-memory bus and a fake clock; the test
plays CTI and the IVR by publishing their events into the bus."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.workorder.app import create_app
from services.workorder.settings import WorkorderSettings
from shared.auth import Auth
from shared.bus.memory import MemoryBus
from shared.clock import FakeClock
from shared.envelope import Envelope
from shared.settings import CommonSettings
from tests.conftest import bearer, eventually, running

CUSTOMER = {"name": "Zhang San", "numbers": ["+8613800000001", "+8613800000002"],
            "area": "A-017", "tier": "vip", "flags": ["elderly_alone"], "balance": "12.50"}


@dataclass
class Harness:
    client: httpx.AsyncClient
    bus: MemoryBus
    clock: FakeClock
    auth: Auth
    service: Any
    runtime: Any
    seen: list[Envelope] = field(default_factory=list)
    _sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def headers(self, *scopes: str) -> dict[str, str]:
        return bearer(self.auth, *(scopes or ("agent",)), subject="A001")

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [e.data for e in self.seen if e.type == event_type]

    def envelopes(self, event_type: str) -> list[Envelope]:
        return [e for e in self.seen if e.type == event_type]

    async def requests(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` callback requests went out; return them all."""
        await eventually(lambda: len(self.events("workorder.callback.requested")) >= count)
        return self.events("workorder.callback.requested")

    async def play(self, event_type: str, data: dict[str, Any], call_id: str | None) -> None:
        source = "/hotline/ivr_engine" if event_type.startswith("ivr.") else "/hotline/cti_gateway"
        await self.bus.publish(Envelope(
            source=source, type=event_type, time=self.clock.now(),
            subject=f"call/{call_id or 'none'}", sequence=next(self._sequence),
            correlationid=call_id, data=data))

    # -- CTI and IVR stand-ins --------------------------------------------------------------

    async def originated(self, request: dict[str, Any]) -> str:
        call_id = f"OUT-{request['callback_id']}-{request['attempt']}"
        await self.play("cti.call.originated", {
            "call_id": call_id, "request_id": request["request_id"], "from_number": "95598",
            "to_number": request["to_number"], "context": request["context"]}, call_id)
        return call_id

    async def released(self, request: dict[str, Any], call_id: str, cause: str) -> None:
        await self.play("cti.call.released", {
            "call_id": call_id, "direction": "outbound", "cause": cause, "state": "dialing",
            "from_number": "95598", "to_number": request["to_number"],
            "context": request["context"], "released_at": self.clock.now().isoformat()}, call_id)

    async def origination_failed(self, request: dict[str, Any]) -> None:
        await self.play("cti.call.origination_failed", {
            "request_id": request["request_id"], "to_number": request["to_number"],
            "reason": "trunk_busy", "context": request["context"]}, None)

    async def surveyed(self, request: dict[str, Any], call_id: str,
                       satisfaction: str | None) -> None:
        await self.play("ivr.survey.completed", {
            "call_id": call_id, "context": request["context"], "satisfaction": satisfaction},
            call_id)

    async def answer(self, request: dict[str, Any], satisfaction: str | None) -> None:
        """The customer picks up, answers the survey, the IVR hangs up."""
        call_id = await self.originated(request)
        await self.surveyed(request, call_id, satisfaction)
        await self.released(request, call_id, "ivr_release")

    async def no_answer(self, request: dict[str, Any]) -> None:
        call_id = await self.originated(request)
        await self.released(request, call_id, "no_answer")

    # -- REST --------------------------------------------------------------------------------

    async def put_customer(self, account: str = "3100012345", **fields: Any) -> dict[str, Any]:
        response = await self.client.put(f"/v1/customers/{account}",
                                         json={**CUSTOMER, **fields},
                                         headers=self.headers("service"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def new_order(self, **fields: Any) -> dict[str, Any]:
        body = {"type": "repair", "call_id": "C000001", "customer_account": "3100012345",
                "description": "no power", **fields}
        response = await self.client.post("/v1/orders", json=body, headers=self.headers())
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def resolve(self, order_id: str, reply: str = "line repaired") -> httpx.Response:
        return await self.client.post(f"/v1/orders/{order_id}/resolve", json={"reply": reply},
                                      headers=self.headers())

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/orders/{order_id}", headers=self.headers())
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def order_state(self, order_id: str) -> str:
        return str((await self.order(order_id))["state"])

    def dead_letters(self) -> list[Envelope]:
        return self.bus.queues["workorder.events"].dead_letters


@pytest.fixture
async def harness(common: CommonSettings, auth: Auth) -> AsyncIterator[Harness]:
    settings = WorkorderSettings(common=common, callback_delay_seconds=30,
                                 callback_retry_seconds=120, callback_max_attempts=3,
                                 callback_attempt_timeout_seconds=600, callback_poll_seconds=0.02)
    bus, clock = MemoryBus(), FakeClock()
    app = create_app(settings, bus=bus, clock=clock)
    async with running(app) as client:
        h = Harness(client, bus, clock, auth, app.state.service, app.state.runtime)

        async def observe(envelope: Envelope) -> None:
            h.seen.append(envelope)

        await bus.subscribe("test.observer", ["#"], observe)
        yield h
        assert h.dead_letters() == []


async def resolved_and_dialled(h: Harness) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer's order resolved, its callback due and requested (attempt 1)."""
    await h.put_customer()
    order = await h.new_order()
    assert (await h.resolve(order["order_id"])).status_code == 200
    h.clock.advance(30)
    request = (await h.requests(1))[0]
    return order, request


# -- customers and outages -------------------------------------------------------------------

async def test_customer_upsert_get_and_lookup_by_any_number(harness: Harness) -> None:
    h = harness
    stored = await h.put_customer()
    assert stored["numbers"] == CUSTOMER["numbers"] and stored["balance"] == "12.50"
    assert (stored["tier"], stored["flags"], stored["area"]) == ("vip", ["elderly_alone"], "A-017")
    for number in CUSTOMER["numbers"]:
        found = await h.client.get("/v1/customers/lookup", params={"number": number},
                                   headers=h.headers("service"))
        assert found.status_code == 200 and found.json()["account"] == "3100012345"
    missing = await h.client.get("/v1/customers/lookup", params={"number": "+8600"},
                                 headers=h.headers())
    assert missing.status_code == 404 and missing.json()["detail"]["entity"] == "customer number"
    assert (await h.client.get("/v1/customers/nobody", headers=h.headers())).status_code == 404

    # A partial update keeps what it does not mention; numbers given replace the old ones.
    response = await h.client.put("/v1/customers/3100012345",
                                  json={"tier": "regular", "numbers": ["+8613900000009"]},
                                  headers=h.headers("service"))
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["tier"], updated["balance"], updated["name"]) == ("regular", "12.50",
                                                                      "Zhang San")
    assert updated["numbers"] == ["+8613900000009"]
    gone = await h.client.get("/v1/customers/lookup", params={"number": "+8613800000001"},
                              headers=h.headers())
    assert gone.status_code == 404

    mismatch = await h.client.put("/v1/customers/1", json={"account": "2"},
                                  headers=h.headers("supervisor"))
    assert mismatch.status_code == 422
    assert mismatch.json()["detail"][0]["loc"] == ["body", "account"]
    # An integrator reads the directory without names and numbers unless granted (H6).
    masked = (await h.client.get("/v1/customers/3100012345",
                                 headers=h.headers("integrator"))).json()
    assert masked["name"] == "Z***" and masked["numbers"] == ["+*********0009"]
    granted = {"Authorization": "Bearer " + h.auth.mint("bi", ["integrator"],
                                                        grants=("personal",))}
    full = (await h.client.get("/v1/customers/3100012345", headers=granted)).json()
    assert full["name"] == "Zhang San" and full["numbers"] == ["+8613900000009"]
    for scope in ("integrator", "agent"):
        # An agent may not rewrite a customer or move a number off another account (M2).
        refused = await h.client.put("/v1/customers/1", json={}, headers=h.headers(scope))
        assert refused.status_code == 403


async def test_a_customers_numbers_are_stored_in_e164_however_they_are_written(
        harness: Harness) -> None:
    """One spelling per number (security review: the deny list, the daily cap and storage
    see the same one): a national, a spaced, a dotted or a full-width number is kept in
    E.164, found by any spelling of it, and something that is no number is refused."""
    h = harness
    spellings = ["0755 8123 4567", "138.0000.0001", "\uff0b\uff18\uff16\uff11\uff13\uff19"
                 "\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff12", "+86 138 0000 0001"]
    response = await h.client.put("/v1/customers/3100012345",
                                  json={"name": "Li Si", "numbers": spellings},
                                  headers=h.headers("service"))
    assert response.status_code == 200, response.text
    assert response.json()["numbers"] == ["+8675581234567", "+8613800000001",
                                          "+8613900000002"]
    for number in ("+8613800000001", "13800000001", "(0755) 8123-4567", "008613900000002"):
        found = await h.client.get("/v1/customers/lookup", params={"number": number},
                                   headers=h.headers("service"))
        assert found.status_code == 200 and found.json()["account"] == "3100012345", number
    bad = await h.client.put("/v1/customers/3100012345",
                             json={"numbers": ["+8613800000001", "call me"]},
                             headers=h.headers("service"))
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "numbers.1"]
    batch = await h.client.post("/v1/customers/batch", json={"customers": [
        {"account": "A1", "numbers": ["13700000001"]},
        {"account": "A2", "ani": "n/a"}]}, headers=h.headers("service"))
    assert batch.status_code == 422
    assert batch.json()["detail"][0]["loc"] == ["body", "customers.1.ani"]
    # Nothing of a refused batch was written.
    assert (await h.client.get("/v1/customers/A1", headers=h.headers())).status_code == 404
    kept = (await h.client.get("/v1/customers/3100012345", headers=h.headers())).json()
    assert kept["numbers"] == ["+8675581234567", "+8613800000001", "+8613900000002"]


async def test_every_unmasked_read_of_a_customer_by_a_person_is_audited(harness: Harness
                                                                        ) -> None:
    """The record or a lookup of its number, read by an agent, a supervisor or a granted
    integrator, leaves who, how and when; a masked read and the suite's own lookup (the
    IVR's service token, on every call) do not. Only a supervisor or admin reads the trail."""
    h = harness
    await h.put_customer()
    account, number = "3100012345", CUSTOMER["numbers"][0]
    granted = {"Authorization": "Bearer " + h.auth.mint("bi", ["integrator"],
                                                        grants=("personal",))}
    reads = [("/v1/customers/" + account, {}, h.headers("agent")),
             ("/v1/customers/lookup", {"number": number}, h.headers("supervisor")),
             ("/v1/customers/" + account, {}, granted),
             ("/v1/customers/" + account, {}, h.headers("integrator")),  # masked
             ("/v1/customers/lookup", {"number": number}, h.headers("service"))]
    # An order shows the customer's contact number and address: its read is theirs too.
    order_id = (await h.new_order())["order_id"]
    reads.append((f"/v1/orders/{order_id}", {}, h.headers("agent")))
    for path, params, headers in reads:
        response = await h.client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
    trail = await h.client.get(f"/v1/customers/{account}/access",
                               headers=h.headers("supervisor"))
    assert trail.status_code == 200, trail.text
    assert [(a["subject"], a["action"], a["scopes"], a["order_id"]) for a in trail.json()] == [
        ("A001", "order", "agent", order_id), ("bi", "record", "integrator", None),
        ("A001", "lookup", "supervisor", None), ("A001", "record", "agent", None)]
    assert datetime.fromisoformat(trail.json()[0]["at"]) == h.clock.now()
    for scope in ("agent", "integrator", "service"):
        refused = await h.client.get(f"/v1/customers/{account}/access",
                                     headers=h.headers(scope))
        assert refused.status_code == 403


async def test_lookup_lists_the_outages_active_in_the_customers_area(harness: Harness
                                                                       ) -> None:
    """What the IVR needs of a caller, in one answer: the customer and the outages now
    active in their area (not those of other areas, nor restored or future ones)."""
    h = harness
    await h.put_customer()  # area A-017
    now = h.clock.now()
    ops = h.headers("supervisor")
    for area, start, eta in (("A-017", now - timedelta(hours=1), now + timedelta(hours=2)),
                             ("A-017", now + timedelta(hours=1), now + timedelta(hours=3)),
                             ("B-001", now - timedelta(hours=1), now + timedelta(hours=2))):
        response = await h.client.post("/v1/outages", json={
            "area": area, "type": "fault", "start": start.isoformat(),
            "restore_eta": eta.isoformat()}, headers=ops)
        assert response.status_code == 201, response.text
    found = (await h.client.get("/v1/customers/lookup", params={"number": "+8613800000001"},
                                headers=h.headers("service"))).json()
    assert found["account"] == "3100012345"
    [outage] = found["active_outages"]
    assert (outage["area"], outage["active"]) == ("A-017", True)
    assert datetime.fromisoformat(outage["restore_eta"]) == now + timedelta(hours=2)
    restored = await h.client.post(f"/v1/outages/{outage['outage_id']}/restore", json={},
                                   headers=ops)
    assert restored.status_code == 200, restored.text
    again = (await h.client.get("/v1/customers/lookup", params={"number": "+8613800000001"},
                                headers=h.headers("service"))).json()
    assert again["active_outages"] == []


async def test_batch_accepts_trace_customer_lines(harness: Harness) -> None:
    h = harness
    lines = [
        {"kind": "customer", "ani": "+8613800000001", "account": "3100012345", "name": "A",
         "tier": "vip", "area": "A-017", "flags": ["elderly_alone"]},
        {"kind": "customer", "ani": "+8613800000003", "account": "3100099999", "name": "B",
         "tier": "regular", "area": "A-020", "flags": [], "balance": 88.8},
    ]
    response = await h.client.post("/v1/customers/batch", json={"customers": lines},
                                   headers=h.headers("service"))
    assert response.status_code == 200, response.text
    assert response.json() == {"upserted": 2, "accounts": ["3100012345", "3100099999"]}
    found = (await h.client.get("/v1/customers/lookup", params={"number": "+8613800000003"},
                                headers=h.headers())).json()
    assert (found["account"], found["balance"], found["numbers"]) == ("3100099999", "88.80",
                                                                      ["+8613800000003"])
    first = (await h.client.get("/v1/customers/3100012345", headers=h.headers())).json()
    assert (first["tier"], first["balance"]) == ("vip", "0.00")
    bad = await h.client.post("/v1/customers/batch", json={"customers": [{"name": "x"}]},
                              headers=h.headers("service"))
    assert bad.status_code == 422


async def test_outage_notices_by_area_and_activity(harness: Harness) -> None:
    h = harness
    now = h.clock.now()
    body = {"area": "A-017", "type": "fault",
            "restore_eta": (now + timedelta(hours=2)).isoformat()}
    created = await h.client.post("/v1/outages", json=body, headers=h.headers("supervisor"))
    assert created.status_code == 201, created.text
    assert created.json()["active"] is True
    planned = {"area": "A-017", "type": "planned", "start": (now + timedelta(days=1)).isoformat(),
               "restore_eta": (now + timedelta(days=1, hours=4)).isoformat()}
    assert (await h.client.post("/v1/outages", json=planned,
                                headers=h.headers("service"))).status_code == 201
    backwards = {**body, "restore_eta": (now - timedelta(hours=1)).isoformat()}
    refused = await h.client.post("/v1/outages", json=backwards, headers=h.headers("service"))
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "restore_eta"]

    async def active(area: str) -> list[dict[str, Any]]:
        response = await h.client.get("/v1/outages", params={"area": area, "active": "true"},
                                      headers=h.headers("service"))
        assert response.status_code == 200
        return list(response.json())

    assert [o["type"] for o in await active("A-017")] == ["fault"]
    assert await active("A-018") == []
    inactive = (await h.client.get("/v1/outages", params={"active": "false"},
                                   headers=h.headers())).json()
    assert [o["type"] for o in inactive] == ["planned"]
    h.clock.advance(3 * 3600)
    assert await active("A-017") == []
    no_eta = await h.client.post("/v1/outages", json={"area": "A-018", "type": "fault"},
                                 headers=h.headers("admin"))
    assert no_eta.status_code == 201 and no_eta.json()["restore_eta"] is None
    assert [o["outage_id"] for o in await active("A-018")] == [no_eta.json()["outage_id"]]
    everything = (await h.client.get("/v1/outages", headers=h.headers())).json()
    assert len(everything) == 3


# -- orders ----------------------------------------------------------------------------------

async def test_order_needs_contact_and_a_known_customer(harness: Harness) -> None:
    h = harness
    for body, field_name in [
        ({"type": "consultation"}, "contact_number"),
        ({"type": "repair", "customer_account": "nobody"}, "customer_account"),
        ({"type": "billing", "contact_number": "+86"}, "type"),
    ]:
        response = await h.client.post("/v1/orders", json=body, headers=h.headers())
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][:2] == ["body", field_name]
    by_number = await h.new_order(type="consultation", customer_account=None, call_id=None,
                                  contact_number="+8613700000000")
    assert by_number["state"] == "created" and by_number["allowed_actions"] == ["dispatch", "resolve"]
    created = h.envelopes("workorder.ticket.created")
    await eventually(lambda: len(h.envelopes("workorder.ticket.created")) == 1)
    created = h.envelopes("workorder.ticket.created")
    assert created[0].subject == f"ticket/{by_number['order_id']}"


async def test_duplicates_return_the_existing_order(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    first = await h.new_order(idempotency_key="k-1")
    assert first["area"] == "A-017"  # taken from the customer
    again = await h.client.post("/v1/orders", json={"type": "repair", "call_id": "C000001",
                                                    "customer_account": "3100012345"},
                                headers=h.headers())
    assert again.status_code == 200 and again.json()["order_id"] == first["order_id"]
    keyed = await h.client.post("/v1/orders", json={"type": "complaint", "contact_number": "+86",
                                                    "idempotency_key": "k-1"},
                                headers=h.headers())
    assert keyed.status_code == 200 and keyed.json()["order_id"] == first["order_id"]
    other_type = await h.new_order(type="complaint")
    assert other_type["order_id"] != first["order_id"]

    # Racing twins: one is created, the others get it back.
    body = {"type": "repair", "call_id": "C000777", "contact_number": "+8613700000000",
            "idempotency_key": "race"}
    responses = await asyncio.gather(*(h.client.post("/v1/orders", json=body,
                                                     headers=h.headers()) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]
    assert len({r.json()["order_id"] for r in responses}) == 1
    listed = (await h.client.get("/v1/orders", params={"call_id": "C000777"},
                                 headers=h.headers())).json()
    assert len(listed) == 1
    await eventually(lambda: len(h.envelopes("workorder.ticket.created")) == 3)


async def test_illegal_transition_is_409_with_allowed_actions(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order()
    assert (await h.resolve(order["order_id"])).status_code == 200
    again = await h.resolve(order["order_id"])
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert (detail["state"], detail["action"], detail["allowed"]) == ("resolved", "resolve",
                                                                      ["start_callback"])
    assert (await h.resolve("WO-NOPE")).status_code == 404
    refused = await h.client.post(f"/v1/orders/{order['order_id']}/resolve",
                                  json={"reply": "x"}, headers=h.headers("supervisor"))
    assert refused.status_code == 403
    empty = await h.resolve(order["order_id"], reply="  ")
    assert empty.status_code == 422
    callbacks = (await h.client.get("/v1/callbacks", params={"order_id": order["order_id"]},
                                    headers=h.headers())).json()
    assert len(callbacks) == 1


# -- the callback obligation -----------------------------------------------------------------

async def test_resolve_then_one_callback_then_satisfied_closes(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order()
    order_id = order["order_id"]
    resolved = await h.resolve(order_id)
    assert resolved.status_code == 200
    detail = resolved.json()
    assert (detail["state"], detail["resolution"], detail["reply"]) == ("resolved", 1,
                                                                        "line repaired")
    [callback] = detail["callbacks"]
    assert callback["state"] == "pending"
    await asyncio.sleep(0.15)
    assert h.events("workorder.callback.requested") == []  # not due for 30 suite seconds

    h.clock.advance(30)
    [request] = await h.requests(1)
    assert (request["order_id"], request["attempt"], request["to_number"]) == (
        order_id, 1, "+8613800000001")
    assert request["context"] == {"purpose": "survey", "order_id": order_id,
                                  "callback_id": callback["callback_id"], "attempt": 1,
                                  "request_id": request["request_id"],
                                  "reported_call_id": "C000001"}
    [envelope] = h.envelopes("workorder.callback.requested")
    assert envelope.subject == f"callback/{callback['callback_id']}"
    assert envelope.correlationid == "C000001"
    assert await h.order_state(order_id) == "callback_pending"

    await h.answer(request, "satisfied")
    detail = await h.order(order_id)
    assert (detail["state"], detail["satisfaction"]) == ("closed", "satisfied")
    assert [(s["from_state"], s["to_state"]) for s in detail["history"]] == [
        (None, "created"), ("created", "resolved"), ("resolved", "callback_pending"),
        ("callback_pending", "closed")]
    assert detail["history"][1]["actor"] == "A001"
    [done] = detail["callbacks"]
    assert (done["state"], done["satisfaction"], done["attempts"]) == ("completed", "satisfied", 1)
    assert done["attempt_log"][0]["call_id"] == f"OUT-{done['callback_id']}-1"
    assert done["attempt_log"][0]["result"] == "answered"

    await eventually(lambda: h.events("workorder.ticket.closed"))
    assert h.events("workorder.ticket.closed") == [{"order_id": order_id,
                                                    "satisfaction": "satisfied"}]
    await eventually(lambda: h.events("workorder.callback.completed"))
    assert h.events("workorder.callback.completed")[0]["outcome"] == "satisfied"
    for event_type in ("workorder.ticket.created", "workorder.ticket.resolved",
                       "workorder.ticket.closed"):
        [ticket] = h.envelopes(event_type)
        assert (ticket.subject, ticket.correlationid) == (f"ticket/{order_id}", "C000001")

    # Much later, still exactly one request: the obligation is met.
    h.clock.advance(3600)
    await asyncio.sleep(0.15)
    assert len(h.events("workorder.callback.requested")) == 1

    summary = (await h.client.get("/v1/reports/summary", headers=h.headers("supervisor"))).json()
    assert summary["orders"]["by_type"] == {"repair": {"closed": 1}}
    assert (summary["resolved"], summary["closed"], summary["reopened"]) == (1, 1, 0)
    assert summary["callbacks"] == {"total": 1, "completed": 1, "unreachable": 0, "pending": 0}
    assert summary["callback_completion_rate"] == 1.0
    assert summary["satisfaction"] == {"satisfied": 1, "neutral": 0, "dissatisfied": 0}


async def test_dissatisfied_reopens_and_a_new_resolution_gets_a_new_callback(
        harness: Harness) -> None:
    h = harness
    order, request = await resolved_and_dialled(h)
    order_id = order["order_id"]
    await h.answer(request, "dissatisfied")
    detail = await h.order(order_id)
    assert (detail["state"], detail["satisfaction"]) == ("reopened", "dissatisfied")
    assert detail["history"][-1]["reason"] == "dissatisfied"
    await eventually(lambda: h.events("workorder.ticket.reopened"))
    assert h.events("workorder.ticket.reopened") == [{"order_id": order_id,
                                                      "reason": "dissatisfied"}]

    again = await h.resolve(order_id, "replaced the meter")
    assert again.status_code == 200 and again.json()["resolution"] == 2
    h.clock.advance(30)
    requests = await h.requests(2)
    assert requests[1]["callback_id"] != requests[0]["callback_id"]
    assert requests[1]["attempt"] == 1
    await h.answer(requests[1], "neutral")
    assert await h.order_state(order_id) == "closed"

    callbacks = (await h.client.get("/v1/callbacks", params={"order_id": order_id},
                                    headers=h.headers())).json()
    assert [(c["resolution"], c["state"], c["outcome"]) for c in callbacks] == [
        (1, "completed", "dissatisfied"), (2, "completed", "neutral")]
    summary = (await h.client.get("/v1/reports/summary", headers=h.headers("integrator"))).json()
    assert summary["reopened"] == 1 and summary["callback_completion_rate"] == 1.0


async def test_no_answer_on_the_first_attempt_then_answered_on_the_second(
        harness: Harness) -> None:
    h = harness
    order, first = await resolved_and_dialled(h)
    await h.no_answer(first)
    [callback] = (await h.order(order["order_id"]))["callbacks"]
    assert (callback["state"], callback["attempts"], callback["last_failure"]) == (
        "pending", 1, "no_answer")
    await asyncio.sleep(0.1)
    assert len(h.events("workorder.callback.requested")) == 1  # the retry waits 120 s

    h.clock.advance(120)
    second = (await h.requests(2))[1]
    assert second["attempt"] == 2 and second["request_id"] != first["request_id"]
    assert second["callback_id"] == first["callback_id"]
    # A late release of the first attempt is stale and changes nothing.
    await h.released(first, f"OUT-{first['callback_id']}-1", "no_answer")
    await h.answer(second, "satisfied")
    detail = await h.order(order["order_id"])
    assert detail["state"] == "closed"
    [callback] = detail["callbacks"]
    assert (callback["state"], callback["attempts"]) == ("completed", 2)
    assert [a["result"] for a in callback["attempt_log"]] == ["no_answer", "answered"]


async def test_never_answered_is_unreachable_and_reopens(harness: Harness) -> None:
    h = harness
    order, first = await resolved_and_dialled(h)
    order_id = order["order_id"]
    await h.no_answer(first)                   # attempt 1: rings out
    h.clock.advance(120)
    second = (await h.requests(2))[1]
    await h.origination_failed(second)         # attempt 2: CTI could not place it
    h.clock.advance(120)
    third = (await h.requests(3))[2]
    await h.originated(third)                  # attempt 3: nothing heard back at all
    await asyncio.sleep(0.1)
    assert await h.order_state(order_id) == "callback_pending"
    h.clock.advance(600)
    await eventually(lambda: h.events("workorder.callback.completed"))

    assert h.events("workorder.callback.completed") == [{
        "callback_id": first["callback_id"], "order_id": order_id, "outcome": "unreachable",
        "attempts": 3}]
    detail = await h.order(order_id)
    assert detail["state"] == "reopened"
    assert detail["history"][-1]["reason"] == "callback_unreachable"
    [callback] = detail["callbacks"]
    assert [a["result"] for a in callback["attempt_log"]] == [
        "no_answer", "origination_failed:trunk_busy", "timeout"]
    await eventually(lambda: h.events("workorder.ticket.reopened"))
    assert h.events("workorder.ticket.reopened")[0]["reason"] == "callback_unreachable"
    assert len(h.events("workorder.callback.requested")) == 3
    # A survey arriving after the end is stale: logged and ignored, not dead-lettered.
    await h.surveyed(third, "OUT-late", "satisfied")
    assert await h.order_state(order_id) == "reopened"

    summary = (await h.client.get("/v1/reports/summary", headers=h.headers("service"))).json()
    assert summary["callbacks"]["unreachable"] == 1
    assert summary["callback_completion_rate"] == 1.0  # escalated counts as done


async def test_survey_without_an_answer_counts_as_a_failed_attempt(harness: Harness) -> None:
    h = harness
    order, first = await resolved_and_dialled(h)
    await h.answer(first, None)  # survey, then the release of the same call: one failure
    [callback] = (await h.order(order["order_id"]))["callbacks"]
    assert (callback["state"], callback["last_failure"]) == ("pending", "no_answer_given")
    h.clock.advance(120)
    second = (await h.requests(2))[1]
    await h.answer(second, "satisfied")
    assert await h.order_state(order["order_id"]) == "closed"


async def test_unrelated_and_unknown_events_are_ignored(harness: Harness) -> None:
    h = harness
    await h.play("cti.call.released", {
        "call_id": "C9", "direction": "inbound", "cause": "caller_hangup", "state": "in_ivr",
        "from_number": "+861", "to_number": "95598", "released_at": h.clock.now().isoformat()},
        "C9")
    ghost = {"request_id": "nope", "callback_id": "CBX", "attempt": 1, "to_number": "+861",
             "context": {"callback_id": "CBX", "attempt": 1, "request_id": "nope"}}
    await h.originated(ghost)
    await h.origination_failed(ghost)
    await h.surveyed(ghost, "C10", "satisfied")
    await h.released(ghost, "C10", "no_answer")
    assert h.dead_letters() == []


async def test_recording_is_linked_to_the_order_of_its_call(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    await h.play("recording.file.stored", {
        "recording_id": "R1", "call_id": "C000001", "duration_seconds": 185.0,
        "sha256": "0" * 64, "size_bytes": 2_960_044}, "C000001")
    order = await h.new_order()
    assert (await h.order(order["order_id"]))["recording_ids"] == ["R1"]


async def test_order_listing_filters(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    a = await h.new_order()
    b = await h.new_order(type="complaint", call_id="C000002")
    await h.resolve(b["order_id"])

    async def listed(**params: Any) -> list[str]:
        response = await h.client.get("/v1/orders", params=params, headers=h.headers())
        assert response.status_code == 200, response.text
        return sorted(o["order_id"] for o in response.json())

    assert await listed(state="resolved") == [b["order_id"]]
    assert await listed(call_id="C000001") == [a["order_id"]]
    assert await listed(customer_account="3100012345") == sorted([a["order_id"], b["order_id"]])
    assert await listed(type="complaint") == [b["order_id"]]
    assert await listed(open="false") == []
    bad = await h.client.get("/v1/orders", params={"state": "lost"}, headers=h.headers())
    assert bad.status_code == 422
    pending = (await h.client.get("/v1/callbacks", params={"state": "pending"},
                                  headers=h.headers())).json()
    assert [c["order_id"] for c in pending] == [b["order_id"]]


async def test_orders_are_read_by_the_agent_who_took_them_and_their_supervisors(
        harness: Harness) -> None:
    """Data scopes on orders: an agent reads the orders it took or owns; a team's supervisor
    the orders its team's agents took (the team rides in the taking agent's token); a
    department's supervisor those its agents took and those dispatched to it; a refusal is
    403 with the reason, and a listing leaves the others out."""
    h = harness
    await h.put_customer()

    async def take(agent: str, team: str, department: str, call_id: str) -> str:
        token = h.auth.mint(agent, ["agent"], team=team, department=department)
        response = await h.client.post("/v1/orders", headers={"Authorization": f"Bearer {token}"},
                                       json={"type": "complaint", "call_id": call_id,
                                             "customer_account": "3100012345",
                                             "category": "service_attitude",
                                             "description": "rude meter reader"})
        assert response.status_code == 201, response.text
        assert (response.json()["team"], response.json()["agent_department"]) == (team, department)
        return str(response.json()["order_id"])

    t1 = await take("A101", "T1", "D1", "C-T1")
    t2 = await take("A201", "T2", "D1", "C-T2")
    t3 = await take("A301", "T3", "D2", "C-T3")
    dispatched = await h.client.post(f"/v1/orders/{t3}/dispatch", headers=h.headers("service"),
                                     json={"department": "D1", "reason": "theirs"})
    assert dispatched.status_code == 200, dispatched.text
    readers = {
        "A101": h.auth.mint("A101", ["agent"]),
        "team T1": h.auth.mint("S1", ["supervisor"], team="T1"),
        "department D1": h.auth.mint("S2", ["supervisor"], department="D1"),
        "department D2": h.auth.mint("S3", ["supervisor"], department="D2"),
        "floor": h.auth.mint("S4", ["supervisor"]),
    }
    expected = {"A101": {t1}, "team T1": {t1}, "department D1": {t1, t2, t3},
                "department D2": {t3}, "floor": {t1, t2, t3}}
    for name, token in readers.items():
        auth = {"Authorization": f"Bearer {token}"}
        listed = (await h.client.get("/v1/orders", headers=auth)).json()
        assert {o["order_id"] for o in listed} & {t1, t2, t3} == expected[name], name
        open_cases = (await h.client.get("/v1/views/open", headers=auth)).json()
        assert {o["order_id"] for o in open_cases} & {t1, t2, t3} == expected[name], name
        for order_id in (t1, t2, t3):
            read = await h.client.get(f"/v1/orders/{order_id}", headers=auth)
            assert read.status_code == (200 if order_id in expected[name] else 403), (
                name, order_id, read.text)
            if read.status_code == 403:
                assert f"order {order_id!r} is not one of them" in read.json()["detail"]["message"]


async def test_migration_matches_the_table_definitions(harness: Harness) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from services.workorder.db import metadata

    messaging = {"outbox", "inbox", "event_sequences"}

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={
            "include_schemas": True,
            "include_name": lambda name, kind, _parent: kind != "schema" or name == "workorder",
        })
        diffs = compare_metadata(context, metadata)

        def table_of(diff: Any) -> str | None:
            item = diff[0] if isinstance(diff, list) else diff
            for part in item[1:]:
                name = getattr(part, "name", None) if not hasattr(part, "table") else part.table.name
                if isinstance(name, str):
                    return name
            return None

        return [d for d in diffs if table_of(d) not in messaging | {"alembic_version"}]

    engine = harness.service.engine
    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []
