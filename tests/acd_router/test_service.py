"""acd_router end to end on the in-memory bus: events and REST in, events and state out."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from shared.auth import Auth
from shared.settings import CommonSettings
from tests.acd_router.harness import acd_running
from tests.conftest import bearer, eventually


async def test_call_is_queued_reserved_connected_wrapped_up(common: CommonSettings,
                                                            auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        logged_in = await acd.login("A001", ready=False)
        assert logged_in["state"] == "not_ready"
        assert logged_in["device"] == "agent:A001" and logged_in["team"] == "T1"
        assert (await acd.set_state("A001", "ready"))["state"] == "ready"

        await acd.route_call("C1")
        queued = await acd.wait_for("acd.call.queued", call_id="C1")
        assert queued.data["position"] == 1 and queued.data["queue"] == "repair"
        assert queued.data["estimated_wait_seconds"] == 0.0
        assert queued.subject == "call/C1" and queued.correlationid == "C1"
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        assert reserved.data["agent_id"] == "A001" and reserved.data["device"] == "agent:A001"
        assert datetime.fromisoformat(reserved.data["expires_at"]) == (
            acd.clock.now() + timedelta(seconds=30))
        assert (await acd.agent("A001"))["state"] == "reserved"

        await acd.publish("cti.agent.alerting", {
            "call_id": "C1", "agent_id": "A001",
            "reservation_id": reserved.data["reservation_id"]})
        acd.clock.advance(4)
        await acd.connected(reserved)
        on_call = await acd.agent("A001")
        assert on_call["state"] == "on_call" and on_call["call_id"] == "C1"
        assert on_call["calls_handled_today"] == 1
        call = await acd.get("/v1/calls/C1")
        assert call["entry"]["state"] == "answered" and call["entry"]["waited_seconds"] == 4.0
        assert call["decisions"][0]["outcome"] == "connected"
        assert call["decisions"][0]["alerting_at"] is not None
        assert call["entry"]["customer"]["account"] == "31000C1"

        acd.clock.advance(120)
        await acd.released("C1", state="connected", agent_id="A001")
        wrap = await acd.agent("A001")
        assert wrap["state"] == "wrap_up"
        assert wrap["wrapup_deadline"] is not None

        assert (await acd.set_state("A001", "ready"))["state"] == "ready"
        changes = await acd.wait_for("acd.agent.state_changed", 6, agent_id="A001")
        history = [(e.data["previous"], e.data["state"])
                   for e in acd.emitted("acd.agent.state_changed", agent_id="A001")]
        assert history == [("logged_out", "not_ready"), ("not_ready", "ready"),
                           ("ready", "reserved"), ("reserved", "on_call"),
                           ("on_call", "wrap_up"), ("wrap_up", "ready")]
        assert changes.subject == "agent/A001"
        assert [e.sequence for e in acd.emitted("acd.agent.state_changed")] == [1, 2, 3, 4, 5, 6]
        queue = await acd.get("/v1/queues/repair")
        assert queue["waiting"] == 0 and queue["agents_ready"] == 1 and queue["entries"] == []


async def test_wrap_up_ends_by_itself_and_pending_logout_applies(common: CommonSettings,
                                                                 auth: Auth) -> None:
    async with acd_running(common, auth, wrapup_seconds=10) as acd:
        await acd.login("A001")
        await acd.login("A002", ready=False)
        await acd.route_call("C1")
        first = await acd.wait_for("acd.agent.reserved", call_id="C1")
        await acd.connected(first)
        await acd.set_state("A002", "ready")
        await acd.route_call("C2")
        second = await acd.wait_for("acd.agent.reserved", call_id="C2")
        assert second.data["agent_id"] == "A002"
        await acd.connected(second)

        pending = await acd.set_state("A002", "logged_out")
        assert pending["state"] == "on_call"
        assert pending["pending"] == {"state": "logged_out", "reason": None}

        await acd.released("C1", state="connected", agent_id="A001")
        await acd.released("C2", state="connected", agent_id="A002")
        acd.clock.advance(9)
        await asyncio.sleep(0.2)
        assert (await acd.agent("A001"))["state"] == "wrap_up"
        acd.clock.advance(1)
        await acd.agent_becomes("A001", "ready")
        gone = await acd.agent_becomes("A002", "logged_out")
        assert gone["pending"] is None


async def test_no_wrap_up_frees_the_agent_with_the_release(common: CommonSettings,
                                                            auth: Auth) -> None:
    """No wrap-up configured: the release itself makes the agent ready and routes the next
    waiting call to them (not the next deadline pass, which would add to every call's
    holding time)."""
    async with acd_running(common, auth, wrapup_seconds=0) as acd:
        await acd.login("A001")
        await acd.route_call("C1")
        first = await acd.wait_for("acd.agent.reserved", call_id="C1")
        await acd.connected(first)
        await acd.route_call("C2")
        await acd.wait_for("acd.call.queued", call_id="C2")
        await acd.released("C1", state="connected", agent_id="A001")
        # publish returns once the event is handled: no time for a deadline pass to run.
        assert (await acd.agent("A001"))["state"] == "reserved"
        second = await acd.wait_for("acd.agent.reserved", call_id="C2")
        assert second.data["agent_id"] == "A001"

        def last_changes() -> list[tuple[str, str]]:
            return [(e.data["previous"], e.data["state"])
                    for e in acd.emitted("acd.agent.state_changed", agent_id="A001")][-3:]

        await eventually(lambda: last_changes() == [("on_call", "wrap_up"),
                                                    ("wrap_up", "ready"), ("ready", "reserved")])


async def test_abandon_while_waiting(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001", ready=False)
        await acd.route_call("C1")
        queued = await acd.wait_for("acd.call.queued", call_id="C1")
        assert queued.data["estimated_wait_seconds"] == 180.0  # staffed, nobody ready
        acd.clock.advance(42)
        waiting = await acd.get("/v1/queues/repair")
        assert waiting["waiting"] == 1 and waiting["longest_wait_seconds"] == 42.0
        assert [e["call_id"] for e in waiting["entries"]] == ["C1"]

        await acd.released("C1", state="queued")
        abandoned = await acd.wait_for("acd.call.abandoned", call_id="C1")
        assert abandoned.data == {"call_id": "C1", "queue": "repair", "waited_seconds": 42.0}
        assert (await acd.get("/v1/calls/C1"))["entry"]["state"] == "abandoned"
        assert (await acd.get("/v1/queues/repair"))["waiting"] == 0

        # The agent becoming ready finds nothing to take.
        await acd.set_state("A001", "ready")
        await asyncio.sleep(0.1)
        assert acd.emitted("acd.agent.reserved") == []


async def test_ring_failure_puts_the_call_back_first_in_line(common: CommonSettings,
                                                             auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001")
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        acd.clock.advance(5)
        await acd.route_call("C2")
        await acd.wait_for("acd.call.queued", call_id="C2")

        await acd.ring_failed(reserved, "no_answer")
        agent = await acd.agent("A001")
        assert (agent["state"], agent["reason"]) == ("not_ready", "ring_no_answer")
        queue = await acd.get("/v1/queues/repair")
        assert [e["call_id"] for e in queue["entries"]] == ["C1", "C2"]
        assert queue["entries"][0]["ring_failures"] == 1

        await acd.login("A002")
        again = await acd.wait_for("acd.agent.reserved", call_id="C1", agent_id="A002")
        assert again.data["reservation_id"] != reserved.data["reservation_id"]
        # The stale ring failure redelivered under a new id changes nothing.
        await acd.ring_failed(reserved, "no_answer")
        assert (await acd.agent("A002"))["state"] == "reserved"
        decisions = (await acd.get("/v1/calls/C1"))["decisions"]
        assert [(d["agent_id"], d["outcome"]) for d in decisions] == [
            ("A001", "ring_failed"), ("A002", "pending")]


async def test_configured_auto_ready_returns_an_agent_after_a_ring_no_answer(
        common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth, ring_no_answer_ready_seconds=30) as acd:
        await acd.login("A001")
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        await acd.ring_failed(reserved, "no_answer")
        assert (await acd.agent("A001"))["state"] == "not_ready"
        acd.clock.advance(29)
        await asyncio.sleep(0.2)
        assert (await acd.agent("A001"))["state"] == "not_ready"
        acd.clock.advance(1)
        # Ready again by the ACD's own timer, it takes the call that waited meanwhile.
        again = await acd.wait_for("acd.agent.reserved", call_id="C1", count=2)
        assert again.data["agent_id"] == "A001"
        changes = [(e.data["previous"], e.data["state"], e.data["reason"])
                   for e in acd.emitted("acd.agent.state_changed", agent_id="A001")]
        assert ("not_ready", "ready", None) in changes


async def test_caller_gone_while_ringing_frees_the_agent(common: CommonSettings,
                                                         auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001")
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        await acd.ring_failed(reserved, "caller_gone")
        await acd.released("C1", state="alerting")
        assert (await acd.agent("A001"))["state"] == "ready"
        await acd.wait_for("acd.call.abandoned", call_id="C1")
        assert len(acd.emitted("acd.call.abandoned")) == 1

        # A release while ringing (no ring failure first) does the same.
        await acd.route_call("C2")
        await acd.wait_for("acd.agent.reserved", call_id="C2")
        await acd.released("C2", state="alerting")
        assert (await acd.agent("A001"))["state"] == "ready"
        await acd.wait_for("acd.call.abandoned", call_id="C2")
        decisions = (await acd.get("/v1/calls/C2"))["decisions"]
        assert decisions[0]["outcome"] == "cancelled"
        assert decisions[0]["outcome_reason"] == "caller_hangup"


async def test_reservation_expires(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth, reservation_timeout_seconds=15) as acd:
        await acd.login("A001")
        await acd.login("A002", ready=False)
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        acd.clock.advance(15)
        expired = await acd.wait_for("acd.reservation.expired", call_id="C1")
        assert expired.data["reservation_id"] == reserved.data["reservation_id"]
        assert expired.subject == "call/C1"
        agent = await acd.agent_becomes("A001", "not_ready")
        assert agent["reason"] == "ring_no_answer"
        assert (await acd.get("/v1/calls/C1"))["entry"]["state"] == "waiting"
        # A connect for the withdrawn reservation is stale.
        await acd.connected(reserved)
        assert (await acd.get("/v1/calls/C1"))["entry"]["state"] == "waiting"

        await acd.set_state("A002", "ready")
        await acd.wait_for("acd.agent.reserved", call_id="C1", agent_id="A002")


async def test_vip_first_and_longest_idle(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001", ready=False)
        await acd.login("A002", ready=False)
        await acd.route_call("C1")
        acd.clock.advance(1)
        await acd.route_call("C2")
        acd.clock.advance(1)
        await acd.route_call("V1", priority=10, tier="vip")
        vip = await acd.wait_for("acd.call.queued", call_id="V1")
        assert vip.data["position"] == 1
        assert (await acd.wait_for("acd.call.queued", call_id="C2")).data["position"] == 2

        await acd.set_state("A002", "ready")
        assert (await acd.wait_for("acd.agent.reserved")).data["call_id"] == "V1"
        await acd.set_state("A001", "ready")
        assert (await acd.wait_for("acd.agent.reserved", 2)).data["call_id"] == "C1"

        # Both free again: A002 has been idle longer and takes the next call.
        await acd.released("C2", state="queued")
        for envelope in acd.emitted("acd.agent.reserved"):
            await acd.released(envelope.data["call_id"], state="alerting")
        acd.clock.advance(3)
        await acd.set_state("A001", "not_ready", "training")
        await acd.set_state("A001", "ready")
        acd.clock.advance(3)
        await acd.route_call("C3")
        assert (await acd.wait_for("acd.agent.reserved", call_id="C3")).data["agent_id"] == "A002"


async def test_skills_route_to_the_right_queue(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001", {"billing": 6})
        await acd.route_call("C1", queue="repair")
        await acd.wait_for("acd.call.queued", call_id="C1")
        assert acd.emitted("acd.agent.reserved") == []
        await acd.route_call("C2", queue="billing")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C2")
        assert reserved.data["queue"] == "billing"
        queues = {q["queue"]: q for q in await acd.get("/v1/queues")}
        assert queues["repair"]["waiting"] == 1 and queues["repair"]["agents_staffed"] == 0
        assert queues["billing"]["reserved"] == 1 and queues["billing"]["agents_staffed"] == 1
        listed = await acd.get("/v1/agents?skill=billing")
        assert [a["agent_id"] for a in listed] == ["A001"]
        assert await acd.get("/v1/agents?state=ready") == []


async def test_concurrent_requests_never_double_reserve(common: CommonSettings,
                                                        auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        agents = [f"A{n:03d}" for n in range(6)]
        for agent_id in agents:
            await acd.login(agent_id, ready=False)
        calls = [f"C{n}" for n in range(9)]
        await asyncio.gather(*(acd.set_state(a, "ready") for a in agents),
                             *(acd.route_call(c) for c in calls))
        await acd.wait_for("acd.agent.reserved", len(agents))
        await asyncio.sleep(0.2)
        reserved = acd.emitted("acd.agent.reserved")
        assert len(reserved) == len(agents)
        assert sorted(e.data["agent_id"] for e in reserved) == agents
        assert len({e.data["call_id"] for e in reserved}) == len(agents)
        assert (await acd.get("/v1/queues/repair"))["waiting"] == len(calls) - len(agents)


async def test_stale_and_unknown_events_are_ignored(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001")
        # Released before ACD heard of it: the late routing request must not queue it.
        await acd.released("C9", state="in_ivr")
        await acd.route_call("C9")
        await acd.get("/v1/calls/C9", expect=404)
        # Not a call ACD routed (an outbound callback).
        await acd.publish("cti.call.connected", {
            "call_id": "OUT1", "direction": "outbound", "agent_id": "A001",
            "from_number": "95598", "to_number": "+86138", "connected_at":
                acd.clock.now().isoformat()})
        await acd.publish("ivr.session.completed", {
            "call_id": "C8", "session_id": "S8", "outcome": "self_served"})
        # Routing the same call twice queues it once.
        await acd.route_call("C1")
        duplicate = await acd.route_call("C1")
        await acd.bus.publish(duplicate)
        await acd.wait_for("acd.agent.reserved", call_id="C1")
        await asyncio.sleep(0.1)
        assert len(acd.emitted("acd.call.queued")) == 1
        assert (await acd.agent("A001"))["state"] == "reserved"


async def test_not_found_conflict_and_validation(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        client, headers = acd.client, acd.headers_of("A001")
        missing = await client.post("/v1/agents/NOBODY/state", json={"state": "ready"},
                                    headers=acd.headers_of("NOBODY"))
        assert missing.status_code == 404
        assert missing.json()["detail"]["entity"] == "agent"
        assert missing.json()["detail"]["id"] == "NOBODY"
        for path, entity in (("/v1/agents/NOBODY", "agent"), ("/v1/queues/nosuch", "queue"),
                             ("/v1/calls/C404", "call")):
            body = await acd.get(path, expect=404)
            assert body["detail"]["entity"] == entity and "not found" in body["detail"]["message"]

        await acd.login("A001", ready=False)
        again = await client.post("/v1/agents/A001/login", json={"skills": {"repair": 8}},
                                  headers=headers)
        assert again.status_code == 409
        assert again.json()["detail"]["state"] == "not_ready"
        assert again.json()["detail"]["allowed"] == ["logout", "not_ready", "ready"]
        await acd.set_state("A001", "logged_out")
        conflict = await acd.set_state("A001", "ready", expect=409)
        assert conflict["detail"]["state"] == "logged_out"
        assert conflict["detail"]["allowed"] == ["login"]

        for body, field in (
            ({"skills": {"repair": 11}}, "skills"),
            ({"skills": {"repair": "8"}}, "skills"),
            ({"skills": {"bad skill": 3}}, "skills"),
            ({"skills": {"repair": 3}, "extra": 1}, "extra"),
            ({}, "skills"),
        ):
            response = await client.post("/v1/agents/A001/login", json=body, headers=headers)
            assert response.status_code == 422, body
            assert response.json()["detail"][0]["loc"][:2] == ["body", field]
        response = await client.post("/v1/agents/A001/state", json={"state": "busy"},
                                     headers=headers)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "state"]


async def test_scopes(common: CommonSettings, auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        client = acd.client
        assert (await client.get("/v1/agents")).status_code == 401
        for scope in ("agent", "supervisor", "service", "integrator"):
            response = await client.get("/v1/queues", headers=bearer(auth, scope))
            assert response.status_code == 200, scope
        assert (await client.get("/v1/agents", headers=bearer(auth, "switch"))).status_code == 403
        login = await client.post("/v1/agents/A001/login", json={"skills": {"repair": 1}},
                                  headers=bearer(auth, "integrator"))
        assert login.status_code == 403
        login = await client.post("/v1/agents/A001/login", json={"skills": {"repair": 1}},
                                  headers=bearer(auth, "supervisor"))
        assert login.status_code == 200


async def test_an_agent_acts_only_for_itself(common: CommonSettings, auth: Auth) -> None:
    """H1 of the security review: an agent token drives no other agent, and the device its
    calls ring on is set by a supervisor, not by the agent's own login."""
    async with acd_running(common, auth) as acd:
        client, colleague = acd.client, acd.headers_of("A002")
        await acd.login("A001", ready=False)
        for path, body in (("login", {"skills": {"repair": 10}}), ("state", {"state": "ready"}),
                           ("next-state", {"state": "not_ready"}),
                           ("wrapup/extend", {"seconds": 30})):
            refused = await client.post(f"/v1/agents/A001/{path}", json=body, headers=colleague)
            assert refused.status_code == 403, (path, refused.text)
            assert "A002" in refused.text and "A001" in refused.text
        assert (await acd.agent("A001"))["state"] == "not_ready"
        await acd.set_state("A001", "logged_out")

        # The agent's own login keeps the device on record and may repeat it, not change it.
        own = acd.headers_of("A001")
        moved = await client.post("/v1/agents/A001/login", headers=own, json={
            "skills": {"repair": 8}, "device": "+19005550100"})
        assert moved.status_code == 403 and moved.json()["detail"]["error"] == "forbidden"
        same = await client.post("/v1/agents/A001/login", headers=own, json={
            "skills": {"repair": 8}, "device": "agent:A001"})
        assert same.status_code == 200 and same.json()["device"] == "agent:A001"
        await acd.set_state("A001", "logged_out")
        supervisor = bearer(auth, "supervisor", subject="sup-1")
        placed = await client.post("/v1/agents/A001/login", headers=supervisor, json={
            "skills": {"repair": 8}, "device": "sip:a001@desk-12.example"})
        assert placed.status_code == 200 and placed.json()["device"] == "sip:a001@desk-12.example"
        await acd.set_state("A001", "logged_out")
        kept = await client.post("/v1/agents/A001/login", headers=own,
                                 json={"skills": {"repair": 8}})
        assert kept.status_code == 200 and kept.json()["device"] == "sip:a001@desk-12.example"

        # Devices are an endpoint, a SIP URI or a number; a login names at most 32 skills.
        for body in ({"skills": {"repair": 8}, "device": "agent:A001\u0000"},
                     {"skills": {"repair": 8}, "device": "javascript:alert(1)"},
                     {"skills": {f"s{n}": 1 for n in range(33)}}):
            bad = await client.post("/v1/agents/A003/login", headers=supervisor, json=body)
            assert bad.status_code == 422, body


async def test_an_integrator_sees_queue_entries_without_personal_data(
        common: CommonSettings, auth: Auth) -> None:
    """H6 of the security review: the caller's number and customer record are masked for an
    integrator unless its grants include personal data."""
    async with acd_running(common, auth) as acd:
        await acd.route_call("C1")
        plain = bearer(auth, "integrator")
        granted = {"Authorization": "Bearer " + auth.mint("bi", ["integrator"],
                                                          grants=("personal",))}
        masked = (await acd.client.get("/v1/calls/C1", headers=plain)).json()["entry"]
        assert (masked["from_number"], masked["customer"]) == ("+*********0001", None)
        [queued] = (await acd.client.get("/v1/queues/repair", headers=plain)).json()["entries"]
        assert queued["from_number"] == "+*********0001" and queued["customer"] is None
        full = (await acd.client.get("/v1/calls/C1", headers=granted)).json()["entry"]
        assert full["from_number"] == "+8613800000001" and full["customer"]["tier"] == "regular"
