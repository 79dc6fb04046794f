"""Cases (work orders): types, the case state machine and its audit trail.

::

    created ─dispatch─▶ dispatched ─accept─▶ accepted ─arrive─▶ on_site   (arrive: repair only)
       │                 │  ▲ transfer          │ transfer          │
       │                 │  └───────────────────┘                   │
       └─────────────────┴──────────── resolve ─────────────────────┴──▶ resolved
    resolved ─start_callback─▶ callback_pending ─close─▶ closed
    resolved ─close─▶ closed                              (callback_request: no survey owed)
    callback_pending ─reopen─▶ reopened   (dissatisfied / callback unreachable)
    closed ─reopen─▶ reopened             (a supervisor reopens a closed case)
    reopened ─dispatch─▶ dispatched (二次派单) · reopened ─resolve─▶ resolved

``resolve`` is legal straight from created, dispatched and accepted: first-contact resolution.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from shared.errors import IllegalTransition, Invalid
from shared.transitions import Transitions

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
    CALLBACK_REQUEST = "callback_request"  # an abandoned / dropped call owed a call back


class OrderState(StrEnum):
    CREATED = "created"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CALLBACK_PENDING = "callback_pending"
    CLOSED = "closed"
    REOPENED = "reopened"


class OrderAction(StrEnum):
    CREATE = "create"
    DISPATCH = "dispatch"
    ACCEPT = "accept"
    ARRIVE = "arrive"
    TRANSFER = "transfer"
    RESOLVE = "resolve"
    START_CALLBACK = "start_callback"
    CLOSE = "close"
    REOPEN = "reopen"
    # Another caller's report of the same fault joins the order (no change of state).
    LINK = "link"


INITIAL_STATE = OrderState.CREATED
S, A = OrderState, OrderAction

TRANSITIONS: Transitions[OrderState, OrderAction, OrderState] = Transitions("order", {
    (S.CREATED, A.DISPATCH): S.DISPATCHED,
    (S.CREATED, A.RESOLVE): S.RESOLVED,
    (S.DISPATCHED, A.ACCEPT): S.ACCEPTED,
    (S.DISPATCHED, A.TRANSFER): S.DISPATCHED,
    (S.DISPATCHED, A.RESOLVE): S.RESOLVED,
    (S.ACCEPTED, A.ARRIVE): S.ON_SITE,
    (S.ACCEPTED, A.TRANSFER): S.DISPATCHED,
    (S.ACCEPTED, A.RESOLVE): S.RESOLVED,
    (S.ON_SITE, A.RESOLVE): S.RESOLVED,
    (S.RESOLVED, A.START_CALLBACK): S.CALLBACK_PENDING,
    (S.RESOLVED, A.CLOSE): S.CLOSED,
    (S.CALLBACK_PENDING, A.CLOSE): S.CLOSED,
    (S.CALLBACK_PENDING, A.REOPEN): S.REOPENED,
    # Reopened work is dispatched again (二次派单) or resolved at once; each resolution owes
    # its own callback.
    (S.REOPENED, A.DISPATCH): S.DISPATCHED,
    (S.REOPENED, A.RESOLVE): S.RESOLVED,
    (S.CLOSED, A.REOPEN): S.REOPENED,
})

# Closed is final for every measure; only a supervisor's explicit reopen brings a case back.
TERMINAL_STATES = frozenset({S.CLOSED})

# Types that owe no satisfaction survey: the case itself is the call back.
NO_SURVEY_TYPES = frozenset({OrderType.CALLBACK_REQUEST})
# Only a crew goes on site.
ON_SITE_TYPES = frozenset({OrderType.REPAIR})

# What a department needs before it can take a case (checked at dispatch: at first contact an
# agent files what is known and may resolve the case there and then).
REQUIRED_FOR_DISPATCH: Mapping[OrderType, tuple[str, ...]] = {
    OrderType.REPAIR: ("area", "description"),
    OrderType.COMPLAINT: ("description", "category"),
    OrderType.REPORT: ("description", "category"),
    OrderType.OPINION: ("description",),
    OrderType.SUGGESTION: ("description",),
    OrderType.CONSULTATION: ("description",),
    OrderType.PRAISE: ("description",),
    OrderType.CALLBACK_REQUEST: (),
}

REOPEN_DISSATISFIED = "dissatisfied"
REOPEN_UNREACHABLE = "callback_unreachable"


class MissingFields(Invalid):
    """422 listing every missing field at once."""

    def __init__(self, fields: list[str], why: str) -> None:
        super().__init__(fields[0], why)
        self.fields = fields

    def detail(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [{"loc": ["body", f], "msg": f"{f} is required: {self}", "type": "missing"}
                for f in self.fields]


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
    department: str | None = None
    owner: str | None = None
    dispatches: int = 0


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


def _permitted(order_type: OrderType | None, state: OrderState, action: OrderAction) -> bool:
    if (state, action) not in TRANSITIONS:
        return False
    if action is A.ARRIVE and order_type is not None and order_type not in ON_SITE_TYPES:
        return False
    if (state is S.RESOLVED and action is A.CLOSE and order_type is not None
            and order_type not in NO_SURVEY_TYPES):
        return False
    return not (state is S.RESOLVED and action is A.START_CALLBACK
                and order_type in NO_SURVEY_TYPES)


def allowed_actions(state: OrderState, order_type: OrderType | None = None) -> list[str]:
    return TRANSITIONS.allowed(state, lambda action: _permitted(order_type, state, action))


def linkable(state: OrderState) -> bool:
    """Whether a new report of the same fault may still join an order in this state."""
    return state in LINKABLE_STATES


def awaits_callback(order: Order) -> bool:
    """Resolved, and its callback not started yet (the first dial starts it)."""
    return order.state is S.RESOLVED


def is_open(state: OrderState) -> bool:
    return state not in TERMINAL_STATES


def owes_survey(order_type: OrderType) -> bool:
    return order_type not in NO_SURVEY_TYPES


def require_contact(customer_account: str | None, contact_number: str | None) -> None:
    """Every accepted item is closed-loop, so there must be someone to call back."""
    if not customer_account and not contact_number:
        raise Invalid("contact_number", "an order needs a customer_account or a contact_number")


def require_for_dispatch(order_type: OrderType, fields: Mapping[str, Any]) -> None:
    missing = [f for f in REQUIRED_FOR_DISPATCH[order_type] if not fields.get(f)]
    if missing:
        raise MissingFields(missing, f"a {order_type.value} case needs it before dispatch")


def create(order_id: str, order_type: OrderType, *, now: datetime, actor: str,
           reason: str | None = None) -> tuple[Order, Transition]:
    order = Order(order_id=order_id, type=order_type)
    return order, Transition(order_id, A.CREATE, None, order.state, now, actor, reason)


def apply(order: Order, action: OrderAction, *, now: datetime, actor: str,
          reason: str | None = None) -> tuple[Order, Transition]:
    if not _permitted(order.type, order.state, action):
        raise IllegalTransition("order", order.state.value, action.value,
                                allowed_actions(order.state, order.type))
    target = TRANSITIONS[(order.state, action)]
    return (replace(order, state=target),
            Transition(order.order_id, action, order.state, target, now, actor, reason))


def _reason(reason: str | None, field: str = "reason") -> str:
    if reason is None or not reason.strip():
        raise Invalid(field, "a reason is required")
    return reason.strip()


def dispatch(order: Order, department: str, *, now: datetime, actor: str,
             reason: str | None = None) -> tuple[Order, Transition]:
    moved, step = apply(order, A.DISPATCH, now=now, actor=actor,
                        reason=reason or f"to {department}")
    return replace(moved, department=department, owner=None,
                   dispatches=order.dispatches + 1), step


def accept(order: Order, owner: str, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    moved, step = apply(order, A.ACCEPT, now=now, actor=actor, reason=f"owner {owner}")
    return replace(moved, owner=owner), step


def arrive(order: Order, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    return apply(order, A.ARRIVE, now=now, actor=actor)


def transfer(order: Order, department: str, reason: str | None, *, now: datetime,
             actor: str) -> tuple[Order, Transition]:
    why = _reason(reason)
    if department == order.department:
        raise Invalid("department", f"the case is already with {department}")
    moved, step = apply(order, A.TRANSFER, now=now, actor=actor,
                        reason=f"{order.department} -> {department}: {why}")
    return replace(moved, department=department, owner=None), step


def resolve(order: Order, reply: str, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    resolved, step = apply(order, A.RESOLVE, now=now, actor=actor, reason=reply)
    return replace(resolved, resolution=order.resolution + 1, reply=reply,
                   satisfaction=None), step


def start_callback(order: Order, *, now: datetime, actor: str,
                   reason: str | None = None) -> tuple[Order, Transition]:
    return apply(order, A.START_CALLBACK, now=now, actor=actor, reason=reason)


def close_without_survey(order: Order, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    return apply(order, A.CLOSE, now=now, actor=actor, reason="called back")


def reopen(order: Order, reason: str, *, now: datetime, actor: str) -> tuple[Order, Transition]:
    return apply(order, A.REOPEN, now=now, actor=actor, reason=_reason(reason))


def reopen_closed(order: Order, reason: str | None, *, now: datetime,
                  actor: str) -> tuple[Order, Transition]:
    """A supervisor's reopen: only of a closed case (an open one has its callback running)."""
    if order.state is not S.CLOSED:
        raise IllegalTransition("order", order.state.value, A.REOPEN.value,
                                allowed_actions(order.state, order.type))
    return reopen(order, _reason(reason), now=now, actor=actor)


def apply_callback_outcome(order: Order, outcome: Satisfaction | Literal["unreachable"], *,
                           now: datetime, actor: str) -> tuple[Order, Transition]:
    """The closed loop: a content customer closes the order; an unhappy or unreachable one
    reopens it for another resolution (and another callback)."""
    if order.state is not S.CALLBACK_PENDING:
        raise IllegalTransition("order", order.state.value, "callback_outcome",
                                allowed_actions(order.state, order.type))
    if outcome == "unreachable":
        return reopen(order, REOPEN_UNREACHABLE, now=now, actor=actor)
    if outcome == "dissatisfied":
        reopened, step = reopen(order, REOPEN_DISSATISFIED, now=now, actor=actor)
        return replace(reopened, satisfaction=outcome), step
    closed, step = apply(order, A.CLOSE, now=now, actor=actor, reason=outcome)
    return replace(closed, satisfaction=outcome), step


# Work on the fault is still to come: a new report of it joins the order.
LINKABLE_STATES = frozenset({S.CREATED, S.DISPATCHED, S.ACCEPTED, S.ON_SITE, S.REOPENED})
# The types one field visit fixes for everybody who reported it.
LINKABLE_TYPES = frozenset({OrderType.REPAIR})


@dataclass(frozen=True)
class LinkCandidate:
    order_id: str
    state: OrderState
    outage_id: str | None


def link(order: Order, reason: str, *, now: datetime, actor: str) -> Transition:
    """The audited step of a report joining the order: only while work on it is to come."""
    if order.state not in LINKABLE_STATES or order.type not in LINKABLE_TYPES:
        raise IllegalTransition("order", order.state.value, A.LINK.value,
                                allowed_actions(order.state, order.type))
    return Transition(order.order_id, A.LINK, order.state, order.state, now, actor, reason)


def link_target(order_type: OrderType, candidates: Sequence[LinkCandidate],
                active_outages: Collection[str]) -> tuple[LinkCandidate, str] | None:
    """Which open order a new report joins, and why: the order of an active outage in the
    area first, else the area's oldest open repair order (candidates come oldest first).
    None: the report opens an order of its own."""
    if order_type not in LINKABLE_TYPES:
        return None
    open_orders = [c for c in candidates if c.state in LINKABLE_STATES]
    for candidate in open_orders:
        if candidate.outage_id is not None and candidate.outage_id in active_outages:
            return candidate, "outage"
    return (open_orders[0], "open_order") if open_orders else None


# How bad a callback's result is for the order; the worst among its callers decides it.
_OUTCOME_SEVERITY = {"satisfied": 0, "neutral": 1, "unreachable": 2, "dissatisfied": 3}


def combined_outcome(outcomes: Sequence[str]) -> Satisfaction | Literal["unreachable"]:
    """One order, several callers called back (linked reports): one unhappy or unreachable
    caller reopens it, as a single caller would."""
    if not outcomes:
        raise ValueError("no callback outcomes to combine")
    worst = max(outcomes, key=lambda outcome: _OUTCOME_SEVERITY[outcome])
    return worst  # type: ignore[return-value]


# A caller who gave one of these answers has heard the order's outcome and accepted it.
CONTENT_OUTCOMES = frozenset({"satisfied", "neutral"})


def owed_callbacks(parties: Sequence[str | None],
                   last_outcome: Mapping[str | None, str | None]) -> list[str | None]:
    """Whom a resolution calls back. A party is a linked reporter's id, or None for the order's
    own caller; ``last_outcome`` holds each one's latest callback outcome (absent: never called).

    The first resolution calls everyone on the order. A re-resolution (the order was reopened)
    calls only those not content last time (dissatisfied, unreachable, unsettled) and those
    who joined since: re-calling content callers on every re-resolution of a shared order
    pushes their numbers past the daily cap. If all were content (a supervisor reopened a
    closed order), the new resolution is news to all of them."""
    owed = [party for party in parties if last_outcome.get(party) not in CONTENT_OUTCOMES]
    return owed or list(parties)


def is_repeat_complaint(order_type: OrderType, earlier_complaints: int) -> bool:
    """A complaint from a customer who complained within the window is flagged and escalated."""
    return order_type is OrderType.COMPLAINT and earlier_complaints > 0
