"""The callback obligation: one task per resolution, dialled until the customer answers the
survey or the attempts run out.

::

    pending ──dial──▶ dialing ──answer──▶ completed
       ▲ │               │
       │ └──give_up──▶ unreachable (number denied or none on file: no attempt can succeed)
       └──────retry──────┤ (attempt failed, attempts left)
                         └──give_up──▶ unreachable (attempt failed, none left)

A due task outside calling hours or over its number's daily cap is deferred (``due_at``
moves) without using an attempt.

``due_at`` is the task's one timer: in ``pending`` when to dial, in ``dialing`` when the
attempt times out (no outcome heard counts as a failed attempt). A late survey answer for the
latest attempt is still taken while the retry waits in ``pending``: the customer did answer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from services.workorder.domain.orders import Satisfaction
from shared.errors import IllegalTransition
from shared.transitions import Transitions

Outcome = Literal["satisfied", "neutral", "dissatisfied", "unreachable"]


class CallbackState(StrEnum):
    PENDING = "pending"
    DIALING = "dialing"
    COMPLETED = "completed"
    UNREACHABLE = "unreachable"


class CallbackAction(StrEnum):
    DIAL = "dial"
    ANSWER = "answer"
    RETRY = "retry"
    GIVE_UP = "give_up"


TRANSITIONS: Transitions[CallbackState, CallbackAction, CallbackState] = Transitions("callback", {
    (CallbackState.PENDING, CallbackAction.DIAL): CallbackState.DIALING,
    (CallbackState.PENDING, CallbackAction.ANSWER): CallbackState.COMPLETED,
    # A number that may never be dialled (deny list, none on file): retrying cannot help, so
    # the case goes back to people at once.
    (CallbackState.PENDING, CallbackAction.GIVE_UP): CallbackState.UNREACHABLE,
    (CallbackState.DIALING, CallbackAction.ANSWER): CallbackState.COMPLETED,
    (CallbackState.DIALING, CallbackAction.RETRY): CallbackState.PENDING,
    (CallbackState.DIALING, CallbackAction.GIVE_UP): CallbackState.UNREACHABLE,
})

ACTIVE_STATES = frozenset({CallbackState.PENDING, CallbackState.DIALING})


class StaleAttempt(Exception):
    """An outcome for an attempt that is not the task's latest: a superseded fact, ignored."""

    def __init__(self, callback_id: str, attempt: int, current: int) -> None:
        super().__init__(f"callback {callback_id}: attempt {attempt} is not the latest ({current})")
        self.attempt = attempt
        self.current = current


@dataclass(frozen=True)
class CallbackPolicy:
    delay: timedelta
    retry: timedelta
    max_attempts: int
    attempt_timeout: timedelta
    # Between the callers of one resolution (an outage's order may have hundreds): paced,
    # not all dialled in the same second.
    spacing: timedelta = timedelta(0)

    @classmethod
    def from_seconds(cls, *, delay: float, retry: float, max_attempts: int,
                     attempt_timeout: float, spacing: float = 0.0) -> CallbackPolicy:
        if max_attempts < 1:
            raise ValueError("a callback needs at least one attempt")
        return cls(timedelta(seconds=delay), timedelta(seconds=retry), max_attempts,
                   timedelta(seconds=attempt_timeout), timedelta(seconds=spacing))


@dataclass(frozen=True)
class Callback:
    callback_id: str
    order_id: str
    resolution: int
    max_attempts: int
    state: CallbackState = CallbackState.PENDING
    attempts: int = 0
    due_at: datetime | None = None
    satisfaction: Satisfaction | None = None
    outcome: Outcome | None = None
    last_failure: str | None = None
    completed_at: datetime | None = None


def allowed_actions(state: CallbackState) -> list[str]:
    return TRANSITIONS.allowed(state)


def _step(callback: Callback, action: CallbackAction) -> CallbackState:
    return TRANSITIONS.target(callback.state, action)


def _latest(callback: Callback, attempt: int) -> None:
    if attempt != callback.attempts or attempt < 1:
        raise StaleAttempt(callback.callback_id, attempt, callback.attempts)


def schedule(callback_id: str, order_id: str, resolution: int, *, now: datetime,
             policy: CallbackPolicy, position: int = 0) -> Callback:
    """The task owed to the ``position``-th caller of a resolution (0: the order's own)."""
    return Callback(callback_id=callback_id, order_id=order_id, resolution=resolution,
                    max_attempts=policy.max_attempts,
                    due_at=now + policy.delay + position * policy.spacing)


def is_due(callback: Callback, now: datetime) -> bool:
    return callback.state in ACTIVE_STATES and callback.due_at is not None and callback.due_at <= now


def dial(callback: Callback, *, now: datetime, policy: CallbackPolicy) -> Callback:
    target = _step(callback, CallbackAction.DIAL)
    return replace(callback, state=target, attempts=callback.attempts + 1,
                   due_at=now + policy.attempt_timeout)


def fail_attempt(callback: Callback, attempt: int, reason: str, *, now: datetime,
                 policy: CallbackPolicy) -> tuple[Callback, CallbackAction]:
    _latest(callback, attempt)
    action = (CallbackAction.RETRY if callback.attempts < callback.max_attempts
              else CallbackAction.GIVE_UP)
    target = _step(callback, action)
    if action is CallbackAction.RETRY:
        return replace(callback, state=target, due_at=now + policy.retry,
                       last_failure=reason), action
    return replace(callback, state=target, due_at=None, last_failure=reason,
                   outcome="unreachable", completed_at=now), action


def give_up(callback: Callback, reason: str, *, now: datetime) -> Callback:
    """No attempt can succeed (the number is denied or missing): unreachable now."""
    target = _step(callback, CallbackAction.GIVE_UP)
    return replace(callback, state=target, due_at=None, last_failure=reason,
                   outcome="unreachable", completed_at=now)


def to_dial(callback: Callback) -> bool:
    """Due and not dialled yet (otherwise its attempt's timer ran out)."""
    return callback.state is CallbackState.PENDING


def defer(callback: Callback, until: datetime) -> Callback:
    """Outside calling hours or over the number's daily cap: wait, without using an attempt."""
    if callback.state is not CallbackState.PENDING:
        raise IllegalTransition("callback", callback.state.value, "defer",
                                allowed_actions(callback.state))
    return replace(callback, due_at=until)


def answer(callback: Callback, attempt: int, satisfaction: Satisfaction, *,
           now: datetime) -> Callback:
    _latest(callback, attempt)
    target = _step(callback, CallbackAction.ANSWER)
    return replace(callback, state=target, due_at=None, satisfaction=satisfaction,
                   outcome=satisfaction, completed_at=now)


def survey_result(callback: Callback, attempt: int, satisfaction: Satisfaction | None, *,
                  now: datetime, policy: CallbackPolicy) -> tuple[Callback, CallbackAction]:
    """A survey without a valid answer did not reach the customer's opinion: a failed attempt."""
    if satisfaction is None:
        return fail_attempt(callback, attempt, "no_answer_given", now=now, policy=policy)
    return answer(callback, attempt, satisfaction, now=now), CallbackAction.ANSWER


def on_timer(callback: Callback, *, now: datetime,
             policy: CallbackPolicy) -> tuple[Callback, CallbackAction]:
    """The task's deadline passed: dial the next attempt, or time the current one out."""
    if not is_due(callback, now):
        raise IllegalTransition("callback", callback.state.value, "timer",
                                allowed_actions(callback.state))
    if callback.state is CallbackState.PENDING:
        return dial(callback, now=now, policy=policy), CallbackAction.DIAL
    return fail_attempt(callback, callback.attempts, "timeout", now=now, policy=policy)
