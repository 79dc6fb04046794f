"""Order intake and settlement, as rules on the facts a handler gathers.

Intake: whom the order is for and where (the request, or the customer's record), whether a
report may join an open order or outage instead of opening one, and which outage a new
order stands for. Settlement: when a resolution's callbacks are all done, and with what
outcome for the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shared.errors import Invalid

from .callbacks import ACTIVE_STATES, CallbackState
from .orders import LINKABLE_TYPES, OrderType, Satisfaction, combined_outcome, require_contact


@dataclass(frozen=True)
class CustomerOnFile:
    """What the directory says of the order's customer."""

    area: str | None
    first_number: str | None


def intake_area(*, area: str | None, account: str | None, contact_number: str | None,
                customer: CustomerOnFile | None) -> str | None:
    """The order's area (the request's, else the customer's); refuses an order nobody could
    be called back on, and an account the directory does not know."""
    require_contact(account, contact_number)
    if account is None:
        return area
    if customer is None:
        raise Invalid("customer_account", f"unknown customer_account {account!r}")
    if contact_number is None and customer.first_number is None:
        raise Invalid("contact_number", f"customer {account!r} has no number on file to call "
                      "back; give a contact_number")
    return area or customer.area


def may_join(order_type: OrderType, area: str | None, *, standalone: bool) -> bool:
    """Whether a report may join an open order or outage of its area (then reports from
    one area are decided one at a time): a linkable type, an area, and not asked to stand
    alone."""
    return area is not None and order_type in LINKABLE_TYPES and not standalone


def outage_of_new_order(active_outages: Sequence[str]) -> str | None:
    """A new order in an area with an active outage (and no open order to join) is that
    outage's order: the oldest one's."""
    return active_outages[0] if active_outages else None


# The states of an inbound call the caller can leave while waiting for an agent.
WAITING_CALL_STATES = frozenset({"queued", "alerting"})


# The states of an inbound call with its caller on the line, whom a dead switch cuts off.
LIVE_CALL_STATES = frozenset({"in_ivr", *WAITING_CALL_STATES, "connected"})


def owed_callback(cause: str, call_state: str) -> bool:
    """An inbound call whose end owes its caller a call back: they hung up while waiting for
    an agent, or the switch carrying it died under them wherever they were (in the menu,
    waiting, ringing or talking: the suite, not the caller, ended it; R9)."""
    if cause == "switch_lost":
        return call_state in LIVE_CALL_STATES
    return cause == "caller_hangup" and call_state in WAITING_CALL_STATES


def abandoned_call_description(call_id: str, reason: str) -> str:
    """What the callback case says happened to the call."""
    if reason == "switch_lost":
        return f"call {call_id} was cut off: the switch carrying it went down"
    return f"call {call_id} ended before an agent answered ({reason})"


def settlement(callbacks: Sequence[tuple[CallbackState, str | None]]
               ) -> Satisfaction | Literal["unreachable"] | None:
    """The outcome a resolution's callbacks give the order once none is still to be made
    (None until then): one unhappy or unreachable caller reopens it."""
    if any(state in ACTIVE_STATES for state, _ in callbacks):
        return None
    return combined_outcome([outcome for _, outcome in callbacks if outcome is not None])
