"""The agent state machine, every (state, action) pair, legal and illegal."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from services.acd_router.domain import Action, Agent, AgentState, Pending
from services.acd_router.domain.agents import TRANSITIONS, allowed_actions
from shared.errors import IllegalTransition

NOW = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=5)
S, A = AgentState, Action
DEFER = "defer"

# Written out by hand (not derived from TRANSITIONS) so the test checks the table.
EXPECTED: dict[tuple[AgentState, Action], AgentState | str] = {
    (S.LOGGED_OUT, A.LOGIN): S.NOT_READY,
    (S.NOT_READY, A.READY): S.READY,
    (S.NOT_READY, A.NOT_READY): S.NOT_READY,
    (S.NOT_READY, A.LOGOUT): S.LOGGED_OUT,
    (S.READY, A.NOT_READY): S.NOT_READY,
    (S.READY, A.LOGOUT): S.LOGGED_OUT,
    (S.READY, A.RESERVE): S.RESERVED,
    (S.RESERVED, A.CONNECT): S.ON_CALL,
    (S.RESERVED, A.RING_FAILED): S.NOT_READY,
    (S.RESERVED, A.EXPIRE): S.NOT_READY,
    (S.RESERVED, A.CANCEL): S.READY,
    (S.RESERVED, A.READY): DEFER,
    (S.RESERVED, A.NOT_READY): DEFER,
    (S.RESERVED, A.LOGOUT): DEFER,
    (S.ON_CALL, A.CALL_ENDED): S.WRAP_UP,
    (S.ON_CALL, A.READY): DEFER,
    (S.ON_CALL, A.NOT_READY): DEFER,
    (S.ON_CALL, A.LOGOUT): DEFER,
    (S.WRAP_UP, A.READY): S.READY,
    (S.WRAP_UP, A.NOT_READY): S.NOT_READY,
    (S.WRAP_UP, A.LOGOUT): DEFER,
    (S.WRAP_UP, A.END_WRAP_UP): S.READY,
}


def agent_in(state: AgentState, **extra: object) -> Agent:
    busy = state in (S.RESERVED, S.ON_CALL, S.WRAP_UP)
    values: dict[str, object] = {
        "agent_id": "A001", "state": state, "skills": {"repair": 8},
        "ready_since": EARLIER if state in (S.READY, S.RESERVED) else None,
        "call_id": "C1" if busy else None, "reservation_id": "R1" if busy else None,
        "reason": "break" if state is S.NOT_READY else None,
    }
    values.update(extra)
    return Agent(**values)  # type: ignore[arg-type]


def perform(agent: Agent, action: Action, now: datetime = NOW):
    match action:
        case A.LOGIN:
            return agent.login(now, skills={"repair": 8}, device=None, team="T1")
        case A.READY | A.NOT_READY | A.LOGOUT:
            return agent.request(action, now, reason="lunch" if action is A.NOT_READY else None)
        case A.RESERVE:
            return agent.reserve(now, call_id="C2", reservation_id="R2")
        case A.CONNECT:
            return agent.connect(now, now.date())
        case A.RING_FAILED:
            return agent.ring_failed(now)
        case A.EXPIRE:
            return agent.expire(now)
        case A.CANCEL:
            return agent.cancel(now)
        case A.CALL_ENDED:
            return agent.call_ended(now, 60)
        case A.END_WRAP_UP:
            return agent.end_wrap_up(now)
    raise AssertionError(action)


def test_expected_table_matches_the_domain_table() -> None:
    assert set(EXPECTED) == set(TRANSITIONS)


@pytest.mark.parametrize(("state", "action"), list(itertools.product(AgentState, Action)),
                         ids=lambda v: v.value)
def test_every_state_and_action(state: AgentState, action: Action) -> None:
    agent = agent_in(state)
    expected = EXPECTED.get((state, action))
    if expected is None:
        with pytest.raises(IllegalTransition) as caught:
            perform(agent, action)
        assert caught.value.state == state.value
        assert caught.value.action == action.value
        assert agent.state is state  # unchanged
        return
    change = perform(agent, action)
    if expected == DEFER:
        assert change is None
        assert agent.state is state
        assert agent.pending == (None if action is A.READY else
                                 Pending(S.NOT_READY if action is A.NOT_READY else S.LOGGED_OUT,
                                         "lunch" if action is A.NOT_READY else None))
        return
    assert agent.state is expected
    if (state, action) == (S.NOT_READY, A.NOT_READY):
        # Same state, new reason: still a change worth announcing.
        assert change is not None and change.reason == "lunch"
    else:
        assert change is not None
        assert (change.previous, change.state) == (state, expected)
    assert agent.state_since == NOW


def test_illegal_user_request_lists_user_actions_only() -> None:
    with pytest.raises(IllegalTransition) as caught:
        agent_in(S.LOGGED_OUT).request(A.READY, NOW)
    assert caught.value.allowed == ["login"]
    with pytest.raises(IllegalTransition) as caught:
        agent_in(S.READY).login(NOW, skills={}, device=None, team=None)
    assert caught.value.allowed == ["logout", "not_ready"]
    assert allowed_actions(S.RESERVED) == sorted(
        ["cancel", "connect", "expire", "logout", "not_ready", "ready", "ring_failed"])


def test_ready_since_tracks_idle_time() -> None:
    agent = agent_in(S.NOT_READY)
    perform(agent, A.READY)
    assert agent.ready_since == NOW
    perform(agent, A.RESERVE, NOW + timedelta(seconds=5))
    assert agent.ready_since == NOW
    # The caller hung up while it rang: the agent keeps their place in the idle line.
    agent.cancel(NOW + timedelta(seconds=9))
    assert agent.state is S.READY and agent.ready_since == NOW
    perform(agent, A.RESERVE)
    agent.connect(NOW, NOW.date())
    assert agent.ready_since is None


def test_ring_failure_and_expiry_say_ring_no_answer() -> None:
    for action in (A.RING_FAILED, A.EXPIRE):
        agent = agent_in(S.RESERVED)
        change = perform(agent, action)
        assert agent.reason == "ring_no_answer" and change and change.reason == "ring_no_answer"
        assert agent.call_id is None and agent.reservation_id is None


def test_reserve_change_names_the_call() -> None:
    change = agent_in(S.READY).reserve(NOW, call_id="C9", reservation_id="R9")
    assert change is not None and change.call_id == "C9"


def test_logout_while_on_call_is_applied_when_wrap_up_ends() -> None:
    agent = agent_in(S.ON_CALL)
    assert agent.request(A.LOGOUT, NOW) is None
    assert agent.pending == Pending(S.LOGGED_OUT)
    agent.call_ended(NOW, 60)
    assert agent.state is S.WRAP_UP and agent.wrapup_deadline == NOW + timedelta(seconds=60)
    assert not agent.wrap_up_due(NOW + timedelta(seconds=59))
    assert agent.wrap_up_due(NOW + timedelta(seconds=60))
    change = agent.end_wrap_up(NOW + timedelta(seconds=60))
    assert agent.state is S.LOGGED_OUT and change and change.previous is S.WRAP_UP
    assert agent.pending is None and agent.wrapup_deadline is None and agent.call_id is None


def test_pending_not_ready_keeps_its_reason_and_ready_cancels_it() -> None:
    agent = agent_in(S.ON_CALL)
    agent.request(A.NOT_READY, NOW, reason="meeting")
    agent.call_ended(NOW, 60)
    agent.end_wrap_up(NOW)
    assert (agent.state, agent.reason) == (S.NOT_READY, "meeting")

    agent = agent_in(S.RESERVED)
    agent.request(A.LOGOUT, NOW)
    agent.request(A.READY, NOW)
    assert agent.pending is None
    agent.cancel(NOW)
    assert agent.state is S.READY


def test_pending_logout_applies_when_the_reservation_falls_through() -> None:
    agent = agent_in(S.RESERVED)
    agent.request(A.LOGOUT, NOW)
    agent.ring_failed(NOW)
    assert agent.state is S.LOGGED_OUT and agent.reason is None


def test_ending_wrap_up_by_request_is_the_latest_word() -> None:
    agent = agent_in(S.WRAP_UP, pending=Pending(S.LOGGED_OUT))
    agent.request(A.READY, NOW)
    assert agent.state is S.READY and agent.pending is None


def test_calls_handled_today_resets_each_day() -> None:
    agent = agent_in(S.RESERVED, calls_handled=7, handled_day=date(2026, 7, 14))
    agent.connect(NOW, date(2026, 7, 15))
    assert (agent.calls_handled, agent.handled_day) == (1, date(2026, 7, 15))
    agent = agent_in(S.RESERVED, calls_handled=7, handled_day=date(2026, 7, 15))
    agent.connect(NOW, date(2026, 7, 15))
    assert agent.calls_handled == 8


def test_login_sets_device_team_and_skills() -> None:
    agent = Agent("A042")
    assert agent.device == "agent:A042"
    agent.login(NOW, skills={"billing": 5}, device="sip:1042", team="T2")
    assert (agent.device, agent.team, agent.skills) == ("sip:1042", "T2", {"billing": 5})
    assert agent.state is S.NOT_READY
