"""Virtual hold: a waiting caller leaves a callback request that keeps their place; at the
head of the queue the agent is reserved with an agent-first dial."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.acd_router.domain.queue import EntryState, QueueEntry
from shared.auth import Auth
from shared.errors import IllegalTransition
from shared.settings import CommonSettings
from tests.acd_router.harness import Harness
from tests.acd_router.harness import acd_running as running_acd
from tests.acd_router.test_routing_service import put_config

NOW = datetime(2026, 7, 15, 8, 0, tzinfo=UTC)
HOLD = {"enabled": True, "min_estimated_wait_seconds": 100, "announcement": "kept-msg"}
CONFIG = {"queues": {
    "repair": {"skills": {"repair": 1}, "handle_seconds": 180, "virtual_hold": HOLD},
    "billing": {"skills": {"billing": 1}, "handle_seconds": 180},
    "complaint": {"skills": {"complaint": 1}, "handle_seconds": 60,
                  "virtual_hold": {**HOLD, "min_estimated_wait_seconds": 1000}},
}}


async def hold(acd: Harness, call_id: str, body: dict[str, str] | None = None, *,
               expect: int = 200) -> dict[str, object]:
    response = await acd.client.post(f"/v1/calls/{call_id}/virtual-hold", json=body,
                                     headers=acd.agent_headers)
    assert response.status_code == expect, response.text
    result: dict[str, object] = response.json()
    return result


async def test_a_held_caller_keeps_their_place_and_is_called_back_agent_first(
        common: CommonSettings, auth: Auth) -> None:
    async with running_acd(common, auth) as acd:
        await put_config(acd, CONFIG)
        await acd.login("A1", {"repair": 1}, ready=False)
        await acd.route_call("C1")
        queued = await acd.wait_for("acd.call.queued", call_id="C1")
        # One staffed agent, nobody ready: 180 s estimated, over the 100 s threshold.
        assert queued.data["estimated_wait_seconds"] == 180.0
        assert queued.data["virtual_hold_digit"] == "1"
        await acd.route_call("C2")
        await acd.wait_for("acd.call.queued", call_id="C2")

        # The caller presses the queue's digit: held at the number they called from.
        await acd.publish("cti.call.dtmf_received", {"call_id": "C2", "digits": "9"})
        await acd.publish("cti.call.dtmf_received", {"call_id": "C2", "digits": "1"})
        started = await acd.wait_for("acd.call.virtual_hold_started", call_id="C2")
        assert started.data == {"call_id": "C2", "queue": "repair", "number": "+8613800000001",
                                "position": 2, "estimated_wait_seconds": 360.0,
                                "announcement": "kept-msg"}
        assert len(acd.emitted("acd.call.virtual_hold_started")) == 1  # "9" was not it
        refused = await hold(acd, "C2", expect=409)
        assert "again" in str(refused["detail"])
        # An integrator (web, app) asks for another number.
        held = await hold(acd, "C1", {"number": "+8613900000011"})
        assert held == {"call_id": "C1", "queue": "repair", "number": "+8613900000011",
                        "position": 1, "estimated_wait_seconds": 180.0}

        # The callers hang up; their places are kept.
        await acd.released("C1", state="queued", cause="virtual_hold")
        await acd.released("C2", state="queued", cause="virtual_hold")
        entry = (await acd.get("/v1/calls/C1"))["entry"]
        assert (entry["state"], entry["position"], entry["callback_number"]) == (
            "waiting", 1, "+8613900000011")
        assert acd.emitted("acd.call.abandoned") == []

        # At the head: the agent is reserved with an agent-first dial.
        await acd.set_state("A1", "ready")
        reserved = await acd.wait_for("acd.agent.reserved", call_id="C1")
        assert reserved.data["dial"] == {"call_id": "C1.vh1", "number": "+8613900000011"}
        expires = datetime.fromisoformat(reserved.data["expires_at"])
        assert (expires - acd.clock.now()).total_seconds() == 30 + 60  # ring + dial
        # The agent does not answer: back at the head, the agent not ready; the dial's end
        # changes nothing.
        await acd.publish("cti.agent.ring_failed", {
            "call_id": "C1.vh1", "agent_id": "A1",
            "reservation_id": reserved.data["reservation_id"], "reason": "no_answer"})
        await acd.released("C1.vh1", state="alerting", cause="agent_no_answer")
        await acd.agent_becomes("A1", "not_ready")
        entry = (await acd.get("/v1/calls/C1"))["entry"]
        assert (entry["state"], entry["position"], entry["ring_failures"]) == ("waiting", 1, 1)

        await acd.set_state("A1", "ready")
        again = await acd.wait_for("acd.agent.reserved", count=2, call_id="C1")
        assert again.data["dial"]["call_id"] == "C1.vh2"
        await acd.publish("cti.call.connected", {
            "call_id": "C1.vh2", "direction": "outbound", "agent_id": "A1", "queue": "repair",
            "reservation_id": again.data["reservation_id"], "from_number": "95598",
            "to_number": "+8613900000011", "connected_at": acd.clock.now().isoformat()})
        await acd.agent_becomes("A1", "on_call", lambda a: a["call_id"] == "C1")
        assert (await acd.get("/v1/calls/C1"))["entry"]["state"] == "answered"
        await acd.released("C1.vh2", state="connected", agent_id="A1",
                           cause="customer_hangup")
        await acd.agent_becomes("A1", "wrap_up")
        assert (await acd.get("/v1/calls/C1"))["entry"]["ended_at"] is not None

        # C2's customer does not answer the dial: abandoned (workorder owes the callback),
        # and the agent is free again at once.
        await acd.login("A2", {"repair": 1})
        dial = await acd.wait_for("acd.agent.reserved", call_id="C2")
        assert dial.data["dial"] == {"call_id": "C2.vh1", "number": "+8613800000001"}
        await acd.released("C2.vh1", state="dialing", cause="busy")
        abandoned = await acd.wait_for("acd.call.abandoned", call_id="C2")
        assert abandoned.data["queue"] == "repair"
        await acd.agent_becomes("A2", "ready")


async def test_virtual_hold_refusals(common: CommonSettings, auth: Auth) -> None:
    async with running_acd(common, auth) as acd:
        await put_config(acd, CONFIG)
        await acd.login("B1", {"billing": 1, "complaint": 1}, ready=False)
        missing = await hold(acd, "NOPE", expect=404)
        assert missing["detail"]["id"] == "NOPE"  # type: ignore[index]
        bad = await hold(acd, "C1", {"number": "call me"}, expect=422)
        assert bad["detail"][0]["loc"] == ["body", "number"]  # type: ignore[index]

        await acd.route_call("C1", queue="billing")
        queued = await acd.wait_for("acd.call.queued", call_id="C1")
        assert queued.data["virtual_hold_digit"] is None
        refused = await hold(acd, "C1", expect=409)
        assert "does not offer virtual hold" in str(refused["detail"])
        # A short wait: 60 s estimated, the queue offers it from 1,000 s.
        await acd.route_call("C2", queue="complaint")
        queued = await acd.wait_for("acd.call.queued", call_id="C2")
        assert queued.data["virtual_hold_digit"] is None
        refused = await hold(acd, "C2", expect=409)
        assert "below" in str(refused["detail"])
        await acd.publish("cti.call.dtmf_received", {"call_id": "C2", "digits": "1"})
        assert acd.emitted("acd.call.virtual_hold_started") == []
        # The refused requests changed nothing: both still wait, unheld.
        for call_id in ("C1", "C2"):
            entry = (await acd.get(f"/v1/calls/{call_id}"))["entry"]
            assert (entry["state"], entry["callback_number"]) == ("waiting", None)


def test_an_entry_is_held_once_and_only_while_waiting() -> None:
    entry = QueueEntry(call_id="C1", queue="repair", enqueued_at=NOW)
    assert (entry.on_virtual_hold, entry.live_call_id) == (False, "C1")
    entry.hold_virtually("+8613800000001")
    # The caller's own call is no longer what the entry waits on; the first dial will be.
    assert (entry.on_virtual_hold, entry.live_call_id) == (True, None)
    with pytest.raises(IllegalTransition, match="again"):
        entry.hold_virtually("+8613800000002")
    assert [entry.next_dial(), entry.next_dial()] == ["C1.vh1", "C1.vh2"]
    assert entry.live_call_id == "C1.vh2"
    for state in (EntryState.RESERVED, EntryState.ANSWERED, EntryState.ABANDONED,
                  EntryState.REJECTED):
        other = QueueEntry(call_id="C2", queue="repair", enqueued_at=NOW, state=state)
        with pytest.raises(IllegalTransition):
            other.hold_virtually("+8613800000001")
        assert other.callback_number is None
