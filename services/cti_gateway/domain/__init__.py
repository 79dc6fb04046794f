"""The cti_gateway domain: the call state machine, pure and synchronous."""

from services.cti_gateway.domain.call import (
    LIVE_STATES,
    TRANSITIONS,
    Action,
    Call,
    CallState,
    Effect,
    Emit,
    Leg,
    LegState,
    Method,
    Send,
    allowed_actions,
    hangup,
    next_state,
)

__all__ = ["LIVE_STATES", "TRANSITIONS", "Action", "Call", "CallState", "Effect", "Emit", "Leg",
           "LegState", "Method", "Send", "allowed_actions", "hangup", "next_state"]
