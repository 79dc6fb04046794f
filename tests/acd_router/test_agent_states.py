"""The agent state machine, every (state, action) pair, legal and illegal."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from services.acd_router.domain import Action, Agent, AgentState, Pending
from services.acd_router.domain.agents import TRANSITIONS, allowed_actions
from shared.errors import Conflict, IllegalTransition

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
    (S.NOT_READY, A.AUTO_READY): S.READY,
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
    (S.WRAP_UP, A.EXTEND_WRAP_UP): S.WRAP_UP,
    (S.RESERVED, A.SET_NEXT): DEFER,
    (S.ON_CALL, A.SET_NEXT): DEFER,
    (S.WRAP_UP, A.SET_NEXT): DEFER,
    (S.NOT_READY, A.FORCE_READY): S.READY,
    (S.NOT_READY, A.FORCE_NOT_READY): S.NOT_READY,
    (S.NOT_READY, A.FORCE_LOGOUT): S.LOGGED_OUT,
    (S.READY, A.FORCE_NOT_READY): S.NOT_READY,
    (S.READY, A.FORCE_LOGOUT): S.LOGGED_OUT,
    (S.RESERVED, A.FORCE_READY): S.READY,
    (S.RESERVED, A.FORCE_NOT_READY): S.NOT_READY,
    (S.RESERVED, A.FORCE_LOGOUT): S.LOGGED_OUT,
    (S.ON_CALL, A.FORCE_READY): DEFER,
    (S.ON_CALL, A.FORCE_NOT_READY): DEFER,
    (S.ON_CALL, A.FORCE_LOGOUT): DEFER,
    (S.WRAP_UP, A.FORCE_READY): S.READY,
    (S.WRAP_UP, A.FORCE_NOT_READY): S.NOT_READY,
    (S.WRAP_UP, A.FORCE_LOGOUT): S.LOGGED_OUT,
}
# A mandatory wrap-up differs only here: the agent cannot end it.
MANDATORY_REFUSED = {(S.WRAP_UP, A.READY), (S.WRAP_UP, A.NOT_READY)}
# What each deferring action leaves as the pending state.
PENDING_AFTER = {A.READY: None, A.FORCE_READY: None, A.SET_NEXT: Pending(S.NOT_READY, "break"),
                 A.NOT_READY: Pending(S.NOT_READY, "lunch"), A.LOGOUT: Pending(S.LOGGED_OUT),
                 A.FORCE_NOT_READY: Pending(S.NOT_READY, "lunch"),
                 A.FORCE_LOGOUT: Pending(S.LOGGED_OUT)}


def agent_in(state: AgentState, **extra: object) -> Agent:
    busy = state in (S.RESERVED, S.ON_CALL, S.WRAP_UP)
    values: dict[str, object] = {
        "agent_id": "A001", "state": state, "skills": {"repair": 8},
        "ready_since": EARLIER if state in (S.READY, S.RESERVED) else None,
        "call_id": "C1" if busy else None, "reservation_id": "R1" if busy else None,
        "reason": "break" if state is S.NOT_READY else None,
        "wrapup_deadline": NOW + timedelta(seconds=30) if state is S.WRAP_UP else None,
        "wrapup_limit": NOW + timedelta(seconds=300) if state is S.WRAP_UP else None,
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
        case A.EXTEND_WRAP_UP:
            agent.extend_wrap_up(now, 60)
            return None
        case A.SET_NEXT:
            agent.set_next(now, S.NOT_READY, "break")
            return None
        case A.FORCE_READY | A.FORCE_NOT_READY | A.FORCE_LOGOUT:
            return agent.force(action, now,
                               reason="lunch" if action is A.FORCE_NOT_READY else None)
        case A.AUTO_READY:
            return agent.auto_ready(now)
    raise AssertionError(action)


def test_expected_table_matches_the_domain_table() -> None:
    assert set(EXPECTED) == set(TRANSITIONS)


@pytest.mark.parametrize(("state", "action", "mandatory"),
                         list(itertools.product(AgentState, Action, [False, True])),
                         ids=lambda v: v.value if hasattr(v, "value") else
                         ("mandatory" if v else "discretionary"))
def test_every_state_and_action(state: AgentState, action: Action, mandatory: bool) -> None:
    agent = agent_in(state, wrapup_mandatory=mandatory and state is S.WRAP_UP)
    expected = EXPECTED.get((state, action))
    if mandatory and (state, action) in MANDATORY_REFUSED:
        expected = None
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
        if (state, action) in ((S.ON_CALL, A.READY), (S.RESERVED, A.READY)):
            # Ready on a call is remembered: the coming discretionary wrap-up is skipped.
            assert agent.pending == Pending(S.READY)
        else:
            assert agent.pending == PENDING_AFTER[action]
        return
    assert agent.state is expected
    if (state, action) == (S.WRAP_UP, A.EXTEND_WRAP_UP):
        assert change is None and agent.wrapup_deadline == NOW + timedelta(seconds=90)
        return
    if (state, action) in ((S.NOT_READY, A.NOT_READY), (S.NOT_READY, A.FORCE_NOT_READY)):
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
        ["cancel", "connect", "expire", "logout", "not_ready", "ready", "ring_failed",
         "set_next", "force_ready", "force_not_ready", "force_logout"])
    with pytest.raises(IllegalTransition) as caught:
        agent_in(S.LOGGED_OUT).force(A.FORCE_READY, NOW)
    assert caught.value.allowed == []
    with pytest.raises(IllegalTransition) as caught:
        agent_in(S.READY).force(A.FORCE_READY, NOW)
    assert caught.value.allowed == ["force_logout", "force_not_ready"]


def test_mandatory_wrap_up_refuses_ending_it_and_lists_what_is_left() -> None:
    agent = agent_in(S.ON_CALL)
    agent.call_ended(NOW, 30, mandatory=True, max_seconds=120)
    with pytest.raises(IllegalTransition) as caught:
        agent.request(A.READY, NOW)
    assert caught.value.state == "wrap_up"
    assert caught.value.allowed == ["extend_wrap_up", "logout", "set_next"]
    # The agent queues a break instead; it applies when the wrap-up times out.
    agent.set_next(NOW, S.NOT_READY, "break")
    agent.end_wrap_up(NOW + timedelta(seconds=30))
    assert (agent.state, agent.reason, agent.wrapup_mandatory) == (S.NOT_READY, "break", False)


@pytest.mark.parametrize("missed", ["ring_failed", "expire"])
def test_auto_ready_after_a_ring_no_answer(missed: str) -> None:
    """Configured, a ring no answer arms the ACD's own ready; off, it does not; any newer
    change of state (the agent's own not ready, a supervisor) disarms it."""
    agent = agent_in(S.RESERVED)
    getattr(agent, missed)(NOW, auto_ready_after=10)
    assert (agent.state, agent.reason) == (S.NOT_READY, "ring_no_answer")
    assert not agent.auto_ready_due(NOW + timedelta(seconds=9))
    assert agent.auto_ready_due(NOW + timedelta(seconds=10))
    change = agent.auto_ready(NOW + timedelta(seconds=10))
    assert change is not None and agent.state is S.READY and agent.auto_ready_at is None

    off = agent_in(S.RESERVED)
    getattr(off, missed)(NOW)
    assert off.auto_ready_at is None and not off.auto_ready_due(NOW + timedelta(days=1))

    chose = agent_in(S.RESERVED)
    getattr(chose, missed)(NOW, auto_ready_after=10)
    chose.request(A.NOT_READY, NOW + timedelta(seconds=1), reason="lunch")
    assert not chose.auto_ready_due(NOW + timedelta(seconds=60))

    pending = agent_in(S.RESERVED, pending=Pending(S.NOT_READY, "meeting"))
    getattr(pending, missed)(NOW, auto_ready_after=10)
    # A not ready the agent had asked for applies instead, and is theirs to end.
    assert pending.reason == "meeting" and pending.auto_ready_at is None


def test_extending_wrap_up_stops_at_the_cap() -> None:
    agent = agent_in(S.ON_CALL)
    agent.call_ended(NOW, 30, max_seconds=100)
    assert agent.wrapup_limit == NOW + timedelta(seconds=100)
    assert agent.extend_wrap_up(NOW, 60) == 60
    assert agent.extend_wrap_up(NOW, 60) == 10  # capped at 100 s after the call
    assert agent.wrapup_deadline == NOW + timedelta(seconds=100)
    with pytest.raises(Conflict):
        agent.extend_wrap_up(NOW, 60)
    with pytest.raises(IllegalTransition):
        agent_in(S.READY).extend_wrap_up(NOW, 60)


def test_next_state_ready_clears_it_and_a_call_state_cannot_be_next() -> None:
    agent = agent_in(S.ON_CALL)
    agent.set_next(NOW, S.LOGGED_OUT)
    assert agent.pending == Pending(S.LOGGED_OUT)
    agent.set_next(NOW, S.READY)
    assert agent.pending is None
    with pytest.raises(ValueError):
        agent.set_next(NOW, S.ON_CALL)
    with pytest.raises(IllegalTransition):
        agent_in(S.READY).set_next(NOW, S.NOT_READY, "break")


def test_force_from_wrap_up_and_reserved_ignores_the_agents_pending_state() -> None:
    agent = agent_in(S.WRAP_UP, pending=Pending(S.LOGGED_OUT), wrapup_mandatory=True)
    change = agent.force(A.FORCE_READY, NOW)
    assert change is not None and agent.state is S.READY and agent.pending is None
    agent = agent_in(S.RESERVED, pending=Pending(S.LOGGED_OUT))
    agent.force(A.FORCE_NOT_READY, NOW, reason="coaching")
    assert (agent.state, agent.reason, agent.call_id) == (S.NOT_READY, "coaching", None)


@pytest.mark.parametrize(("before", "to", "code", "reason", "deferred", "withdrawn"), [
    (S.READY, S.NOT_READY, None, "supervisor", False, None),
    (S.READY, S.NOT_READY, "coaching", "coaching", False, None),
    (S.NOT_READY, S.READY, "ignored", None, False, None),
    (S.RESERVED, S.NOT_READY, None, "supervisor", False, ("C1", "R1")),
    (S.ON_CALL, S.LOGGED_OUT, None, None, True, None),
])
def test_a_supervisors_force_says_what_it_did(before: AgentState, to: AgentState,
                                              code: str | None, reason: str | None,
                                              deferred: bool,
                                              withdrawn: tuple[str, str] | None) -> None:
    agent = agent_in(before)
    previous_reason = agent.reason
    forced = agent.force_to(to, NOW, reason_code=code)
    assert (forced.from_state, forced.from_reason, forced.reason, forced.deferred,
            forced.withdrawn) == (before, previous_reason, reason, deferred, withdrawn)
    assert agent.state is (before if deferred else to)


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
    assert agent.pending == Pending(S.READY)  # the logout is cancelled
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


def test_ready_clicked_before_the_release_arrives_skips_a_discretionary_wrap_up() -> None:
    """The agent hangs up and clicks ready at once; the ACD hears of the release after."""
    agent = agent_in(S.ON_CALL)
    assert agent.request(A.READY, NOW) is None
    agent.call_ended(NOW, 60)
    assert agent.state is S.WRAP_UP and agent.wrap_up_due(NOW)
    change = agent.end_wrap_up(NOW)
    assert change is not None and agent.state is S.READY


def test_ready_clicked_early_still_serves_a_mandatory_wrap_up() -> None:
    agent = agent_in(S.ON_CALL)
    agent.request(A.READY, NOW)
    agent.call_ended(NOW, 60, mandatory=True)
    assert not agent.wrap_up_due(NOW + timedelta(seconds=59))
    assert agent.wrap_up_due(NOW + timedelta(seconds=60))
    agent.end_wrap_up(NOW + timedelta(seconds=60))
    assert agent.state is S.READY


def test_ready_clicked_while_ringing_wins_over_the_late_ring_failure() -> None:
    agent = agent_in(S.RESERVED)
    agent.request(A.READY, NOW)
    agent.ring_failed(NOW)
    assert agent.state is S.READY


def test_ready_clicked_while_ringing_does_not_skip_wrap_up_after_answering() -> None:
    agent = agent_in(S.RESERVED)
    agent.request(A.READY, NOW)
    agent.connect(NOW, NOW.date())
    assert agent.pending is None
    agent.call_ended(NOW, 60)
    assert not agent.wrap_up_due(NOW + timedelta(seconds=30))
