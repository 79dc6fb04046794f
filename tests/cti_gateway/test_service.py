"""cti_gateway as a service: a real WebSocket switch session, the in-memory bus standing in
for IVR/ACD/workorder, REST, and PostgreSQL underneath."""

from __future__ import annotations

from datetime import timedelta

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.cti_gateway.switchboard import switch_prefix
from shared.auth import Auth
from shared.bus.memory import MemoryBus
from tests.conftest import TEST_SECRET, bearer, eventually
from tests.cti_gateway.harness import Gateway, serve


@pytest.fixture
async def gw(common, auth):
    async with serve(common, auth) as gateway:
        yield gateway


async def test_inbound_call_from_ivr_to_agent_and_hangup(gw: Gateway) -> None:
    seen = gw.observer
    async with gw.switch() as switch:
        await switch.invite("C1")
        offered = await seen.wait("cti.call.offered", "C1")
        assert offered.subject == "call/C1" and offered.data["from_number"] == "+8613800000001"
        answered = await seen.wait("cti.call.answered", "C1")
        assert answered.data["direction"] == "inbound"
        assert answered.sequence == offered.sequence + 1
        assert await gw.state("C1") == "in_ivr"

        # The IVR plays a prompt; the caller presses a digit.
        await gw.publish("ivr.prompt.requested", {
            "call_id": "C1", "session_id": "S1", "prompt_id": "main-menu", "text": "Press 1",
            "collect": {"max_digits": 1, "timeout_seconds": 5}}, call_id="C1")
        play = await switch.expect_request("INFO", "caller")
        assert play["call_id"] == "C1"
        assert play["play"] == {"prompt_id": "main-menu", "text": "Press 1",
                                "collect": {"max_digits": 1, "timeout_seconds": 5.0}}
        await switch.respond(play, 200)
        cseq = await switch.request("INFO", "C1", "caller", dtmf="1")
        await switch.expect_response(cseq, 200)
        dtmf = await seen.wait("cti.call.dtmf_received", "C1")
        assert dtmf.data == {"call_id": "C1", "digits": "1", "prompt_id": "main-menu"}

        # ACD queues the call: the caller hears where it stands.
        await gw.publish("acd.call.queued", {"call_id": "C1", "queue": "repair", "priority": 0,
                                             "position": 2, "estimated_wait_seconds": 30},
                         call_id="C1")
        notify = await switch.expect_request("INFO", "caller")
        assert notify["notify"] == {"event": "queued", "queue": "repair", "position": 2,
                                    "estimated_wait_seconds": 30.0}
        assert await gw.state("C1") == "queued"

        # ACD reserves an agent: CTI rings its phone.
        await gw.publish("acd.agent.reserved", {
            "call_id": "C1", "agent_id": "A001", "device": "agent:A001", "queue": "repair",
            "reservation_id": "R1", "expires_at": (gw.clock.now() + timedelta(seconds=30)
                                                   ).isoformat()}, call_id="C1")
        invite = await switch.expect_request("INVITE", "agent")
        assert invite["to"] == "agent:A001" and invite["from"] == "+8613800000001"
        assert invite["agent_id"] == "A001" and invite["reservation_id"] == "R1"
        # The grant recording asks for to open this call's media: for this switch and call.
        grant = Auth(TEST_SECRET, audience="recording").verify(invite["media_grant"])
        assert (grant.subject, grant.call_id, grant.scopes) == ("softswitch", "C1",
                                                                frozenset({"switch"}))
        await switch.respond(invite, 180, "Ringing")
        alerting = await seen.wait("cti.agent.alerting", "C1")
        assert alerting.data == {"call_id": "C1", "agent_id": "A001", "reservation_id": "R1"}
        call = await gw.call("C1")
        assert (call["state"], call["agent_id"], call["legs"]["agent"]) == ("alerting", "A001",
                                                                            "ringing")

        # The agent answers on the desktop; the phone picks up.
        response = await gw.http.post("/v1/calls/C1/answer", json={"agent_id": "A001"},
                                      headers=bearer(gw.auth, "agent", subject="A001"))
        assert response.status_code == 202, response.text
        control = await switch.expect_request("INFO", "agent")
        assert control["control"] == "answer"
        gw.clock.advance(2)
        await switch.respond(invite, 200, "OK")
        ack = await switch.expect_request("ACK", "agent")
        assert ack["call_id"] == "C1"
        connected = await seen.wait("cti.call.connected", "C1")
        assert connected.data["agent_id"] == "A001"
        assert (connected.data["queue"], connected.data["reservation_id"]) == ("repair", "R1")
        assert await gw.state("C1") == "connected"

        # The caller hangs up after talking; the agent's phone is hung up too.
        gw.clock.advance(95)
        cseq = await switch.request("BYE", "C1", "caller")
        await switch.expect_response(cseq, 200)
        bye = await switch.expect_request("BYE", "agent")
        assert bye["call_id"] == "C1"
        released = await seen.wait("cti.call.released", "C1")
        assert released.data["cause"] == "caller_hangup"
        assert released.data["state"] == "connected"
        assert released.data["agent_id"] == "A001"
        assert released.data["talk_seconds"] == 95.0
        assert seen.cti_types("C1") == [
            "cti.call.offered", "cti.call.answered", "cti.call.dtmf_received",
            "cti.agent.alerting", "cti.call.connected", "cti.call.released"]
        assert [e.sequence for e in seen.events
                if e.source == "/hotline/cti_gateway"] == [1, 2, 3, 4, 5, 6]
        assert all(e.correlationid == "C1" for e in seen.events)

        # Answering or releasing a call that is over is refused with its state.
        late = await gw.http.post("/v1/calls/C1/answer", json={"agent_id": "A001"},
                                  headers=bearer(gw.auth, "agent", subject="A001"))
        assert late.status_code == 409
        assert late.json()["detail"]["state"] == "released"
        again = await gw.http.post("/v1/calls/C1/release", json={"agent_id": "A001"},
                                   headers=bearer(gw.auth, "supervisor"))
        assert again.status_code == 409 and again.json()["detail"]["state"] == "released"
        # Stale events for a released call are ignored, not retried or dead-lettered.
        await gw.publish("ivr.prompt.requested", {"call_id": "C1", "session_id": "S1",
                                                  "prompt_id": "p", "text": "t"}, call_id="C1")
        await switch.silent()
    assert isinstance(gw.bus, MemoryBus)
    assert not gw.bus.queues["cti_gateway.events"].dead_letters


async def test_bad_frames_get_errors_and_change_nothing(gw: Gateway) -> None:
    async with gw.switch() as switch:
        await switch.invite("C2")
        await gw.observer.wait("cti.call.answered", "C2")

        await switch.send("not json")
        assert (await switch.expect_error("bad_frame"))["call_id"] is None
        await switch.send({"type": "request", "method": "INFO", "call_id": "C2", "cseq": 7,
                           "leg": "caller", "dtmf": "x!"})
        error = await switch.expect_error("bad_frame")
        assert (error["call_id"], error["cseq"]) == ("C2", 7)
        assert "dtmf" in error["message"]
        await switch.send({"type": "request", "method": "REFER", "call_id": "C2", "cseq": 8,
                           "leg": "caller"})
        await switch.expect_error("bad_frame")
        await switch.send({"type": "telegram", "call_id": "C2"})
        await switch.expect_error("bad_frame")
        await switch.send({"type": "request", "method": "INVITE", "call_id": "C9", "cseq": 9,
                           "leg": "caller", "to": "95598"})
        await switch.expect_error("bad_frame")
        # Nested past what the JSON parser can take (security review H3: it used to drop
        # the whole link and release every call on it): one error frame, nothing more.
        await switch.send("[" * 5000 + "]" * 5000)
        assert "nested too deeply" in (await switch.expect_error("bad_frame"))["message"]
        await switch.send('{"type": "request", "call_id": "C2", "nested": ' + "[" * 5000
                          + "]" * 5000 + "}")
        await switch.expect_error("bad_frame")
        assert await gw.state("C2") == "in_ivr"

        cseq = await switch.request("INFO", "C404", "caller", dtmf="1")
        assert (await switch.expect_error("unknown_call"))["cseq"] == cseq
        # A second INVITE for a live call, and an agent hanging up a call it is not on.
        await switch.request("INVITE", "C2", "caller", **{"from": "+861", "to": "95598"})
        await switch.expect_error("illegal_state")
        await switch.request("BYE", "C2", "agent")
        await switch.expect_error("illegal_state")

        await gw.publish("acd.call.queued", {"call_id": "C2", "queue": "billing",
                                             "priority": 0, "position": 1}, call_id="C2")
        await switch.expect_request("INFO", "caller")
        # Digits come from the call's own party (a waiting caller's go to ACD).
        await switch.request("INFO", "C2", "customer", dtmf="5")
        error = await switch.expect_error("illegal_state")
        assert "customer leg" in error["message"]

        call = await gw.call("C2")
        assert (call["state"], call["last_prompt_id"]) == ("queued", None)
        assert gw.observer.cti_types("C2") == ["cti.call.offered", "cti.call.answered"]
        assert gw.observer.of("cti.call.dtmf_received") == []
        await switch.silent()


async def test_ring_no_answer_requeues_and_late_reservations(gw: Gateway) -> None:
    seen = gw.observer
    async with gw.switch() as switch:
        await switch.invite("C3")
        reserve = {"call_id": "C3", "agent_id": "A001", "device": "agent:A001",
                   "queue": "repair", "reservation_id": "R1",
                   "expires_at": gw.clock.now().isoformat()}
        # The reservation may arrive while the call is still in the IVR.
        await gw.publish("acd.agent.reserved", reserve, call_id="C3")
        invite = await switch.expect_request("INVITE", "agent")
        await switch.respond(invite, 180)
        await seen.wait("cti.agent.alerting", "C3")
        deadline = (await gw.call("C3"))["ring_deadline"]
        assert deadline is not None

        gw.clock.advance(21)
        cancel = await switch.expect_request("CANCEL", "agent")
        assert cancel["cseq"] > invite["cseq"]
        await switch.respond(invite, 487)
        failed = await seen.wait("cti.agent.ring_failed", "C3")
        assert failed.data == {"call_id": "C3", "agent_id": "A001", "reservation_id": "R1",
                               "reason": "no_answer"}
        call = await gw.call("C3")
        assert (call["state"], call["agent_id"], call["ring_deadline"]) == ("queued", None, None)

        # A second agent rejects the call.
        await gw.publish("acd.agent.reserved", {**reserve, "agent_id": "A002",
                                                "device": "agent:A002", "reservation_id": "R2"},
                         call_id="C3")
        invite2 = await switch.expect_request("INVITE", "agent")
        await switch.respond(invite2, 603, "Decline")
        rejected = await seen.wait("cti.agent.ring_failed", "C3", count=2)
        assert (rejected.data["agent_id"], rejected.data["reason"]) == ("A002", "rejected")

        # A third rings, and ACD withdraws the reservation.
        await gw.publish("acd.agent.reserved", {**reserve, "agent_id": "A003",
                                                "device": "agent:A003", "reservation_id": "R3"},
                         call_id="C3")
        await switch.expect_request("INVITE", "agent")
        await gw.publish("acd.reservation.expired", {"call_id": "C3", "agent_id": "A003",
                                                     "reservation_id": "R3"}, call_id="C3")
        await switch.expect_request("CANCEL", "agent")
        assert await gw.state("C3") == "queued"

        # The caller gives up; a reservation arriving afterwards hands the agent back.
        cseq = await switch.request("BYE", "C3", "caller")
        await switch.expect_response(cseq)
        released = await seen.wait("cti.call.released", "C3")
        assert (released.data["state"], released.data["cause"]) == ("queued", "caller_hangup")
        await gw.publish("acd.agent.reserved", {**reserve, "agent_id": "A004",
                                                "device": "agent:A004", "reservation_id": "R4"},
                         call_id="C3")
        gone = await seen.wait("cti.agent.ring_failed", "C3", count=3)
        assert (gone.data["agent_id"], gone.data["reason"]) == ("A004", "caller_gone")
        await switch.silent()


async def test_caller_hangup_while_ringing_cancels_the_agent(gw: Gateway) -> None:
    async with gw.switch() as switch:
        await switch.invite("C4")
        await gw.publish("acd.agent.reserved", {
            "call_id": "C4", "agent_id": "A001", "device": "agent:A001", "queue": "repair",
            "reservation_id": "R1", "expires_at": gw.clock.now().isoformat()}, call_id="C4")
        invite = await switch.expect_request("INVITE", "agent")
        cseq = await switch.request("BYE", "C4", "caller")
        await switch.expect_response(cseq)
        await switch.expect_request("CANCEL", "agent")
        released = await gw.observer.wait("cti.call.released", "C4")
        assert (released.data["state"], released.data["agent_id"]) == ("alerting", "A001")
        # The phone answered just as we cancelled: CTI takes it and hangs it up.
        await switch.respond(invite, 200)
        await switch.expect_request("ACK", "agent")
        await switch.expect_request("BYE", "agent")


async def test_ivr_release_and_cancel(gw: Gateway) -> None:
    async with gw.switch() as switch:
        await switch.invite("C5")
        await gw.publish("ivr.release.requested", {"call_id": "C5", "reason": "self_served"},
                         call_id="C5")
        await switch.expect_request("BYE", "caller")
        released = await gw.observer.wait("cti.call.released", "C5")
        assert released.data["cause"] == "ivr_release"

        cseq = await switch.request("INVITE", "C6", "caller", **{"from": "+862", "to": "95598"})
        await switch.expect_response(cseq)
        cseq = await switch.request("CANCEL", "C6", "caller")
        await switch.expect_response(cseq)
        cancelled = await gw.observer.wait("cti.call.released", "C6")
        assert (cancelled.data["cause"], cancelled.data["state"]) == ("cancelled", "in_ivr")


async def test_acd_rejected_call_is_released(gw: Gateway) -> None:
    async with gw.switch() as switch:
        await switch.invite("C7")
        await gw.publish("acd.call.rejected", {
            "call_id": "C7", "queue": "repair", "reason": "closed", "outcome": "release",
            "announcement": "We are closed; please call again from 8:00."}, call_id="C7")
        # The caller hears the announcement, then the call ends.
        play = await switch.expect_request("INFO", "caller")
        assert play["play"] == {"prompt_id": "acd-closed", "collect": None,
                                "text": "We are closed; please call again from 8:00."}
        await switch.expect_request("BYE", "caller")
        released = await gw.observer.wait("cti.call.released", "C7")
        assert released.data["cause"] == "acd_rejected"
        # Without an announcement: released at once.
        await switch.invite("C8")
        await gw.publish("acd.call.rejected", {
            "call_id": "C8", "queue": "repair", "reason": "max_length", "outcome": "release"},
            call_id="C8")
        await switch.expect_request("BYE", "caller")


async def test_virtual_hold_releases_the_caller_and_dials_agent_first(gw: Gateway) -> None:
    seen = gw.observer
    async with gw.switch() as switch:
        await switch.invite("C5")
        await gw.publish("acd.call.queued", {
            "call_id": "C5", "queue": "repair", "priority": 0, "position": 9,
            "estimated_wait_seconds": 600, "virtual_hold_digit": "1"}, call_id="C5")
        notify = await switch.expect_request("INFO", "caller")
        assert notify["notify"]["virtual_hold"] == {"digit": "1"}
        # The waiting caller presses the digit: ACD hears it.
        cseq = await switch.request("INFO", "C5", "caller", dtmf="1")
        await switch.expect_response(cseq, 200)
        assert (await seen.wait("cti.call.dtmf_received", "C5")).data["digits"] == "1"
        # ACD keeps the place: the caller hears the confirmation and the call ends.
        await gw.publish("acd.call.virtual_hold_started", {
            "call_id": "C5", "queue": "repair", "number": "+8613800000005", "position": 9,
            "estimated_wait_seconds": 600, "announcement": "We will call you back."},
            call_id="C5")
        play = await switch.expect_request("INFO", "caller")
        assert play["play"]["text"] == "We will call you back."
        await switch.expect_request("BYE", "caller")
        released = await seen.wait("cti.call.released", "C5")
        assert (released.data["cause"], released.data["state"]) == ("virtual_hold", "queued")

        # At the head of the queue: the agent's phone rings first, on a new call.
        reservation = {"call_id": "C5", "agent_id": "A001", "device": "agent:A001",
                       "queue": "repair", "reservation_id": "R5",
                       "expires_at": (gw.clock.now() + timedelta(seconds=90)).isoformat(),
                       "dial": {"call_id": "C5.vh1", "number": "+8613800000005"}}
        await gw.publish("acd.agent.reserved", reservation, call_id="C5")
        ring = await switch.expect_request("INVITE", "agent")
        assert (ring["call_id"], ring["to"], ring["from"]) == ("C5.vh1", "agent:A001",
                                                               "+8613800000005")
        await gw.publish("acd.agent.reserved", reservation, call_id="C5")  # re-emitted
        await switch.respond(ring, 180)
        await seen.wait("cti.agent.alerting", "C5.vh1")
        await switch.respond(ring, 200)
        await switch.expect_request("ACK", "agent")
        dial = await switch.expect_request("INVITE", "customer")
        assert (dial["call_id"], dial["to"], dial["from"]) == ("C5.vh1", "+8613800000005",
                                                               "95598")
        assert dial["headers"] == {"X-Hotline-Virtual-Hold-For": "C5"}
        assert await gw.state("C5.vh1") == "dialing"
        await switch.respond(dial, 200)
        await switch.expect_request("ACK", "customer")
        connected = await seen.wait("cti.call.connected", "C5.vh1")
        assert (connected.data["reservation_id"], connected.data["agent_id"]) == ("R5", "A001")
        gw.clock.advance(60)
        cseq = await switch.request("BYE", "C5.vh1", "agent")
        await switch.expect_response(cseq)
        await switch.expect_request("BYE", "customer")
        ended = await seen.wait("cti.call.released", "C5.vh1")
        assert (ended.data["cause"], ended.data["talk_seconds"]) == ("agent_hangup", 60.0)
        assert ended.data["context"] == {"virtual_hold_for": "C5"}

        # A customer who does not answer: the agent is hung up, ACD hears the release.
        await gw.publish("acd.agent.reserved", {
            **reservation, "reservation_id": "R6",
            "dial": {"call_id": "C5.vh2", "number": "+8613800000005"}}, call_id="C5")
        ring = await switch.expect_request("INVITE", "agent")
        await switch.respond(ring, 200)
        await switch.expect_request("ACK", "agent")
        dial = await switch.expect_request("INVITE", "customer")
        await switch.respond(dial, 486, "Busy Here")
        await switch.expect_request("BYE", "agent")
        busy = await seen.wait("cti.call.released", "C5.vh2")
        assert (busy.data["cause"], busy.data["state"]) == ("busy", "dialing")
        await switch.silent()
    assert isinstance(gw.bus, MemoryBus)
    assert not gw.bus.queues["cti_gateway.events"].dead_letters


async def test_outbound_callback(gw: Gateway) -> None:
    seen = gw.observer
    request = {"request_id": "RQ1", "callback_id": "CB1", "order_id": "WO1", "attempt": 2,
               "to_number": "+8613800000002", "context": {"purpose": "survey"}}
    # No switch connected: the origination fails at once.
    await gw.publish("workorder.callback.requested", request)
    failed = await seen.wait("cti.call.origination_failed")
    assert failed.data["request_id"] == "RQ1" and failed.subject == "callback/CB1"

    async with gw.switch() as switch:
        await gw.publish("workorder.callback.requested", {**request, "request_id": "RQ2"})
        invite = await switch.expect_request("INVITE", "customer")
        call_id = invite["call_id"]
        assert call_id.startswith("OB-")
        assert (invite["to"], invite["from"]) == ("+8613800000002", "95598")
        assert invite["headers"] == {"X-Hotline-Request-Id": "RQ2", "X-Hotline-Order-Id": "WO1",
                                     "X-Hotline-Callback-Id": "CB1", "X-Hotline-Attempt": "2"}
        originated = await seen.wait("cti.call.originated", call_id)
        assert originated.data["request_id"] == "RQ2"
        assert originated.data["context"]["purpose"] == "survey"
        # The same request again (a re-emitted event) does not dial twice.
        await gw.publish("workorder.callback.requested", {**request, "request_id": "RQ2"})
        await switch.respond(invite, 180)
        await switch.respond(invite, 200)
        await switch.expect_request("ACK", "customer")
        answered = await seen.wait("cti.call.answered", call_id)
        assert answered.data["direction"] == "outbound"
        assert answered.data["context"] == {"purpose": "survey", "request_id": "RQ2",
                                            "callback_id": "CB1", "order_id": "WO1",
                                            "attempt": 2}
        assert await gw.state(call_id) == "in_ivr"
        await gw.publish("ivr.prompt.requested", {"call_id": call_id, "session_id": "S",
                                                  "prompt_id": "survey-q1", "text": "Rate us"},
                         call_id=call_id)
        assert (await switch.expect_request("INFO", "customer"))["play"]["collect"] is None
        cseq = await switch.request("BYE", call_id, "customer")
        await switch.expect_response(cseq)
        released = await seen.wait("cti.call.released", call_id)
        assert released.data["cause"] == "customer_hangup"

        # A busy customer.
        await gw.publish("workorder.callback.requested", {**request, "request_id": "RQ3"})
        invite = await switch.expect_request("INVITE", "customer")
        await switch.respond(invite, 486, "Busy Here")
        busy = await seen.wait("cti.call.released", invite["call_id"])
        assert busy.data["cause"] == "busy" and busy.data["context"]["callback_id"] == "CB1"
        await switch.silent()
    assert len(seen.of("cti.call.originated")) == 2


async def test_switch_lost_releases_its_calls(gw: Gateway) -> None:
    async with gw.switch() as switch:
        await switch.invite("C7")
        await gw.observer.wait("cti.call.answered", "C7")
    released = await gw.observer.wait("cti.call.released", "C7")
    assert released.data["cause"] == "switch_lost"
    assert await gw.state("C7") == "released"


async def test_a_switch_connection_acts_only_on_the_calls_it_carries(gw: Gateway) -> None:
    """Another switch's DTMF, BYE or responses for a call are refused as for an unknown call
    and change nothing (M6 of the security review); the carrying connection goes on."""
    async with gw.switch() as carrier, gw.switch(subject="another-switch") as other:
        await carrier.invite("CX1")
        await gw.observer.wait("cti.call.answered", "CX1")
        await other.request("INFO", "CX1", "caller", dtmf="9")
        await other.expect_error("unknown_call")
        await other.request("BYE", "CX1", "caller")
        await other.expect_error("unknown_call")
        await other.respond({"call_id": "CX1", "cseq": 1, "method": "INVITE", "leg": "agent"},
                            200)
        await other.expect_error("unknown_call")
        assert await gw.state("CX1") == "in_ivr"
        assert not gw.observer.of("cti.call.dtmf_received", "CX1")
        cseq = await carrier.request("BYE", "CX1", "caller")
        await carrier.expect_response(cseq, 200)
        assert (await gw.observer.wait("cti.call.released", "CX1")).data["cause"] != "switch_lost"


async def test_switch_needs_a_switch_token(gw: Gateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with gw.switch("agent"):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{gw.base}/v1/switch"):
            pass
    assert refused.value.response.status_code == 403


async def test_rest_reads_and_validation(gw: Gateway) -> None:
    async with gw.switch() as switch:
        await switch.invite("C8")
        await switch.invite("C9")
        cseq = await switch.request("BYE", "C9", "caller")
        await switch.expect_response(cseq)
        await gw.observer.wait("cti.call.released", "C9")

        for scope in ("supervisor", "service", "integrator"):
            assert (await gw.call("C8", scope))["legs"] == {"party": "caller",
                                                            "party_state": "up",
                                                            "agent": "none"}
        # Data scopes (H6): an agent reads its own calls only; an integrator sees numbers
        # masked unless its grants include personal data.
        other = await gw.http.get("/v1/calls/C8", headers=bearer(gw.auth, "agent"))
        assert other.status_code == 403 and other.json()["detail"]["error"] == "forbidden"
        assert (await gw.http.get("/v1/calls", headers=bearer(gw.auth, "agent"))).json() == []
        assert (await gw.call("C8", "integrator"))["from_number"] == "+*********0001"
        granted = {"Authorization": "Bearer " + gw.auth.mint("bi", ["integrator"],
                                                            grants=("personal",))}
        full = await gw.http.get("/v1/calls/C8", headers=granted)
        assert full.json()["from_number"] == "+8613800000001"
        missing = await gw.http.get("/v1/calls/C404", headers=bearer(gw.auth, "agent"))
        assert missing.status_code == 404
        assert missing.json()["detail"]["id"] == "C404"
        assert (await gw.http.get("/v1/calls/C8")).status_code == 401
        assert (await gw.http.get("/v1/calls/C8",
                                  headers=bearer(gw.auth, "switch"))).status_code == 403

        live = await gw.http.get("/v1/calls", params={"state": "in_ivr"},
                                 headers=bearer(gw.auth, "supervisor"))
        assert [c["call_id"] for c in live.json()] == ["C8"]
        everything = await gw.http.get("/v1/calls", params={"limit": 1},
                                       headers=bearer(gw.auth, "supervisor"))
        assert len(everything.json()) == 1
        bad_state = await gw.http.get("/v1/calls", params={"state": "flying"},
                                      headers=bearer(gw.auth, "supervisor"))
        assert bad_state.status_code == 422

        agent = bearer(gw.auth, "agent", subject="A1")
        extra = await gw.http.post("/v1/calls/C8/release", json={"agent_id": "A1", "x": 1},
                                   headers=agent)
        assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "x"]
        # A supervisor names who answers; an agent answers as itself.
        empty = await gw.http.post("/v1/calls/C8/answer", json={},
                                   headers=bearer(gw.auth, "supervisor"))
        assert empty.status_code == 422
        assert empty.json()["detail"][0]["loc"] == ["body", "agent_id"]
        for body in ({"agent_id": "A1"}, {}, None):
            not_ringing = await gw.http.post("/v1/calls/C8/answer", json=body, headers=agent)
            assert not_ringing.status_code == 409
            assert not_ringing.json()["detail"]["state"] == "in_ivr"
        # An agent acts for itself only, and hangs up only its own calls: a caller in the
        # IVR is nobody's (H2 of the security review).
        for path, body in (("answer", {"agent_id": "A2"}), ("release", {"agent_id": "A2"}),
                           ("release", {"agent_id": "A1"}), ("release", None)):
            refused = await gw.http.post(f"/v1/calls/C8/{path}", json=body, headers=agent)
            assert refused.status_code == 403, (path, body, refused.text)
            assert refused.json()["detail"]["error"] == "forbidden"
        assert (await gw.call("C8"))["state"] == "in_ivr"
        integrator = await gw.http.post("/v1/calls/C8/release", json={"agent_id": "A1"},
                                        headers=bearer(gw.auth, "integrator"))
        assert integrator.status_code == 403

        released = await gw.http.post("/v1/calls/C8/release", json={"agent_id": "A1"},
                                      headers=bearer(gw.auth, "supervisor"))
        assert released.status_code == 200, released.text
        assert (released.json()["state"], released.json()["cause"]) == ("released",
                                                                       "agent_release")
        await switch.expect_request("BYE", "caller")
        await eventually(lambda: gw.observer.of("cti.call.released", "C8"))


def test_ring_timeouts_keep_their_wall_clock_floor_under_a_fast_clock(common) -> None:
    """At 10x, 20 suite seconds of ringing would be 2 wall seconds: shorter than an answer's
    way through a loaded suite. The floor (4 wall s by default) holds it at 40 suite s."""
    from services.cti_gateway.handlers import Cti
    from services.cti_gateway.settings import CtiSettings
    from shared.clock import ScaledClock

    fast = Cti(CtiSettings(common=common), clock=ScaledClock(scale=10))
    assert (fast.ring_seconds, fast.customer_ring_seconds) == (40.0, 40.0)
    real = Cti(CtiSettings(common=common), clock=ScaledClock(scale=1))
    assert (real.ring_seconds, real.customer_ring_seconds) == (20.0, 40.0)


async def test_a_call_changed_by_another_process_is_read_again_not_overwritten(
        gw: Gateway, database_url: str) -> None:
    """Calls live in memory, but every write checks the version it read: when another
    process changed the row meanwhile, the unit of work is redone from the table."""
    import asyncpg

    seen = gw.observer
    async with gw.switch() as switch:
        await switch.invite("C1")
        await seen.wait("cti.call.answered", "C1")
        conn = await asyncpg.connect(database_url)
        try:
            # Another gateway played a prompt on this call.
            await conn.execute("UPDATE cti.calls SET version = version + 1,"
                               " last_prompt_id = 'theirs' WHERE call_id = 'C1'")
            cseq = await switch.request("INFO", "C1", "caller", dtmf="5")
            await switch.expect_response(cseq, 200)
            dtmf = await seen.wait("cti.call.dtmf_received", "C1")
            # Decided on their version of the call, not on the copy this process held.
            assert dtmf.data["prompt_id"] == "theirs"
            version = await conn.fetchval("SELECT version FROM cti.calls WHERE call_id = 'C1'")
            assert version == 3  # offered (1), theirs (2), this DTMF (3)
        finally:
            await conn.close()


async def test_a_call_whose_cti_died_is_rung_over_its_switchs_new_connection(
        gw: Gateway, database_url: str) -> None:
    """A CTI process was SIGKILLed (R1): its calls name a connection no process holds, and
    the switch has reconnected here. ACD reserving an agent for such a call rings over the
    switch's new connection (before, the INVITE was dropped and the call stuck), which
    carries the call from then on; another switch's connection is never used."""
    import asyncpg

    seen = gw.observer
    async with gw.switch(subject="another-switch"), gw.switch() as switch:
        await switch.invite("CR1")
        await seen.wait("cti.call.answered", "CR1")
        dead = switch_prefix("softswitch") + "000000000000"
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE cti.calls SET version = version + 1, switch_id = $1"
                               " WHERE call_id = 'CR1'", dead)
            await gw.publish("acd.agent.reserved", {
                "call_id": "CR1", "agent_id": "A001", "device": "agent:A001",
                "queue": "repair", "reservation_id": "R1",
                "expires_at": (gw.clock.now() + timedelta(seconds=30)).isoformat()},
                call_id="CR1")
            invite = await switch.expect_request("INVITE", "agent")
            assert invite["call_id"] == "CR1"
            carried_by = await conn.fetchval(
                "SELECT switch_id FROM cti.calls WHERE call_id = 'CR1'")
            assert carried_by != dead and carried_by.startswith(switch_prefix("softswitch"))
        finally:
            await conn.close()
        await switch.respond(invite, 180, "Ringing")
        await seen.wait("cti.agent.alerting", "CR1")


async def test_a_reconnected_switch_is_asked_about_its_calls_a_dead_cti_carried(
        gw: Gateway, database_url: str) -> None:
    """After a CTI restart (R1) the switch connects again; CTI asks it (OPTIONS) about each
    live call its dead connection carried. A call the switch no longer has (its BYE went
    down with the dead process) is released; one it still has is carried on."""
    import asyncpg

    seen = gw.observer
    async with gw.switch() as first:
        for call_id in ("CA1", "CA2"):
            await first.invite(call_id)
            await seen.wait("cti.call.answered", call_id)
        conn = await asyncpg.connect(database_url)
        try:  # as if the two calls came in over a connection of a CTI since SIGKILLed
            await conn.execute("UPDATE cti.calls SET switch_id = $1 WHERE call_id IN "
                               "('CA1', 'CA2')", switch_prefix("softswitch") + "dead")
        finally:
            await conn.close()
    async with gw.switch() as again:
        asked = {}
        for _ in range(2):
            frame = await again.expect_request("OPTIONS", "caller")
            asked[frame["call_id"]] = frame
        assert set(asked) == {"CA1", "CA2"}
        await again.respond(asked["CA1"], 481)
        await again.respond(asked["CA2"], 200)
        released = await seen.wait("cti.call.released", "CA1")
        assert released.data["cause"] == "switch_lost"
        assert await gw.state("CA2") == "in_ivr"
        cseq = await again.request("BYE", "CA2", "caller")
        await again.expect_response(cseq, 200)
        assert (await seen.wait("cti.call.released", "CA2")).data["cause"] == "caller_hangup"


async def test_an_invite_sent_again_is_answered_again_and_offers_the_call_once(
        gw: Gateway) -> None:
    """A switch that heard no answer sends the INVITE again (the first may have gone down
    with a CTI process): the call stands and gets its 200 again, not an error."""
    async with gw.switch() as switch:
        await switch.invite("CI1")
        await gw.observer.wait("cti.call.answered", "CI1")
        cseq = await switch.request("INVITE", "CI1", "caller",
                                    **{"from": "+8613800000001", "to": "95598"})
        await switch.expect_response(cseq, 200)
        cseq = await switch.request("INVITE", "CI1", "caller",
                                    **{"from": "+8613900000009", "to": "95598"})
        await switch.expect_error("illegal_state")  # another caller: not a retransmission
        assert len(gw.observer.of("cti.call.offered", "CI1")) == 1
        assert await gw.state("CI1") == "in_ivr"


async def test_a_team_supervisor_reads_and_controls_its_own_agents_calls_only(
        gw: Gateway) -> None:
    """The reservation names the agent's team and department; the call keeps them, so a
    team's supervisor reads, answers for and releases only its agents' calls, and a caller
    with no agent yet is released only by a supervisor of the whole floor."""
    def supervisor(**oversight: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + gw.auth.mint("S", ["supervisor"], **oversight)}

    async with gw.switch() as switch:
        for call_id in ("C1", "C2", "C3"):
            await switch.invite(call_id)
        for call_id, agent_id, team in (("C1", "A001", "T1"), ("C2", "A002", "T2")):
            await gw.publish("acd.agent.reserved", {
                "call_id": call_id, "agent_id": agent_id, "device": f"agent:{agent_id}",
                "queue": "repair", "reservation_id": f"R-{call_id}", "team": team,
                "department": "D1",
                "expires_at": (gw.clock.now() + timedelta(seconds=30)).isoformat()},
                call_id=call_id)
            invite = await switch.expect_request("INVITE", "agent")
            await switch.respond(invite, 180, "Ringing")
            await gw.observer.wait("cti.agent.alerting", call_id)

        t1, t2, d1 = supervisor(team="T1"), supervisor(team="T2"), supervisor(department="D1")
        listed = await gw.http.get("/v1/calls", headers=t1)
        assert [c["call_id"] for c in listed.json()] == ["C1"]
        assert {c["call_id"] for c in (await gw.http.get("/v1/calls", headers=d1)).json()} \
            == {"C1", "C2"}
        mine = await gw.http.get("/v1/calls/C1", headers=t1)
        assert mine.status_code == 200 and mine.json()["team"] == "T1"
        theirs = await gw.http.get("/v1/calls/C2", headers=t1)
        assert theirs.status_code == 403 and "team 'T1'" in theirs.json()["detail"]["message"]

        for path, body in (("answer", {"agent_id": "A002"}), ("release", None)):
            refused = await gw.http.post(f"/v1/calls/C2/{path}", json=body, headers=t1)
            assert refused.status_code == 403, (path, refused.text)
        # C3 is still in the IVR: no team's yet.
        assert (await gw.http.post("/v1/calls/C3/release", headers=t1)).status_code == 403
        assert await gw.state("C2") == "alerting" and await gw.state("C3") == "in_ivr"

        released = await gw.http.post("/v1/calls/C2/release", headers=t2)
        assert released.status_code == 200, released.text
        await switch.expect_request("BYE", "caller")
        gone = await gw.observer.wait("cti.call.released", "C2")
        assert (gone.data["team"], gone.data["department"]) == ("T2", "D1")
        floor = await gw.http.post("/v1/calls/C3/release", headers=supervisor())
        assert floor.status_code == 200, floor.text
