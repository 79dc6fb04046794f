"""The work-order domain, sans-IO: plain synchronous state machines with transition tables.

Time comes in as ``now``; timers go out as deadlines on the returned state (``due_at``,
``next_fire_at``), which the edges persist and a timer loop fires. Illegal transitions raise
:class:`shared.errors.IllegalTransition`.
"""

from services.workorder.domain.calendar import WorkCalendar, YearSchedule
from services.workorder.domain.callbacks import (
    Callback,
    CallbackAction,
    CallbackPolicy,
    CallbackState,
    StaleAttempt,
)
from services.workorder.domain.dialing import CallingRules
from services.workorder.domain.orders import (
    Order,
    OrderAction,
    OrderState,
    OrderType,
    Satisfaction,
    Transition,
)
from services.workorder.domain.sla import Clock, ClockState, SlaPolicy

__all__ = [
    "Callback",
    "CallbackAction",
    "CallbackPolicy",
    "CallbackState",
    "CallingRules",
    "Clock",
    "ClockState",
    "Order",
    "OrderAction",
    "OrderState",
    "OrderType",
    "Satisfaction",
    "SlaPolicy",
    "StaleAttempt",
    "Transition",
    "WorkCalendar",
    "YearSchedule",
]
