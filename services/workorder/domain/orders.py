"""Work orders: types, the order state machine and its audit trail.

Skeleton lifecycle (SLA clocks, dispatch and escalation will add states and deadlines here)::

    created ──resolve──▶ resolved ──start_callback──▶ callback_pending ──close──▶ closed
                            ▲                              │
                            └────────resolve──── reopened ◀┘ reopen (dissatisfied / unreachable)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal

from shared.errors import IllegalTransition, Invalid

Satisfaction = Literal["satisfied", "neutral", "dissatisfied"]
SATISFACTIONS: tuple[Satisfaction, ...] = ("satisfied", "neutral", "dissatisfied")


class OrderType(StrEnum):
    REPAIR = "repair"              # 故障报修
    COMPLAINT = "complaint"        # 投诉
    REPORT = "report"              # 举报
    OPINION = "opinion"            # 意见
    SUGGESTION = "suggestion"      # 建议
    CONSULTATION = "consultation"  # 咨询
    PRAISE = "praise"              # 表扬


class OrderState(StrEnum):
    CREATED = "created"
    RESOLVED = "resolved"
    CALLBACK_PENDING = "callback_pending"
    CLOSED = "closed"
    REOPENED = "reopened"


class OrderAction(StrEnum):
    CREATE = "create"
    RESOLVE = "resolve"
    START_CALLBACK = "start_callback"
    CLOSE = "close"
    REOPEN = "reopen"


INITIAL_STATE = OrderState.CREATED

TRANSITIONS: Mapping[OrderState, Mapping[OrderAction, OrderState]] = {
    OrderState.CREATED: {OrderAction.RESOLVE: OrderState.RESOLVED},
    OrderState.RESOLVED: {OrderAction.START_CALLBACK: OrderState.CALLBACK_PENDING},
    OrderState.CALLBACK_PENDING: {OrderAction.CLOSE: OrderState.CLOSED,
                                  OrderAction.REOPEN: OrderState.REOPENED},
    # Reopened work goes back to whoever resolves it; each resolution owes its own callback.
    OrderState.REOPENED: {OrderAction.RESOLVE: OrderState.RESOLVED},
    OrderState.CLOSED: {},
}

TERMINAL_STATES = frozenset(s for s, actions in TRANSITIONS.items() if not actions)

REOPEN_DISSATISFIED = "dissatisfied"
REOPEN_UNREACHABLE = "callback_unreachable"


@dataclass(frozen=True)
class Order:
    """The part of an order its state machine decides on; descriptive fields live at the edge."""

    order_id: str
    type: OrderType
    state: OrderState = INITIAL_STATE
    # How many times it has been resolved; each resolution is owed exactly one callback.
    resolution: int = 0
    reply: str | None = None
    satisfaction: Satisfaction | None = None


@dataclass(frozen=True)
class Transition:
    """One audited step: who moved the order from which state to which, when and why."""

    order_id: str
    action: OrderAction
    from_state: OrderState | None
    to_state: OrderState
    at: datetime
    actor: str
    reason: str | None = None


def allowed_actions(state: OrderState) -> list[str]:
    return sorted(action.value for action in TRANSITIONS[state])


def is_open(state: OrderState) -> bool:
    return state not in TERMINAL_STATES


def require_contact(customer_account: str | None, contact_number: str | None) -> None:
    """Every accepted item is closed-loop, so there must be someone to call back."""
    if not customer_account and not contact_number:
        raise Invalid("contact_number", "an order needs a customer_account or a contact_number")


def create(order_id: str, order_type: OrderType, *, now: datetime, actor: str,
           reason: str | None = None) -> tuple[Order, Transition]:
    order = Order(order_id=order_id, type=order_type)
    return order, Transition(order_id, OrderAction.CREATE, None, order.state, now, actor, reason)


def apply(order: Order, action: OrderAction, *, now: datetime, actor: str,
          reason: str | None = None) -> tuple[Order, Transition]:
    target = TRANSITIONS[order.state].get(action)
    if target is None:
        raise IllegalTransition("order", order.state.value, action.value,
                                allowed_actions(order.state))
    return (replace(order, state=target),
            Transition(order.order_id, action, order.state, target, now, actor, reason))


def resolve(order: Order, reply: str, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    resolved, step = apply(order, OrderAction.RESOLVE, now=now, actor=actor, reason=reply)
    return replace(resolved, resolution=order.resolution + 1, reply=reply,
                   satisfaction=None), step


def start_callback(order: Order, *, now: datetime, actor: str,
                   reason: str | None = None) -> tuple[Order, Transition]:
    return apply(order, OrderAction.START_CALLBACK, now=now, actor=actor, reason=reason)


def reopen(order: Order, reason: str, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    return apply(order, OrderAction.REOPEN, now=now, actor=actor, reason=reason)


def apply_callback_outcome(order: Order, outcome: Satisfaction | Literal["unreachable"], *,
                           now: datetime, actor: str) -> tuple[Order, Transition]:
    """The closed loop: a content customer closes the order; an unhappy or unreachable one
    reopens it for another resolution (and another callback)."""
    if outcome == "unreachable":
        return reopen(order, REOPEN_UNREACHABLE, now=now, actor=actor)
    if outcome == "dissatisfied":
        reopened, step = reopen(order, REOPEN_DISSATISFIED, now=now, actor=actor)
        return replace(reopened, satisfaction=outcome), step
    closed, step = apply(order, OrderAction.CLOSE, now=now, actor=actor, reason=outcome)
    return replace(closed, satisfaction=outcome), step
