"""The work-order domain, sans-IO: plain synchronous state machines with transition tables.

Time comes in as ``now``; timers go out as deadlines on the returned state (``due_at``), which
the edges persist and poll. Illegal transitions raise :class:`shared.errors.IllegalTransition`.
"""

from services.workorder.domain.callbacks import (
    Callback,
    CallbackAction,
    CallbackPolicy,
    CallbackState,
    StaleAttempt,
)
from services.workorder.domain.orders import (
    Order,
    OrderAction,
    OrderState,
    OrderType,
    Satisfaction,
    Transition,
)

__all__ = [
    "Callback",
    "CallbackAction",
    "CallbackPolicy",
    "CallbackState",
    "Order",
    "OrderAction",
    "OrderState",
    "OrderType",
    "Satisfaction",
    "StaleAttempt",
    "Transition",
]
