"""Events produced by workorder. Subjects: ``ticket/<order_id>``, ``callback/<callback_id>``."""

from __future__ import annotations

from typing import Any, Literal

from shared.events import EventData, event

Satisfaction = Literal["satisfied", "neutral", "dissatisfied"]


@event("workorder.ticket.created")
class TicketCreated(EventData):
    order_id: str
    type: str
    call_id: str | None = None
    customer_account: str | None = None
    area: str | None = None


@event("workorder.ticket.resolved")
class TicketResolved(EventData):
    order_id: str
    resolution: int
    reply: str


@event("workorder.ticket.closed")
class TicketClosed(EventData):
    order_id: str
    satisfaction: Satisfaction | None = None


@event("workorder.ticket.reopened")
class TicketReopened(EventData):
    order_id: str
    reason: str


@event("workorder.callback.requested")
class CallbackRequested(EventData):
    """Ask CTI to place the callback's outbound call; ``request_id`` identifies this attempt."""

    request_id: str
    callback_id: str
    order_id: str
    attempt: int
    to_number: str
    context: dict[str, Any]


@event("workorder.callback.completed")
class CallbackCompleted(EventData):
    callback_id: str
    order_id: str
    outcome: Literal["satisfied", "neutral", "dissatisfied", "no_answer_given", "unreachable"]
    attempts: int
