"""Duplicate handling: repeat reports of one fault join its order, and every reporter is owed
a callback (service level, real PostgreSQL, in-memory bus)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import eventually
from tests.workorder.test_service import Harness, harness

__all__ = ["harness"]

NEIGHBOUR = {"name": "Li Si", "numbers": ["+8613800000009"], "area": "A-017", "tier": "regular",
             "flags": [], "balance": "3.00"}


async def report(h: Harness, call_id: str, *, status: int = 200,
                 **fields: Any) -> dict[str, Any]:
    body = {"type": "repair", "call_id": call_id, "description": "no power", **fields}
    response = await h.client.post("/v1/orders", json=body, headers=h.headers())
    assert response.status_code == status, response.text
    return dict(response.json())


async def post_outage(h: Harness, area: str = "A-017") -> dict[str, Any]:
    body = {"area": area, "type": "fault",
            "restore_eta": (h.clock.now() + timedelta(hours=2)).isoformat()}
    response = await h.client.post("/v1/outages", json=body, headers=h.headers("supervisor"))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_reports_in_an_outage_area_join_the_outage_order(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    await h.put_customer("3100099999", **NEIGHBOUR)
    outage = await post_outage(h)

    first = await report(h, "C1", status=201, customer_account="3100012345")
    assert first["outage_id"] == outage["outage_id"] and first["linked"] is None
    second = await report(h, "C2", customer_account="3100099999")
    third = await report(h, "C3", contact_number="+8613900000003", area="A-017")
    for joined in (second, third):
        assert joined["order_id"] == first["order_id"]
        assert joined["linked"]["reason"] == "outage"
    assert second["linked"]["call_id"] == "C2"

    # A retried request finds its place on the list; nothing is added twice.
    again = await report(h, "C2", customer_account="3100099999")
    assert again["linked"]["reporter_id"] == second["linked"]["reporter_id"]
    # Another area, or an agent who knows it is a different fault: a new order.
    elsewhere = await report(h, "C4", status=201, contact_number="+8613900000004", area="A-018")
    separate = await report(h, "C5", status=201, customer_account="3100012345", standalone=True)
    assert len({first["order_id"], elsewhere["order_id"], separate["order_id"]}) == 3

    listed = (await h.client.get("/v1/orders", params={"call_id": "C3"},
                                 headers=h.headers())).json()
    assert [o["order_id"] for o in listed] == [first["order_id"]]
    detail = await h.order(first["order_id"])
    assert sorted(r["call_id"] for r in detail["reporters"]) == ["C2", "C3"]
    assert [s["action"] for s in detail["history"]] == ["create", "link", "link"]
    outages = (await h.client.get("/v1/outages", headers=h.headers())).json()
    assert outages[0]["order_id"] == first["order_id"]
    await eventually(lambda: len(h.events("workorder.ticket.linked")) == 2)
    assert [e["reason"] for e in h.events("workorder.ticket.linked")] == ["outage", "outage"]

    # The crew restores power: the order is resolved and all three callers are owed a call.
    restored = await h.client.post(f"/v1/outages/{outage['outage_id']}/restore", json={},
                                   headers=h.headers("supervisor"))
    assert restored.status_code == 200, restored.text
    assert restored.json()["restored_at"] is not None and restored.json()["active"] is False
    detail = await h.order(first["order_id"])
    assert detail["state"] == "resolved" and detail["reply"].startswith("Power restored")
    reporter_ids = {r["reporter_id"] for r in detail["reporters"]}
    assert {c["reporter_id"] for c in detail["callbacks"]} == {None, *reporter_ids}
    # Paced: the order's own caller first, then each reporter 5 s after the one before.
    dues = sorted(datetime.fromisoformat(c["due_at"]) for c in detail["callbacks"])
    assert [(due - dues[0]).total_seconds() for due in dues] == [0, 5, 10]
    again = await h.client.post(f"/v1/outages/{outage['outage_id']}/restore", json={},
                                headers=h.headers("supervisor"))
    assert again.status_code == 200 and len((await h.order(first["order_id"]))["callbacks"]) == 3

    h.clock.advance(40)
    requests = await h.requests(3)
    assert sorted(r["to_number"] for r in requests) == ["+8613800000001", "+8613800000009",
                                                        "+8613900000003"]
    # After the outage its order takes no more reports; the area's other open repair does.
    later = await report(h, "C6", customer_account="3100099999")
    assert later["order_id"] == separate["order_id"]
    assert later["linked"]["reason"] == "open_order"

    by_number = {r["to_number"]: r for r in requests}
    await h.answer(by_number["+8613800000001"], "satisfied")
    await h.answer(by_number["+8613800000009"], "neutral")
    await asyncio.sleep(0.1)
    assert await h.order_state(first["order_id"]) == "callback_pending"  # one still to hear
    await h.answer(by_number["+8613900000003"], "satisfied")
    await eventually(lambda: h.events("workorder.ticket.closed"))
    detail = await h.order(first["order_id"])
    assert (detail["state"], detail["satisfaction"]) == ("closed", "neutral")
    summary = (await h.client.get("/v1/reports/summary", headers=h.headers("supervisor"))).json()
    assert summary["callbacks"]["completed"] == 3 and summary["callback_completion_rate"] == 1.0


async def test_an_open_repair_order_collects_reports_until_it_is_resolved(
        harness: Harness) -> None:
    h = harness
    await h.put_customer()
    await h.put_customer("3100099999", **NEIGHBOUR)
    first = await report(h, "C1", status=201, customer_account="3100012345")
    joined = await report(h, "C2", customer_account="3100099999")
    assert joined["order_id"] == first["order_id"] and joined["linked"]["reason"] == "open_order"
    # A complaint is the caller's own case, however many neighbours complain.
    complaint = await report(h, "C3", status=201, type="complaint",
                             customer_account="3100099999")
    assert complaint["order_id"] != first["order_id"]

    assert (await h.resolve(first["order_id"])).status_code == 200
    h.clock.advance(1)
    news = await report(h, "C4", status=201, customer_account="3100099999")
    assert news["order_id"] != first["order_id"]

    # One unhappy reporter reopens the shared order for another round of work.
    h.clock.advance(35)
    requests = await h.requests(2)
    by_number = {r["to_number"]: r for r in requests}
    await h.answer(by_number["+8613800000001"], "satisfied")
    await h.answer(by_number["+8613800000009"], "dissatisfied")
    await eventually(lambda: h.events("workorder.ticket.reopened"))
    detail = await h.order(first["order_id"])
    assert (detail["state"], detail["satisfaction"]) == ("reopened", "dissatisfied")
    # Reopened work is open again: a new report joins it. Its next resolution calls back the
    # unhappy reporter and the new one, not the caller who was satisfied with the first.
    third = await report(h, "C5", contact_number="+8613900000005", area="A-017")
    assert third["order_id"] == first["order_id"]
    assert (await h.resolve(first["order_id"])).status_code == 200
    detail = await h.order(first["order_id"])
    assert sorted(c["resolution"] for c in detail["callbacks"]) == [1, 1, 2, 2]
    second_round = {c["reporter_id"] for c in detail["callbacks"] if c["resolution"] == 2}
    assert second_round == {joined["linked"]["reporter_id"], third["linked"]["reporter_id"]}
    h.clock.advance(40)
    requests = await h.requests(4)
    by_number = {r["to_number"]: r for r in requests[2:]}
    assert set(by_number) == {"+8613800000009", "+8613900000005"}
    for request in by_number.values():
        await h.answer(request, "satisfied")
    await eventually(lambda: h.events("workorder.ticket.closed"))
    assert await h.order_state(first["order_id"]) == "closed"


async def test_concurrent_reports_of_one_fault_open_one_order(harness: Harness) -> None:
    h = harness
    await post_outage(h, "A-020")
    results = await asyncio.gather(*(
        h.client.post("/v1/orders", json={"type": "repair", "call_id": f"C{n}",
                                          "contact_number": f"+86139000001{n:02d}",
                                          "area": "A-020", "description": "no power"},
                      headers=h.headers()) for n in range(8)))
    assert sorted(r.status_code for r in results) == [200] * 7 + [201]
    assert len({r.json()["order_id"] for r in results}) == 1
