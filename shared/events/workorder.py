"""Events produced by workorder. Subjects: ``ticket/<order_id>``, ``callback/<callback_id>``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.events.catalog import EventData, event

Satisfaction = Literal["satisfied", "neutral", "dissatisfied"]


@event("workorder.ticket.created")
class TicketCreated(EventData):
    order_id: str
    type: str
    call_id: str | None = None
    customer_account: str | None = None
    area: str | None = None
    # The outage this repair order stands for: later reports from the area join it.
    outage_id: str | None = None


@event("workorder.ticket.linked")
class TicketLinked(EventData):
    """A report of a fault already on an order joined it instead of opening a new one; the
    caller is on the order's callback list."""

    order_id: str
    reporter_id: str
    call_id: str | None = None
    customer_account: str | None = None
    reason: Literal["outage", "open_order"]
    outage_id: str | None = None


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


@event("workorder.ticket.dispatched")
class TicketDispatched(EventData):
    """Dispatched to a department or crew; ``dispatches`` > 1 is a second dispatch (二次派单)."""

    order_id: str
    department: str
    dispatches: int
    reason: str | None = None


@event("workorder.ticket.accepted")
class TicketAccepted(EventData):
    order_id: str
    department: str | None = None
    owner: str


@event("workorder.ticket.arrived")
class TicketArrived(EventData):
    """The repair crew is on site."""

    order_id: str
    department: str | None = None


@event("workorder.ticket.transferred")
class TicketTransferred(EventData):
    order_id: str
    from_department: str | None = None
    to_department: str
    reason: str


@event("workorder.ticket.flagged")
class TicketFlagged(EventData):
    """``flag`` = repeat_complaint (same customer within the window; escalated too)."""

    order_id: str
    flag: str
    related_order_ids: list[str] = []


@event("workorder.ticket.priority_changed")
class TicketPriorityChanged(EventData):
    order_id: str
    previous: str
    priority: str
    reason: str | None = None


@event("workorder.sla.urged")
class SlaUrged(EventData):
    """催办: a clock of the case has used ``urge_share`` of its budget."""

    order_id: str
    clock: str
    department: str | None = None
    owner: str | None = None
    due_at: datetime | None = None
    budget_seconds: float
    elapsed_seconds: float


@event("workorder.sla.escalated")
class SlaEscalated(EventData):
    """通报: a clock is overdue (level 1) or still overdue a further step (higher levels);
    reason ``repeat_complaint`` escalates a case without a clock."""

    order_id: str
    clock: str | None = None
    level: int
    level_name: str
    department: str | None = None
    owner: str | None = None
    due_at: datetime | None = None
    overdue_seconds: float = 0.0
    reason: str = "overdue"
