"""The agent state machine.

Plain synchronous code: every change goes through :data:`TRANSITIONS`, ``now`` is passed in,
and the timers (the wrap-up's end, the auto-ready after a ring no answer) are deadlines
stored on the agent, which the caller persists and fires.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from shared.errors import Conflict, Forbidden, IllegalTransition
from shared.transitions import Transitions

RING_NO_ANSWER = "ring_no_answer"


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    NOT_READY = "not_ready"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


class Action(StrEnum):
    # Requested by the agent or a supervisor (REST).
    LOGIN = "login"
    READY = "ready"
    NOT_READY = "not_ready"
    LOGOUT = "logout"
    # Driven by routing, CTI events and timers.
    RESERVE = "reserve"
    CONNECT = "connect"
    RING_FAILED = "ring_failed"
    EXPIRE = "expire"
    CANCEL = "cancel"
    CALL_ENDED = "call_ended"
    END_WRAP_UP = "end_wrap_up"
    # The ACD's own timer: an agent put in not ready by a ring no answer is made ready again
    # after a configured pause (a desktop's auto-ready), unless they changed state meanwhile.
    AUTO_READY = "auto_ready"
    # Requested by the agent: more wrap-up time; the state to take once the call is over.
    EXTEND_WRAP_UP = "extend_wrap_up"
    SET_NEXT = "set_next"
    # A supervisor overriding the agent (audited at the edge).
    FORCE_READY = "force_ready"
    FORCE_NOT_READY = "force_not_ready"
    FORCE_LOGOUT = "force_logout"


USER_ACTIONS = frozenset({Action.LOGIN, Action.READY, Action.NOT_READY, Action.LOGOUT,
                          Action.EXTEND_WRAP_UP, Action.SET_NEXT})
FORCE_ACTIONS = frozenset({Action.FORCE_READY, Action.FORCE_NOT_READY, Action.FORCE_LOGOUT})

S, A = AgentState, Action

# Target state of each legal (state, action). ``None`` marks a request that cannot take effect
# while the agent is busy with a call: it is recorded as the pending next state instead, and
# applied when the agent leaves the call (wrap-up ends, or the reservation falls through).
TRANSITIONS: Transitions[AgentState, Action, AgentState | None] = Transitions("agent", {
    (S.LOGGED_OUT, A.LOGIN): S.NOT_READY,

    (S.NOT_READY, A.READY): S.READY,
    (S.NOT_READY, A.NOT_READY): S.NOT_READY,  # a new reason
    (S.NOT_READY, A.LOGOUT): S.LOGGED_OUT,
    (S.NOT_READY, A.AUTO_READY): S.READY,

    (S.READY, A.NOT_READY): S.NOT_READY,
    (S.READY, A.LOGOUT): S.LOGGED_OUT,
    (S.READY, A.RESERVE): S.RESERVED,

    (S.RESERVED, A.CONNECT): S.ON_CALL,
    (S.RESERVED, A.RING_FAILED): S.NOT_READY,
    (S.RESERVED, A.EXPIRE): S.NOT_READY,
    (S.RESERVED, A.CANCEL): S.READY,
    (S.RESERVED, A.READY): None,
    (S.RESERVED, A.NOT_READY): None,
    (S.RESERVED, A.LOGOUT): None,

    (S.ON_CALL, A.CALL_ENDED): S.WRAP_UP,
    (S.ON_CALL, A.READY): None,
    (S.ON_CALL, A.NOT_READY): None,
    (S.ON_CALL, A.LOGOUT): None,

    # The agent may end wrap-up early by asking for ready / not ready; logging out mid
    # after-call work is deferred so the work is not cut short.
    (S.WRAP_UP, A.READY): S.READY,
    (S.WRAP_UP, A.NOT_READY): S.NOT_READY,
    (S.WRAP_UP, A.LOGOUT): None,
    (S.WRAP_UP, A.END_WRAP_UP): S.READY,
    (S.WRAP_UP, A.EXTEND_WRAP_UP): S.WRAP_UP,

    # "After this call": only meaningful while there is a call to be after.
    (S.RESERVED, A.SET_NEXT): None,
    (S.ON_CALL, A.SET_NEXT): None,
    (S.WRAP_UP, A.SET_NEXT): None,

    # Supervisor overrides. A forced reserved agent gives the call back (the edge requeues
    # it at its place); a call in progress cannot be taken from the customer, so a force
    # while on call becomes the next state; wrap-up, even mandatory, is cut short.
    (S.NOT_READY, A.FORCE_READY): S.READY,
    (S.NOT_READY, A.FORCE_NOT_READY): S.NOT_READY,
    (S.NOT_READY, A.FORCE_LOGOUT): S.LOGGED_OUT,
    (S.READY, A.FORCE_NOT_READY): S.NOT_READY,
    (S.READY, A.FORCE_LOGOUT): S.LOGGED_OUT,
    (S.RESERVED, A.FORCE_READY): S.READY,
    (S.RESERVED, A.FORCE_NOT_READY): S.NOT_READY,
    (S.RESERVED, A.FORCE_LOGOUT): S.LOGGED_OUT,
    (S.ON_CALL, A.FORCE_READY): None,
    (S.ON_CALL, A.FORCE_NOT_READY): None,
    (S.ON_CALL, A.FORCE_LOGOUT): None,
    (S.WRAP_UP, A.FORCE_READY): S.READY,
    (S.WRAP_UP, A.FORCE_NOT_READY): S.NOT_READY,
    (S.WRAP_UP, A.FORCE_LOGOUT): S.LOGGED_OUT,
})

# Refused in a mandatory wrap-up (the queue's ``wrapup.mode``): the agent may not end it
# early, only extend it or queue the state to take when it ends.
MANDATORY_WRAP_UP_REFUSES = frozenset({A.READY, A.NOT_READY})

# Leaving these through these actions consults the pending state first.
_PENDING_APPLIES = frozenset({A.RING_FAILED, A.EXPIRE, A.CANCEL, A.END_WRAP_UP})


def allowed_actions(state: AgentState, *, user_only: bool = False, force_only: bool = False,
                    mandatory_wrap_up: bool = False) -> list[str]:
    return TRANSITIONS.allowed(state, lambda action: (
        (not user_only or action in USER_ACTIONS) and (not force_only or action in FORCE_ACTIONS)
        and not (mandatory_wrap_up and state is S.WRAP_UP
                 and action in MANDATORY_WRAP_UP_REFUSES)))


@dataclass(frozen=True)
class Pending:
    state: AgentState
    reason: str | None = None


@dataclass(frozen=True)
class StateChange:
    """What an :class:`Agent` method changed; the edge turns it into ``acd.agent.state_changed``."""

    agent_id: str
    previous: AgentState
    state: AgentState
    reason: str | None
    call_id: str | None


# A supervisor's force: the state asked for -> the action; the not-ready reason code a forced
# not ready gets when the supervisor names none.
FORCES = {AgentState.READY: Action.FORCE_READY, AgentState.NOT_READY: Action.FORCE_NOT_READY,
          AgentState.LOGGED_OUT: Action.FORCE_LOGOUT}
FORCED_REASON = "supervisor"


@dataclass(frozen=True)
class Forced:
    """What a supervisor's force did, for the audit and the queue: the state and reason it
    left, the reason code it set, whether it waits for the call in progress to end, and the
    ringing reservation (call id, reservation id) it withdrew, if any."""

    change: StateChange | None
    from_state: AgentState
    from_reason: str | None
    reason: str | None
    deferred: bool
    withdrawn: tuple[str, str] | None


@dataclass
class Agent:
    agent_id: str
    state: AgentState = AgentState.LOGGED_OUT
    reason: str | None = None
    skills: dict[str, int] = field(default_factory=dict)
    device: str = ""
    team: str | None = None
    department: str | None = None
    state_since: datetime | None = None
    # When the agent last became ready: the longest-idle agent is served first.
    ready_since: datetime | None = None
    calls_handled: int = 0
    handled_day: date | None = None
    pending: Pending | None = None
    call_id: str | None = None
    reservation_id: str | None = None
    wrapup_deadline: datetime | None = None
    # Set when wrap-up starts, from the call's queue: may the agent end it early, and the
    # latest the deadline may be extended to.
    wrapup_mandatory: bool = False
    wrapup_limit: datetime | None = None
    # Set when a ring no answer puts the agent in not ready and auto-ready is configured.
    auto_ready_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.device:
            self.device = default_device(self.agent_id)

    # -- requests (REST) ---------------------------------------------------------------------

    def login(self, now: datetime, *, skills: dict[str, int], device: str | None,
              team: str | None, department: str | None = None, may_assign: bool = True
              ) -> StateChange | None:
        """Log in (again). The device, team and department are kept unless given; only a
        principal that ``may_assign`` (a supervisor or admin, not the agent itself) changes
        them once set: a device named by the agent's own login would let it ring a
        colleague's calls anywhere, and a team it chose would choose its supervisor. An
        agent's first login may name its team and department."""
        if not may_assign:
            for what, asked, held in (("rings on", device, self.device),
                                      ("is in team", team, self.team),
                                      ("is in department", department, self.department)):
                if asked is not None and held is not None and asked != held:
                    raise Forbidden(f"agent {self.agent_id!r} {what} {held!r}; another is "
                                    "set by a supervisor or an admin")
        change = self._apply(Action.LOGIN, now)
        self.skills = dict(skills)
        self.device = device or self.device
        self.team = team or self.team
        self.department = department or self.department
        return change

    def request(self, action: Action, now: datetime, *, reason: str | None = None
                ) -> StateChange | None:
        """An agent's own request (ready / not ready / logout). Returns None when deferred."""
        if action not in USER_ACTIONS or action is Action.LOGIN:
            raise ValueError(f"{action} is not a state request")
        return self._apply(action, now, reason=reason)

    def set_next(self, now: datetime, state: AgentState, reason: str | None = None) -> None:
        """Queue the state to take once the current call (and its wrap-up) is over; ``ready``
        clears it. Only while reserved, on call or in wrap-up."""
        if state not in (AgentState.READY, AgentState.NOT_READY, AgentState.LOGGED_OUT):
            raise ValueError(f"{state} cannot be a next state")
        self._apply(Action.SET_NEXT, now, reason=reason,
                    next_state=None if state is AgentState.READY else Pending(
                        state, reason if state is AgentState.NOT_READY else None))

    def extend_wrap_up(self, now: datetime, seconds: float) -> float:
        """Push the wrap-up deadline back, up to the queue's cap; returns the seconds added.
        Raises Conflict when the cap is already reached."""
        self._apply(Action.EXTEND_WRAP_UP, now)
        assert self.wrapup_deadline is not None
        target = self.wrapup_deadline + timedelta(seconds=seconds)
        if self.wrapup_limit is not None:
            target = min(target, self.wrapup_limit)
        added = (target - self.wrapup_deadline).total_seconds()
        if added <= 0:
            raise Conflict(f"agent {self.agent_id}: wrap-up is already at its longest")
        self.wrapup_deadline = target
        return added

    def force(self, action: Action, now: datetime, *, reason: str | None = None
              ) -> StateChange | None:
        """A supervisor's override. Returns None when it is deferred (on call) or changes
        nothing; the caller audits it either way."""
        if action not in FORCE_ACTIONS:
            raise ValueError(f"{action} is not a forced state")
        return self._apply(action, now, reason=reason)

    def force_to(self, state: AgentState, now: datetime, *, reason_code: str | None
                 ) -> Forced:
        """A supervisor sets the agent's state: a ringing reservation is withdrawn; a call in
        progress is not cut (the state becomes the agent's next one)."""
        before, before_reason = self.state, self.reason
        call_id, reservation_id = self.call_id, self.reservation_id
        code = (reason_code or FORCED_REASON) if state is AgentState.NOT_READY else None
        change = self.force(FORCES[state], now, reason=code)
        withdrawn = ((call_id, reservation_id) if before is AgentState.RESERVED
                     and call_id is not None and reservation_id is not None else None)
        return Forced(change, before, before_reason, code, before is AgentState.ON_CALL,
                      withdrawn)

    # -- routing and call progress -----------------------------------------------------------

    def reserve(self, now: datetime, *, call_id: str, reservation_id: str) -> StateChange | None:
        change = self._apply(Action.RESERVE, now)
        self.call_id = call_id
        self.reservation_id = reservation_id
        return replace(change, call_id=call_id) if change else None

    def connect(self, now: datetime, today: date) -> StateChange | None:
        change = self._apply(Action.CONNECT, now)
        if self.handled_day != today:
            self.handled_day, self.calls_handled = today, 0
        self.calls_handled += 1
        return change

    def ring_failed(self, now: datetime, *, auto_ready_after: float | None = None
                    ) -> StateChange | None:
        change = self._apply(Action.RING_FAILED, now, reason=RING_NO_ANSWER)
        self._arm_auto_ready(now, auto_ready_after)
        return change

    def expire(self, now: datetime, *, auto_ready_after: float | None = None
               ) -> StateChange | None:
        change = self._apply(Action.EXPIRE, now, reason=RING_NO_ANSWER)
        self._arm_auto_ready(now, auto_ready_after)
        return change

    def _arm_auto_ready(self, now: datetime, after: float | None) -> None:
        if (after is not None and self.state is AgentState.NOT_READY
                and self.reason == RING_NO_ANSWER):
            self.auto_ready_at = now + timedelta(seconds=after)

    def auto_ready_due(self, now: datetime) -> bool:
        return (self.state is AgentState.NOT_READY and self.auto_ready_at is not None
                and self.auto_ready_at <= now)

    def auto_ready(self, now: datetime) -> StateChange | None:
        return self._apply(Action.AUTO_READY, now)

    def cancel(self, now: datetime) -> StateChange | None:
        """The reserved call went away before it was answered (the caller hung up)."""
        return self._apply(Action.CANCEL, now)

    def call_ended(self, now: datetime, wrapup_seconds: float, *, mandatory: bool = False,
                   max_seconds: float | None = None) -> StateChange | None:
        change = self._apply(Action.CALL_ENDED, now)
        skip = (self.pending is not None and self.pending.state is AgentState.READY
                and not mandatory)
        # A discretionary wrap-up the agent already declined ends at the next deadline pass.
        self.wrapup_deadline = now + timedelta(seconds=0 if skip else wrapup_seconds)
        self.wrapup_mandatory = mandatory
        self.wrapup_limit = (None if max_seconds is None else
                             now + timedelta(seconds=max(wrapup_seconds, max_seconds)))
        return change

    def end_wrap_up(self, now: datetime) -> StateChange | None:
        return self._apply(Action.END_WRAP_UP, now)

    def on_call(self, call_id: str) -> bool:
        """Talking on this call (its release sends the agent to wrap-up)."""
        return self.state is AgentState.ON_CALL and self.call_id == call_id

    def wrap_up_due(self, now: datetime) -> bool:
        return (self.state is AgentState.WRAP_UP and self.wrapup_deadline is not None
                and self.wrapup_deadline <= now)

    # -- the one place state changes ---------------------------------------------------------

    def _apply(self, action: Action, now: datetime, *, reason: str | None = None,
               next_state: Pending | None = None) -> StateChange | None:
        key = (self.state, action)
        mandatory = self.state is AgentState.WRAP_UP and self.wrapup_mandatory
        if key not in TRANSITIONS or (mandatory and action in MANDATORY_WRAP_UP_REFUSES):
            raise IllegalTransition(f"agent {self.agent_id}", self.state.value, action.value,
                                    allowed_actions(self.state,
                                                    user_only=action in USER_ACTIONS,
                                                    force_only=action in FORCE_ACTIONS,
                                                    mandatory_wrap_up=mandatory))
        target = TRANSITIONS[key]
        if target is None:
            # READY while busy cancels an earlier deferred request (ready is the default). On a
            # call it also says "no wrap-up for me": the agent often hangs up and clicks ready
            # before the release reaches the ACD, and that click must not be lost.
            if action is Action.SET_NEXT:
                self.pending = next_state
            elif action is Action.READY and self.state in (AgentState.ON_CALL,
                                                             AgentState.RESERVED):
                # Ringing: the phone stopped and the agent clicked ready before the ring
                # failure reached the ACD; the click is the newer fact and wins over it.
                self.pending = Pending(AgentState.READY)
            elif action in (Action.READY, Action.FORCE_READY):
                self.pending = None
            else:
                self.pending = Pending(_REQUESTED[action], reason)
            return None
        if action in _PENDING_APPLIES and self.pending is not None:
            target, reason = self.pending.state, self.pending.reason
        return self._enter(action, target, reason if target is AgentState.NOT_READY else None,
                           now)

    def _enter(self, action: Action, target: AgentState, reason: str | None, now: datetime
               ) -> StateChange | None:
        previous, previous_reason, call_id = self.state, self.reason, self.call_id
        self.state, self.reason = target, reason
        # Any change of state (or of the not-ready reason) is the newer fact.
        self.auto_ready_at = None
        if target is not AgentState.WRAP_UP:
            self.wrapup_deadline = self.wrapup_limit = None
            self.wrapup_mandatory = False
        if target not in (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP):
            self.call_id = self.reservation_id = None
            self.pending = None
        if (target is AgentState.ON_CALL and self.pending is not None
                and self.pending.state is AgentState.READY):
            # A ready clicked while ringing says nothing about wrap-up after the call.
            self.pending = None
        if target is AgentState.READY:
            # A reservation the caller abandoned cost the agent nothing: keep their place in
            # the idle line rather than sending them to the back.
            if not (action is Action.CANCEL and self.ready_since is not None):
                self.ready_since = now
        elif target is not AgentState.RESERVED:
            self.ready_since = None
        if previous is target and previous_reason == reason:
            return None
        self.state_since = now
        return StateChange(self.agent_id, previous, target, reason, call_id)


_REQUESTED = {Action.NOT_READY: AgentState.NOT_READY, Action.LOGOUT: AgentState.LOGGED_OUT,
              Action.FORCE_NOT_READY: AgentState.NOT_READY,
              Action.FORCE_LOGOUT: AgentState.LOGGED_OUT}


def default_device(agent_id: str) -> str:
    return f"agent:{agent_id}"
