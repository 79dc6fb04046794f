"""Cases through dispatch, SLA clocks firing, abandoned calls and the calling rules, against the
real database with the in-memory bus and a fake clock (2026-07-15 08:00 Asia/Shanghai)."""

from __future__ import annotations

from typing import Any

from tests.conftest import eventually
from tests.workorder.test_service import Harness, harness

__all__ = ["harness"]


async def post(h: Harness, path: str, body: dict[str, Any], *scopes: str) -> Any:
    return await h.client.post(path, json=body, headers=h.headers(*scopes))


async def test_dispatch_accept_on_site_resolve_with_audit_and_clocks(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order(description=None)
    oid = order["order_id"]
    missing = await post(h, f"/v1/orders/{oid}/dispatch", {"department": "crew-7"})
    assert missing.status_code == 422
    assert [e["loc"][1] for e in missing.json()["detail"]] == ["description"]
    done = await post(h, f"/v1/orders/{oid}/dispatch",
                      {"department": "crew-7", "description": "no power since noon"})
    assert done.status_code == 200 and done.json()["state"] == "dispatched"
    no_reason = await post(h, f"/v1/orders/{oid}/transfer", {"department": "crew-9"})
    assert no_reason.status_code == 422
    moved = await post(h, f"/v1/orders/{oid}/transfer",
                       {"department": "crew-9", "reason": "closer to the site"})
    assert moved.json()["department"] == "crew-9"
    early = await post(h, f"/v1/orders/{oid}/on-site", {})
    assert early.status_code == 409
    assert early.json()["detail"]["state"] == "dispatched"
    assert early.json()["detail"]["allowed"] == ["accept", "resolve", "transfer"]
    accepted = await post(h, f"/v1/orders/{oid}/accept", {"owner": "crew-9/lee"})
    assert accepted.json()["owner"] == "crew-9/lee"
    on_site = await post(h, f"/v1/orders/{oid}/on-site", {})
    assert on_site.json()["state"] == "on_site"
    resolved = (await h.resolve(oid)).json()
    assert resolved["state"] == "resolved" and len(resolved["callbacks"]) == 1
    steps = [(s["action"], s["to_state"]) for s in resolved["history"]]
    assert steps == [("create", "created"), ("dispatch", "dispatched"),
                     ("transfer", "dispatched"), ("accept", "accepted"),
                     ("arrive", "on_site"), ("resolve", "resolved")]
    clocks = {(c["name"], c["state"]) for c in resolved["clocks"]}
    assert ("arrival", "stopped") in clocks and ("resolution", "stopped") in clocks
    assert ("reply", "running") in clocks and ("callback", "running") in clocks
    types = {e.type for e in h.seen}
    assert {"workorder.ticket.dispatched", "workorder.ticket.transferred",
            "workorder.ticket.accepted", "workorder.ticket.arrived"} <= types


async def test_urged_at_80_percent_then_escalated_when_overdue(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order()
    h.clock.advance(12 * 60)  # 80 % of the 15 min dispatch budget
    urged = await eventually(lambda: [e for e in h.events("workorder.sla.urged")
                                      if e["clock"] == "dispatch"])
    assert urged[0]["order_id"] == order["order_id"]
    h.clock.advance(3 * 60)
    escalated = await eventually(lambda: [e for e in h.events("workorder.sla.escalated")
                                          if e["clock"] == "dispatch"])
    assert escalated[0]["level"] == 1 and escalated[0]["level_name"] == "team_lead"
    detail = await h.order(order["order_id"])
    dispatch = next(c for c in detail["clocks"] if c["name"] == "dispatch")
    assert dispatch["overdue"] and dispatch["level"] == 1 and dispatch["urged"]
    events = [x["event"] for x in detail["clock_history"] if x["name"] == "dispatch"]
    assert events == ["started", "urged", "escalated"]
    view = (await h.client.get("/v1/views/open", params={"customer_account": "3100012345"},
                               headers=h.headers())).json()
    assert view[0]["order_id"] == order["order_id"] and view[0]["clocks"]


async def test_pause_and_priority_keep_the_time_run(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order(type="complaint", call_id="C9", category="billing")
    oid = order["order_id"]
    h.clock.advance(600)
    paused = (await post(h, f"/v1/orders/{oid}/pause", {"reason": "customer away"})).json()
    assert all(c["state"] == "paused" for c in paused["clocks"])
    h.clock.advance(3600)
    resumed = (await post(h, f"/v1/orders/{oid}/resume", {})).json()
    assert all(c["elapsed_seconds"] == 600 for c in resumed["clocks"])
    urgent = (await post(h, f"/v1/orders/{oid}/priority", {"priority": "urgent"},
                         "supervisor")).json()
    dispatch = next(c for c in urgent["clocks"] if c["name"] == "dispatch")
    assert dispatch["budget_seconds"] == 7200 and dispatch["elapsed_seconds"] == 600
    assert [x["event"] for x in urgent["clock_history"] if x["name"] == "dispatch"] == [
        "started", "paused", "resumed", "rebudgeted"]


async def test_policy_change_keeps_elapsed_and_is_versioned(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order()
    h.clock.advance(300)
    policy = (await h.client.get("/v1/sla/policy", headers=h.headers())).json()
    document = policy["document"]
    document["types"]["repair"]["normal"]["dispatch"] = {"minutes": 30}
    bad = await h.client.put("/v1/sla/policy", json={**document, "urge_share": 2},
                             headers=h.headers("supervisor"))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "urge_share"]
    put = await h.client.put("/v1/sla/policy", json=document, headers=h.headers("supervisor"))
    assert put.status_code == 200 and put.json()["version"] == 2
    clock = next(c for c in (await h.order(order["order_id"]))["clocks"]
                 if c["name"] == "dispatch")
    assert (clock["budget_seconds"], clock["elapsed_seconds"], clock["policy_version"]) == \
        (1800, 300, 2)


async def test_a_policy_change_moves_open_cases_in_batches(harness: Harness) -> None:
    """Each batch is its own transaction; cases held by another worker wait for the next."""
    from services.workorder.handlers import admin

    h = harness
    await h.put_customer()
    ids = [(await h.new_order(call_id=f"C{n}", standalone=True))["order_id"] for n in range(5)]
    document = (await h.client.get("/v1/sla/policy", headers=h.headers())).json()["document"]
    service, rt = h.service, h.runtime
    async with service.transaction() as tx:
        assert await admin.new_policy(tx, document, "test") == 2
    moved = []
    while True:
        async with service.transaction() as tx:
            count = await admin.replan_batch(tx, rt, "test", 2)
        if not count:
            break
        moved.append(count)
    assert moved == [2, 2, 1]
    for order_id in ids:
        versions = {c["policy_version"] for c in (await h.order(order_id))["clocks"]
                    if c["state"] != "stopped"}
        assert versions == {2}


async def test_calendar_over_rest(harness: Harness) -> None:
    h = harness
    got = (await h.client.get("/v1/calendars/2026", headers=h.headers())).json()
    assert "2026-02-14" in got["workdays"] and not got["provisional"]
    bad = await h.client.put("/v1/calendars/2028", json={"workdays": ["2028-01-03"]},
                             headers=h.headers("supervisor"))
    assert bad.status_code == 422
    put = await h.client.put("/v1/calendars/2028", json={"holidays": ["2028-01-03"],
                                                         "source": "test"},
                             headers=h.headers("supervisor"))
    assert put.status_code == 200 and put.json()["holidays"] == ["2028-01-03"]


async def test_abandoned_call_owes_exactly_one_callback_request(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    await h.play("ivr.session.completed", {
        "call_id": "C77", "session_id": "S1", "outcome": "routed", "path": ["main", "1"],
        "route": {"queue": "repair", "skills": ["repair"], "from_number": "+8613800000001",
                  "customer": {"account": "3100012345"}}}, "C77")
    await h.play("acd.call.abandoned", {"call_id": "C77", "queue": "repair",
                                        "waited_seconds": 40}, "C77")
    await h.play("cti.call.released", {
        "call_id": "C77", "direction": "inbound", "cause": "caller_hangup", "state": "queued",
        "from_number": "+8613800000001", "to_number": "95598",
        "released_at": h.clock.now().isoformat()}, "C77")
    # An unidentified caller is nobody to owe a case to.
    await h.play("acd.call.abandoned", {"call_id": "C78", "queue": "repair",
                                        "waited_seconds": 40}, "C78")

    async def cases() -> list[dict[str, Any]]:
        return list((await h.client.get("/v1/orders", params={"type": "callback_request"},
                                        headers=h.headers("supervisor"))).json())

    found = await eventually(cases)
    await eventually(lambda: len(h.bus.queues["workorder.events"].dead_letters) == 0
                     and len(h.events("workorder.ticket.dispatched")) >= 1)
    found = await cases()
    assert len(found) == 1
    case = found[0]
    assert (case["abandoned_call_id"], case["call_id"], case["state"], case["department"]) == \
        ("C77", None, "dispatched", "callback_team")
    assert case["ivr_path"] == ["main", "1"]
    # The e2e's "no work orders on an abandoned call" still holds for ?call_id=.
    assert (await h.client.get("/v1/orders", params={"call_id": "C77"},
                               headers=h.headers("supervisor"))).json() == []
    # Resolving it (the agent called back) closes it without a survey.
    done = (await h.resolve(case["order_id"], "called back, fixed")).json()
    assert done["state"] == "closed" and done["callbacks"] == []


async def test_a_caller_cut_off_by_a_dead_switch_is_owed_a_callback(harness: Harness) -> None:
    """R9: the softswitch died mid-call; CTI released its calls with cause switch_lost. An
    identified caller, talking to an agent or still in the menu, is owed a callback case;
    an unidentified one is nobody to owe it to."""
    h = harness
    await h.put_customer()
    for call_id, state in (("C91", "connected"), ("C92", "in_ivr")):
        await h.play("ivr.session.completed", {
            "call_id": call_id, "session_id": f"S{call_id}", "outcome": "routed",
            "path": ["main", "1"], "route": {
                "queue": "repair", "skills": ["repair"], "from_number": "+8613800000001",
                "customer": {"account": "3100012345"}}}, call_id)
        await h.play("cti.call.released", {
            "call_id": call_id, "direction": "inbound", "cause": "switch_lost",
            "state": state, "from_number": "+8613800000001", "to_number": "95598",
            "agent_id": "A001" if state == "connected" else None,
            "released_at": h.clock.now().isoformat()}, call_id)
    await h.play("cti.call.released", {
        "call_id": "C93", "direction": "inbound", "cause": "switch_lost", "state": "queued",
        "from_number": "+8613900000093", "to_number": "95598",
        "released_at": h.clock.now().isoformat()}, "C93")

    async def cases() -> list[dict[str, Any]]:
        found = (await h.client.get("/v1/orders", params={"type": "callback_request"},
                                    headers=h.headers("supervisor"))).json()
        return list(found) if len(found) == 2 else []

    found = await eventually(cases)
    assert sorted(c["abandoned_call_id"] for c in found) == ["C91", "C92"]
    assert all("switch carrying it went down" in c["description"] for c in found)
    assert all(c["customer_account"] == "3100012345" for c in found)


async def test_a_callback_offer_owes_even_an_unknown_caller_a_callback(
        harness: Harness) -> None:
    """A queue limit with outcome callback: the caller's number is enough; a plain release
    owes nothing."""
    h = harness
    for call_id, number, outcome in (("C81", "+8613900000081", "callback"),
                                     ("C82", "+8613900000082", "release")):
        await h.play("ivr.session.completed", {
            "call_id": call_id, "session_id": f"S{call_id}", "outcome": "routed",
            "path": ["main", "1"], "route": {"queue": "repair", "skills": ["repair"],
                                             "from_number": number}}, call_id)
        await h.play("acd.call.rejected", {"call_id": call_id, "queue": "repair",
                                           "reason": "max_wait", "outcome": outcome,
                                           "announcement": "We will call you back."}, call_id)

    async def cases(call_id: str) -> list[dict[str, Any]]:
        return list((await h.client.get("/v1/orders", params={"abandoned_call_id": call_id},
                                        headers=h.headers("supervisor"))).json())

    [case] = await eventually(lambda: cases("C81"))
    assert (case["type"], case["contact_number"], case["customer_account"],
            case["department"]) == ("callback_request", "+8613900000081", None, "callback_team")
    assert "callback_offer:max_wait" in case["description"]
    await eventually(lambda: len(h.events("workorder.ticket.dispatched")) >= 1)
    assert await cases("C82") == []


async def test_denied_number_is_never_dialled(harness: Harness) -> None:
    h = harness
    order = await h.new_order(type="consultation", customer_account=None, call_id="C5",
                              contact_number="+14155550100")
    await h.resolve(order["order_id"])
    h.clock.advance(30)
    await eventually(lambda: h.events("workorder.callback.completed"))
    assert h.events("workorder.callback.requested") == []
    detail = await h.order(order["order_id"])
    assert detail["state"] == "reopened"
    assert detail["callbacks"][0]["last_failure"] == "denied:international"


async def test_a_premium_number_spelled_otherwise_is_not_dialled_either(
        harness: Harness) -> None:
    h = harness
    order = await h.new_order(type="consultation", customer_account=None, call_id="C6",
                              contact_number="+86(1900)1234567")
    await h.resolve(order["order_id"])
    h.clock.advance(30)
    await eventually(lambda: h.events("workorder.callback.completed"))
    assert h.events("workorder.callback.requested") == []
    detail = await h.order(order["order_id"])
    assert detail["callbacks"][0]["last_failure"] == "denied:premium"


async def test_no_dialling_outside_calling_hours(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    order = await h.new_order()
    h.clock.advance(13 * 3600 + 1)  # 21:00 local
    await h.resolve(order["order_id"])
    h.clock.advance(60)
    callback = await eventually(lambda: _deferred(h, order["order_id"]))
    assert callback["due_at"].startswith("2026-07-16T00:00:00")  # 08:00 local next day
    assert h.events("workorder.callback.requested") == []


async def _deferred(h: Harness, order_id: str) -> Any:
    callbacks = (await h.order(order_id))["callbacks"]
    return callbacks and callbacks[0]["due_at"].startswith("2026-07-16") and callbacks[0]


async def test_repeat_complaint_is_flagged_and_escalated(harness: Harness) -> None:
    h = harness
    await h.put_customer()
    await h.new_order(type="complaint", call_id="C1")
    second = await h.new_order(type="complaint", call_id="C2")
    detail = await h.order(second["order_id"])
    assert detail["flags"] == ["repeat_complaint"] and detail["priority"] == "urgent"
    flagged = await eventually(lambda: h.events("workorder.ticket.flagged"))
    assert flagged[0]["order_id"] == second["order_id"]
