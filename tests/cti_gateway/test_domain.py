"""The call state machine, table-driven: every (state, action) pair, legal or not, and what
each operation emits and sends."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.cti_gateway.domain import (
    TRANSITIONS,
    Action,
    Call,
    CallState,
    Effect,
    Emit,
    LegState,
    Send,
    hangup,
    next_state,
)
from shared.errors import IllegalTransition

NOW = datetime(2026, 7, 15, 8, 0, tzinfo=UTC)
S, A = CallState, Action

# The specification, written out independently of the implementation's table.
LEGAL: dict[tuple[CallState, Action], CallState] = {
    (S.OFFERED, A.ANSWER): S.IN_IVR,
    (S.OFFERED, A.CANCEL): S.RELEASED,
    (S.OFFERED, A.RELEASE): S.RELEASED,
    (S.IN_IVR, A.PLAY): S.IN_IVR,
    (S.IN_IVR, A.DTMF): S.IN_IVR,
    (S.IN_IVR, A.QUEUE): S.QUEUED,
    (S.IN_IVR, A.RING): S.ALERTING,
    (S.IN_IVR, A.CANCEL): S.RELEASED,
    (S.IN_IVR, A.RELEASE): S.RELEASED,
    (S.QUEUED, A.QUEUE): S.QUEUED,
    (S.QUEUED, A.DTMF): S.QUEUED,
    (S.IN_IVR, A.ANNOUNCE): S.IN_IVR,
    (S.QUEUED, A.ANNOUNCE): S.QUEUED,
    (S.QUEUED, A.RING): S.ALERTING,
    (S.QUEUED, A.RELEASE): S.RELEASED,
    (S.ALERTING, A.AGENT_RINGING): S.ALERTING,
    (S.ALERTING, A.REQUEST_ANSWER): S.ALERTING,
    (S.ALERTING, A.RING_FAILED): S.QUEUED,
    (S.ALERTING, A.CONNECT): S.CONNECTED,
    (S.ALERTING, A.RELEASE): S.RELEASED,
    (S.CONNECTED, A.RELEASE): S.RELEASED,
    (S.ALERTING, A.AGENT_ANSWERED): S.DIALING,
    (S.DIALING, A.CONNECT): S.CONNECTED,
    (S.DIALING, A.CUSTOMER_ANSWERED): S.IN_IVR,
    (S.DIALING, A.RELEASE): S.RELEASED,
}

ALL_PAIRS = list(itertools.product(CallState, Action))


def test_table_is_the_specification() -> None:
    assert TRANSITIONS == LEGAL


@pytest.mark.parametrize(("state", "action"), ALL_PAIRS,
                         ids=[f"{s.value}-{a.value}" for s, a in ALL_PAIRS])
def test_every_pair(state: CallState, action: Action) -> None:
    if (state, action) in LEGAL:
        assert next_state(state, action) is LEGAL[(state, action)]
    else:
        with pytest.raises(IllegalTransition) as refused:
            next_state(state, action)
        assert refused.value.state == state.value
        assert refused.value.action == action.value
        assert refused.value.allowed == sorted(a.value for (s, a) in LEGAL if s is state)


def test_released_is_final() -> None:
    assert not [pair for pair in LEGAL if pair[0] is S.RELEASED]


# -- helpers --------------------------------------------------------------------------------


def emitted(effects: list[Effect]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.event.model_dump()) for e in effects if isinstance(e, Emit)]


def sent(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.method, e.leg) for e in effects if isinstance(e, Send)]


def inbound(state: CallState = S.IN_IVR) -> Call:
    """An inbound call driven through legal steps to ``state``."""
    call, _ = Call.offer("C1", "+8613800000001", "95598", NOW, switch_id="sw-1")
    if state in (S.QUEUED, S.ALERTING, S.CONNECTED):
        call.enqueue("repair", 1, 30.0)
    if state in (S.ALERTING, S.CONNECTED):
        call.ring_agent("A001", "agent:A001", "R1", "repair", NOW, ring_timeout=20, invite_cseq=7)
    if state is S.CONNECTED:
        call.on_agent_response(7, 200, NOW + timedelta(seconds=3))
    if state is S.RELEASED:
        call.release("caller_hangup", NOW)
    assert call.state is state
    return call


def outbound() -> Call:
    call, _ = Call.originate("OB-1", request_id="RQ1", from_number="95598",
                             to_number="+8613800000002", context={"purpose": "survey"},
                             headers={"X-Hotline-Attempt": "1"}, switch_id="sw-1",
                             invite_cseq=3, now=NOW)
    return call


# -- inbound --------------------------------------------------------------------------------


def test_offer_answers_into_ivr() -> None:
    call, effects = Call.offer("C1", "+861", "95598", NOW)
    assert call.state is S.IN_IVR and call.party_leg is LegState.UP
    assert [t for t, _ in emitted(effects)] == ["cti.call.offered", "cti.call.answered"]
    assert emitted(effects)[1][1]["direction"] == "inbound"
    assert sent(effects) == []  # the 200 is the reply to the INVITE, not a new request


def test_play_then_dtmf_carries_the_prompt() -> None:
    call = inbound()
    effects = call.play("welcome", "Welcome", {"max_digits": 1, "timeout_seconds": 5})
    assert sent(effects) == [("INFO", "caller")]
    send = effects[0]
    assert isinstance(send, Send) and send.fields["play"]["prompt_id"] == "welcome"
    assert emitted(call.receive_dtmf("1")) == [
        ("cti.call.dtmf_received", {"call_id": "C1", "digits": "1", "prompt_id": "welcome"})]


@pytest.mark.parametrize("state", [S.QUEUED, S.ALERTING, S.CONNECTED, S.RELEASED])
def test_dtmf_and_play_only_in_ivr(state: CallState) -> None:
    call = inbound(state)
    if state is S.QUEUED:
        # A waiting caller's key goes to ACD (the virtual-hold digit); prompts do not.
        assert emitted(call.receive_dtmf("1"))[0][0] == "cti.call.dtmf_received"
    else:
        with pytest.raises(IllegalTransition):
            call.receive_dtmf("1")
    with pytest.raises(IllegalTransition):
        call.play("p", "t", None)
    assert call.state is state


@pytest.mark.parametrize("state", [S.IN_IVR, S.QUEUED])
def test_an_announcement_reaches_a_caller_in_the_ivr_or_waiting(state: CallState) -> None:
    call = inbound(state)
    [send] = call.announce("acd-closed", "We are closed.")
    assert (send.method, send.leg, send.fields) == ("INFO", "caller", {"play": {
        "prompt_id": "acd-closed", "text": "We are closed.", "collect": None}})
    assert call.state is state


def test_queue_notifies_the_caller_and_requeue_is_allowed() -> None:
    call = inbound()
    effects = call.enqueue("repair", 3, 45.0)
    assert call.state is S.QUEUED and call.queue == "repair"
    assert sent(effects) == [("INFO", "caller")]
    assert isinstance(effects[0], Send)
    assert effects[0].fields["notify"] == {"event": "queued", "queue": "repair", "position": 3,
                                           "estimated_wait_seconds": 45.0}
    call.enqueue("repair", 2, 20.0)
    assert call.state is S.QUEUED


@pytest.mark.parametrize("state", [S.IN_IVR, S.QUEUED])
def test_ring_agent_from_ivr_or_queue(state: CallState) -> None:
    call = inbound(state)
    effects = call.ring_agent("A001", "agent:A001", "R1", "repair", NOW, ring_timeout=20,
                              invite_cseq=9)
    assert call.state is S.ALERTING and call.agent_leg is LegState.INVITED
    assert call.ring_deadline == NOW + timedelta(seconds=20)
    [invite] = effects
    assert isinstance(invite, Send) and invite.cseq == 9
    assert (invite.method, invite.leg) == ("INVITE", "agent")
    assert invite.fields == {"agent_id": "A001", "to": "agent:A001", "from": "+8613800000001",
                             "reservation_id": "R1"}


@pytest.mark.parametrize("state", [S.ALERTING, S.CONNECTED, S.RELEASED])
def test_ring_agent_refused_when_not_waiting(state: CallState) -> None:
    call = inbound(state)
    with pytest.raises(IllegalTransition):
        call.ring_agent("A002", "agent:A002", "R2", "repair", NOW, ring_timeout=20,
                        invite_cseq=11)
    assert call.reservation_id == (None if state is S.RELEASED else "R1")


def test_agent_180_emits_alerting_once() -> None:
    call = inbound(S.ALERTING)
    assert emitted(call.on_agent_response(7, 180, NOW)) == [
        ("cti.agent.alerting", {"call_id": "C1", "agent_id": "A001", "reservation_id": "R1"})]
    assert call.agent_leg is LegState.RINGING
    assert call.on_agent_response(7, 180, NOW) == []


def test_agent_200_connects() -> None:
    call = inbound(S.ALERTING)
    at = NOW + timedelta(seconds=4)
    effects = call.on_agent_response(7, 200, at)
    assert call.state is S.CONNECTED and call.connected_at == at and call.ring_deadline is None
    assert sent(effects) == [("ACK", "agent")]
    [(kind, data)] = emitted(effects)
    assert kind == "cti.call.connected"
    assert (data["agent_id"], data["queue"], data["reservation_id"]) == ("A001", "repair", "R1")
    # A retransmitted 200 changes nothing and is not hung up.
    assert call.on_agent_response(7, 200, at) == []


@pytest.mark.parametrize(("status", "reason"), [(480, "no_answer"), (408, "no_answer"),
                                                (486, "rejected"), (603, "rejected"),
                                                (500, "unreachable")])
def test_agent_failure_requeues(status: int, reason: str) -> None:
    call = inbound(S.ALERTING)
    effects = call.on_agent_response(7, status, NOW)
    assert call.state is S.QUEUED and call.agent_id is None and call.ring_deadline is None
    assert sent(effects) == []  # the INVITE is over; nothing to cancel
    assert emitted(effects) == [("cti.agent.ring_failed", {
        "call_id": "C1", "agent_id": "A001", "reservation_id": "R1", "reason": reason})]


def test_responses_to_an_older_invite_are_ignored_except_a_late_answer() -> None:
    call = inbound(S.ALERTING)
    assert call.on_agent_response(6, 180, NOW) == []
    assert call.on_agent_response(6, 486, NOW) == []
    assert call.on_agent_response(7, 487, NOW) == []
    assert call.state is S.ALERTING
    # A phone that answered an INVITE we gave up on is hung up again.
    assert sent(call.on_agent_response(6, 200, NOW)) == [("ACK", "agent"), ("BYE", "agent")]
    assert call.state is S.ALERTING


def test_ring_timeout_only_when_due() -> None:
    call = inbound(S.ALERTING)
    assert call.check_ring_timeout(NOW + timedelta(seconds=19)) == []
    effects = call.check_ring_timeout(NOW + timedelta(seconds=20))
    assert call.state is S.QUEUED
    assert sent(effects) == [("CANCEL", "agent")]
    assert emitted(effects)[0][1]["reason"] == "no_answer"
    assert call.check_ring_timeout(NOW + timedelta(seconds=40)) == []


def test_reservation_expiry_cancels_only_its_own_ring() -> None:
    call = inbound(S.ALERTING)
    assert call.withdraw_ring("R-other", NOW) == []
    effects = call.withdraw_ring("R1", NOW)
    assert call.state is S.QUEUED
    assert sent(effects) == [("CANCEL", "agent")] and emitted(effects) == []


def test_request_answer() -> None:
    call = inbound(S.ALERTING)
    [send] = call.request_answer("A001")
    assert isinstance(send, Send) and send.fields == {"control": "answer"}
    with pytest.raises(IllegalTransition):
        call.request_answer("A999")
    with pytest.raises(IllegalTransition) as refused:
        inbound(S.RELEASED).request_answer("A001")
    assert refused.value.state == "released"


def test_reservation_too_late() -> None:
    call = inbound(S.RELEASED)
    assert emitted(call.reservation_too_late("A001", "R9"))[0][1]["reason"] == "caller_gone"
    with pytest.raises(IllegalTransition):
        inbound(S.QUEUED).reservation_too_late("A001", "R9")


# -- the end --------------------------------------------------------------------------------

RELEASES = [
    # (state, who hangs up, expected cause, requests sent to the switch)
    (S.IN_IVR, "caller", "caller_hangup", []),
    (S.QUEUED, "caller", "caller_hangup", []),
    (S.ALERTING, "caller", "caller_hangup", [("CANCEL", "agent")]),
    (S.CONNECTED, "caller", "caller_hangup", [("BYE", "agent")]),
    (S.CONNECTED, "agent", "agent_hangup", [("BYE", "caller")]),
]


@pytest.mark.parametrize(("state", "leg", "cause", "sends"), RELEASES)
def test_hangup(state: CallState, leg: str, cause: str, sends: list[tuple[str, str]]) -> None:
    call = inbound(state)
    at = NOW + timedelta(seconds=63)
    effects = hangup(call, leg, at)  # type: ignore[arg-type]
    assert call.state is S.RELEASED and call.cause == cause and call.released_at == at
    assert sent(effects) == sends
    [(kind, data)] = emitted(effects)
    assert kind == "cti.call.released"
    assert (data["cause"], data["state"]) == (cause, state.value)
    if state is S.CONNECTED:
        assert data["talk_seconds"] == 60.0 and data["agent_id"] == "A001"
    else:
        assert data["talk_seconds"] is None


@pytest.mark.parametrize(("state", "leg"), [(S.ALERTING, "agent"), (S.QUEUED, "agent"),
                                            (S.IN_IVR, "customer"), (S.RELEASED, "caller")])
def test_hangup_of_a_leg_that_is_not_up(state: CallState, leg: str) -> None:
    call = inbound(state)
    with pytest.raises(IllegalTransition):
        hangup(call, leg, NOW)  # type: ignore[arg-type]
    assert call.state is state


@pytest.mark.parametrize(("state", "sends"), [
    (S.IN_IVR, [("BYE", "caller")]),
    (S.ALERTING, [("BYE", "caller"), ("CANCEL", "agent")]),
    (S.CONNECTED, [("BYE", "caller"), ("BYE", "agent")]),
])
def test_release_on_request_clears_every_leg(state: CallState, sends: list[tuple[str, str]]
                                            ) -> None:
    call = inbound(state)
    effects = call.release("agent_release", NOW)
    assert sent(effects) == sends
    assert call.party_leg is LegState.GONE
    with pytest.raises(IllegalTransition) as refused:
        call.release("agent_release", NOW)
    assert refused.value.state == "released"


def test_switch_lost_sends_nothing() -> None:
    call = inbound(S.CONNECTED)
    effects = call.release("switch_lost", NOW, notify_switch=False)
    assert sent(effects) == [] and emitted(effects)[0][1]["cause"] == "switch_lost"


def test_cancel_before_answer() -> None:
    call = inbound(S.IN_IVR)
    effects = call.cancel("caller", NOW)
    assert call.state is S.RELEASED and call.cause == "cancelled" and sent(effects) == []
    with pytest.raises(IllegalTransition):
        inbound(S.QUEUED).cancel("caller", NOW)


# -- outbound -------------------------------------------------------------------------------


def test_originate() -> None:
    call, effects = Call.originate("OB-1", request_id="RQ1", from_number="95598",
                                   to_number="+862", context={"callback_id": "CB1"},
                                   headers={"X-Hotline-Request-Id": "RQ1"}, switch_id="sw",
                                   invite_cseq=3, now=NOW)
    assert call.state is S.DIALING and call.direction == "outbound"
    [invite] = [e for e in effects if isinstance(e, Send)]
    assert (invite.method, invite.leg, invite.cseq) == ("INVITE", "customer", 3)
    assert invite.fields["headers"] == {"X-Hotline-Request-Id": "RQ1"}
    assert emitted(effects)[0][0] == "cti.call.originated"


def test_customer_answers_into_survey() -> None:
    call = outbound()
    assert call.on_customer_response(3, 180, NOW) == []
    assert call.party_leg is LegState.RINGING
    effects = call.on_customer_response(3, 200, NOW)
    assert call.state is S.IN_IVR and call.party == "customer"
    assert sent(effects) == [("ACK", "customer")]
    assert emitted(effects)[0][1]["context"] == {"purpose": "survey"}
    assert emitted(effects)[0][1]["direction"] == "outbound"
    assert sent(hangup(call, "customer", NOW)) == []
    assert call.cause == "customer_hangup"


@pytest.mark.parametrize(("status", "cause"), [(480, "no_answer"), (408, "no_answer"),
                                               (486, "busy"), (603, "rejected")])
def test_customer_does_not_answer(status: int, cause: str) -> None:
    call = outbound()
    effects = call.on_customer_response(3, status, NOW)
    assert call.state is S.RELEASED and call.cause == cause and sent(effects) == []
    assert emitted(effects)[0][1]["context"] == {"purpose": "survey"}


def test_release_while_dialing_cancels_the_customer_leg() -> None:
    call = outbound()
    assert sent(call.release("agent_release", NOW)) == [("CANCEL", "customer")]
    # Their 200 crossed our CANCEL: take it and hang up.
    assert sent(call.on_customer_response(3, 200, NOW)) == [("ACK", "customer"),
                                                           ("BYE", "customer")]


def test_domain_is_sans_io() -> None:
    """The domain package imports no I/O framework (house style)."""
    import ast
    from pathlib import Path

    import services.cti_gateway.domain as domain

    forbidden = {"asyncio", "sqlalchemy", "fastapi", "starlette", "aio_pika", "httpx"}
    for path in Path(domain.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & forbidden, (path.name, names)


# -- agent-first dial (virtual hold) -----------------------------------------------------


def agent_first() -> tuple[Call, list[Effect]]:
    return Call.dial_agent_first(
        "C9.vh1", held_call_id="C9", agent_id="A001", device="agent:A001",
        reservation_id="R9", queue="repair", from_number="95598", to_number="+8613800000009",
        switch_id="sw-1", invite_cseq=21, now=NOW, ring_timeout=20)


def test_agent_first_rings_the_agent_then_dials_the_customer_then_connects() -> None:
    call, effects = agent_first()
    assert (call.state, call.direction, call.agent_first) == (S.ALERTING, "outbound", True)
    [invite] = [e for e in effects if isinstance(e, Send)]
    assert (invite.method, invite.leg, invite.cseq) == ("INVITE", "agent", 21)
    assert invite.fields["from"] == "+8613800000009"  # the agent sees whom they will call
    assert emitted(effects)[0][0] == "cti.call.originated"
    assert emitted(call.on_agent_response(21, 180, NOW))[0][0] == "cti.agent.alerting"
    # The agent picks up: ACK, and the customer's phone rings (CSeq from the link).
    picked_up = NOW + timedelta(seconds=3)
    effects = call.on_agent_response(21, 200, picked_up, next_cseq=lambda: 22,
                                     dial_timeout=40)
    assert call.state is S.DIALING and call.agent_leg is LegState.UP
    assert sent(effects) == [("ACK", "agent"), ("INVITE", "customer")]
    assert effects[1].fields["to"] == "+8613800000009"  # type: ignore[union-attr]
    assert emitted(effects) == []
    assert call.ring_deadline == picked_up + timedelta(seconds=40)
    # The agent phone's 200 again (a retransmission) does not hang the agent up.
    assert call.on_agent_response(21, 200, picked_up, next_cseq=lambda: 23) == []
    effects = call.on_customer_response(22, 200, NOW + timedelta(seconds=9))
    assert call.state is S.CONNECTED and call.ring_deadline is None
    assert sent(effects) == [("ACK", "customer")]
    [(kind, data)] = emitted(effects)
    assert kind == "cti.call.connected"
    assert (data["call_id"], data["agent_id"], data["reservation_id"]) == ("C9.vh1", "A001",
                                                                           "R9")
    # Either side may hang up; the other gets the BYE.
    effects = hangup(call, "customer", NOW + timedelta(seconds=70))
    assert sent(effects) == [("BYE", "agent")]
    assert emitted(effects)[0][1]["cause"] == "customer_hangup"


def test_agent_first_dial_ends_when_the_agent_does_not_answer() -> None:
    call, _ = agent_first()
    effects = call.on_agent_response(21, 486, NOW)
    assert call.state is S.RELEASED
    assert sent(effects) == []  # the agent's INVITE is over and nobody else was called
    assert [kind for kind, _ in emitted(effects)] == ["cti.agent.ring_failed",
                                                      "cti.call.released"]
    timed_out, _ = agent_first()
    effects = timed_out.check_ring_timeout(NOW + timedelta(seconds=20))
    assert timed_out.state is S.RELEASED and sent(effects) == [("CANCEL", "agent")]
    assert emitted(effects)[0][1]["reason"] == "no_answer"


@pytest.mark.parametrize(("status", "cause"), [(486, "busy"), (480, "no_answer"),
                                               (603, "rejected")])
def test_agent_first_dial_ends_when_the_customer_does_not_answer(status: int,
                                                                 cause: str) -> None:
    call, _ = agent_first()
    call.on_agent_response(21, 200, NOW, next_cseq=lambda: 22, dial_timeout=40)
    effects = call.on_customer_response(22, status, NOW + timedelta(seconds=5))
    assert call.state is S.RELEASED and sent(effects) == [("BYE", "agent")]
    [(kind, data)] = emitted(effects)
    assert (kind, data["cause"], data["state"]) == ("cti.call.released", cause, "dialing")
    unanswered, _ = agent_first()
    unanswered.on_agent_response(21, 200, NOW, next_cseq=lambda: 22, dial_timeout=40)
    assert unanswered.check_ring_timeout(NOW + timedelta(seconds=39)) == []
    effects = unanswered.check_ring_timeout(NOW + timedelta(seconds=40))
    assert sent(effects) == [("CANCEL", "customer"), ("BYE", "agent")]


def test_an_expired_reservation_ends_the_agent_first_dial() -> None:
    call, _ = agent_first()
    call.on_agent_response(21, 200, NOW, next_cseq=lambda: 22, dial_timeout=40)
    assert call.withdraw_ring("R-other", NOW) == []
    effects = call.withdraw_ring("R9", NOW)
    assert call.state is S.RELEASED
    assert sent(effects) == [("CANCEL", "customer"), ("BYE", "agent")]
    assert emitted(effects)[0][1]["cause"] == "reservation_expired"


def test_a_queued_notice_offers_virtual_hold_when_asked() -> None:
    call = inbound()
    [send] = call.enqueue("repair", 9, 600.0, "1")
    assert isinstance(send, Send) and send.fields["notify"]["virtual_hold"] == {"digit": "1"}
    [plain] = call.enqueue("repair", 8, 500.0)
    assert isinstance(plain, Send) and "virtual_hold" not in plain.fields["notify"]
