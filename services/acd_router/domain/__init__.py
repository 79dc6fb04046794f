"""acd_router's domain core: agent states, queue entries and the matcher. Sans-IO."""

from .agents import (
    TRANSITIONS,
    Action,
    Agent,
    AgentState,
    Pending,
    StateChange,
    allowed_actions,
    default_device,
)
from .queue import (
    ENTRY_TRANSITIONS,
    EntryState,
    QueueEntry,
    estimate_wait,
    position,
)
from .routing import LONGEST_IDLE, Decision, Strategy, can_serve, match

__all__ = [
    "ENTRY_TRANSITIONS",
    "LONGEST_IDLE",
    "TRANSITIONS",
    "Action",
    "Agent",
    "AgentState",
    "Decision",
    "EntryState",
    "Pending",
    "QueueEntry",
    "StateChange",
    "Strategy",
    "allowed_actions",
    "can_serve",
    "default_device",
    "estimate_wait",
    "match",
    "position",
]
