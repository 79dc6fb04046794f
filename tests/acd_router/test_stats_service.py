"""Statistics, wrap-up extension and supervisor overrides, end to end on a constructed
history with a fake clock: exact numbers."""

from __future__ import annotations

import asyncio
import json

import pytest

from shared.auth import Auth
from shared.settings import CommonSettings
from tests.acd_router.harness import Harness, acd_running
from tests.conftest import bearer


async def build_history(acd: Harness) -> None:
    """t = 0 .. 200 s: C1 answered after 10 s, handled 120 s; C2 rings out (ring no answer)
    and is abandoned after 8 s; C3 abandoned after 2 s (short); C4 answered after 30 s and
    still in wrap-up at the end."""
    await acd.login("A001")
    await acd.route_call("C1")
    c1 = await acd.wait_for("acd.agent.reserved", call_id="C1")
    acd.clock.advance(10)
    await acd.connected(c1)
    acd.clock.advance(100)
    await acd.released("C1", state="connected", agent_id="A001")
    await acd.agent_becomes("A001", "wrap_up")
    acd.clock.advance(20)
    await acd.set_state("A001", "ready")                       # t = 130
    await acd.route_call("C2")
    c2 = await acd.wait_for("acd.agent.reserved", call_id="C2")
    acd.clock.advance(5)
    await acd.ring_failed(c2)                                  # t = 135
    await acd.agent_becomes("A001", "not_ready")
    acd.clock.advance(3)
    await acd.released("C2", state="queued")                   # t = 138
    await acd.wait_for("acd.call.abandoned", call_id="C2")
    acd.clock.advance(2)
    await acd.route_call("C3")                                 # t = 140
    await acd.wait_for("acd.call.queued", call_id="C3")
    acd.clock.advance(2)
    await acd.released("C3", state="queued")                   # t = 142
    await acd.wait_for("acd.call.abandoned", call_id="C3")
    acd.clock.advance(8)
    await acd.set_state("A001", "ready")                       # t = 150
    await acd.route_call("C4")
    c4 = await acd.wait_for("acd.agent.reserved", call_id="C4")
    acd.clock.advance(30)
    await acd.connected(c4)                                    # t = 180
    acd.clock.advance(20)
    await acd.released("C4", state="connected", agent_id="A001")  # t = 200
    await acd.agent_becomes("A001", "wrap_up")


EXPECTED_REPAIR = {
    "queue": "repair", "offered": 4, "answered": 2, "abandoned": 2, "short_abandons": 1,
    "answered_within": 1, "service_level": 0.3333, "answer_rate": 0.5, "abandon_rate": 0.5,
    "asa": 20.0, "mean_wait": 12.5, "longest_wait": 30.0, "aht": 120.0,
    "ring_no_answer": 1, "waiting_now": 0, "longest_waiting_now": 0.0,
    # Queues do not own agents; occupancy is reported per agent and per skill.
    "occupancy": None,
}


async def test_queue_agent_and_skill_statistics(common: CommonSettings, auth: Auth) -> None:
    # C4 rings for 30 s: a longer reservation, so its expiry does not race the answer.
    async with acd_running(common, auth, wrapup_seconds=600,
                           reservation_timeout_seconds=60) as acd:
        await build_history(acd)
        body = await acd.get("/v1/stats/queues?window=15m")
        assert body["window"]["kind"] == "window" and body["threshold_seconds"] == 20.0
        repair = next(q for q in body["queues"] if q["queue"] == "repair")
        assert repair == EXPECTED_REPAIR
        billing = next(q for q in body["queues"] if q["queue"] == "billing")
        assert billing["offered"] == 0 and billing["service_level"] is None

        one = await acd.get("/v1/stats/queues/repair?interval=1h&start=2026-07-15T00:00:00Z")
        assert one["window"]["kind"] == "interval" and one["window"]["complete"] is False
        assert {k: one[k] for k in EXPECTED_REPAIR} == EXPECTED_REPAIR
        # A 30 s threshold counts C4 too: 2 / (4 - 1).
        wider = await acd.get("/v1/stats/queues/repair?threshold=30")
        assert wider["service_level"] == 0.6667
        # An interval with nothing in it.
        empty = await acd.get("/v1/stats/queues/repair?interval=15m"
                              "&start=2026-07-14T23:30:00Z")
        assert empty["offered"] == 0 and empty["window"]["complete"] is True

        agents = (await acd.get("/v1/stats/agents?window=1h"))["agents"]
        assert agents == [{
            "agent_id": "A001", "offered": 3, "answered": 2, "ring_no_answer": 1,
            "asa": 20.0, "aht": 120.0,
            # Busy 0-135 and 150-200 (reserved, on call, wrap-up) of 200 s logged in.
            "occupancy": 0.925, "busy_seconds": 185.0, "staffed_seconds": 200.0}]

        skills = (await acd.get("/v1/stats/skills?window=1h"))["skills"]
        skill = next(s for s in skills if s["skill"] == "repair")
        assert skill["offered"] == 4 and skill["service_level"] == 0.3333
        assert skill["occupancy"] == 0.925 and skill["ring_no_answer"] == 1

        await acd.get("/v1/stats/queues/nowhere", expect=404)
        await acd.get("/v1/stats/queues?window=15m&interval=1h", expect=422)
        await acd.get("/v1/stats/queues?window=2m", expect=422)


async def test_stream_sends_snapshots_on_the_suite_clock(common: CommonSettings,
                                                         auth: Auth) -> None:
    async with acd_running(common, auth) as acd:
        await acd.login("A001")

        async def read() -> str:
            response = await acd.client.get("/v1/stats/stream?every=10&count=2",
                                            headers=acd.agent_headers)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            return response.text

        task = asyncio.create_task(read())
        while not task.done():
            await asyncio.sleep(0.05)
            acd.clock.advance(5)
        events = [block for block in (await task).split("\n\n") if block]
        assert len(events) == 2
        first = dict(line.split(": ", 1) for line in events[0].splitlines())
        assert (first["id"], first["event"]) == ("1", "snapshot")
        snapshot = json.loads(first["data"])
        assert {"queues", "agents", "skills", "window"} <= set(snapshot)


async def test_wrap_up_extension_and_supervisor_force(common: CommonSettings,
                                                      auth: Auth) -> None:
    async with acd_running(common, auth, wrapup_seconds=60) as acd:
        await acd.login("A001")
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        await acd.connected(reserved)
        # Next state after this call, queued while on call.
        response = await acd.client.post("/v1/agents/A001/next-state",
                                         json={"state": "not_ready", "reason": "break"},
                                         headers=acd.headers_of("A001"))
        assert response.json()["pending"] == {"state": "not_ready", "reason": "break"}
        await acd.released("C1", state="connected", agent_id="A001")
        wrap = await acd.agent_becomes("A001", "wrap_up")
        response = await acd.client.post("/v1/agents/A001/wrapup/extend", json={"seconds": 30},
                                         headers=acd.headers_of("A001"))
        assert response.status_code == 200, response.text
        extended = response.json()
        assert extended["extended_seconds"] == 30.0
        assert extended["wrapup_deadline"] > wrap["wrapup_deadline"]

        supervisor = bearer(acd.auth, "supervisor", subject="sup-1")
        response = await acd.client.post("/v1/agents/A001/force",
                                         json={"state": "ready", "reason": "queue is long"},
                                         headers=acd.agent_headers)
        assert response.status_code == 403
        response = await acd.client.post("/v1/agents/A001/force",
                                         json={"state": "ready", "reason": "queue is long"},
                                         headers=supervisor)
        assert response.status_code == 200, response.text
        forced = response.json()
        assert forced["agent"]["state"] == "ready" and forced["agent"]["pending"] is None
        assert forced["audit"]["actor"] == "sup-1"
        assert (forced["audit"]["from_state"], forced["audit"]["to_state"]) == (
            "wrap_up", "ready")
        # Extending outside wrap-up: 409 with the current state.
        response = await acd.client.post("/v1/agents/A001/wrapup/extend", json={},
                                         headers=acd.headers_of("A001"))
        assert response.status_code == 409 and response.json()["detail"]["state"] == "ready"
        response = await acd.client.post("/v1/agents/A001/force",
                                         json={"state": "ready", "reason": "again"},
                                         headers=supervisor)
        assert response.status_code == 409
        assert response.json()["detail"]["allowed"] == ["force_logout", "force_not_ready"]

        # Forcing a ringing agent gives the call back at its place.
        await acd.route_call("C2")
        ringing = await acd.wait_for("acd.agent.reserved", call_id="C2")
        response = await acd.client.post(
            "/v1/agents/A001/force",
            json={"state": "not_ready", "reason": "coaching", "reason_code": "coaching"},
            headers=supervisor)
        assert response.json()["agent"]["reason"] == "coaching"
        expired = await acd.wait_for("acd.reservation.expired", call_id="C2")
        assert expired.data["reservation_id"] == ringing.data["reservation_id"]
        call = await acd.get("/v1/calls/C2")
        assert call["entry"]["state"] == "waiting" and call["entry"]["ring_failures"] == 0
        assert call["decisions"][0]["outcome"] == "withdrawn"

        audit = await acd.get("/v1/agents/A001/audit")
        assert [(a["from_state"], a["to_state"], a["why"]) for a in audit] == [
            ("wrap_up", "ready", "queue is long"), ("reserved", "not_ready", "coaching")]
        await acd.get("/v1/agents/NOBODY/audit", expect=404)


@pytest.mark.parametrize("mode", ["mandatory"])
async def test_mandatory_wrap_up_refuses_ready(common: CommonSettings, auth: Auth,
                                               mode: str) -> None:
    async with acd_running(common, auth) as acd:
        supervisor = bearer(acd.auth, "supervisor")
        response = await acd.client.put(
            "/v1/queues/repair/config",
            json={"skills": {"repair": 1}, "wrapup": {"seconds": 45, "mode": mode}},
            headers=supervisor)
        assert response.status_code == 200, response.text
        await acd.login("A001")
        await acd.route_call("C1")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        await acd.connected(reserved)
        await acd.released("C1", state="connected", agent_id="A001")
        await acd.agent_becomes("A001", "wrap_up")
        refused = await acd.set_state("A001", "ready", expect=409)
        assert refused["detail"]["state"] == "wrap_up"
        assert refused["detail"]["allowed"] == ["extend_wrap_up", "logout", "set_next"]
        acd.clock.advance(45)
        await acd.agent_becomes("A001", "ready")
