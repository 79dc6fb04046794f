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
from .config import RoutingConfig, config_warnings
from .engine import AgentSpec, CallSpec, Explanation, RoutingEngine
from .engine import Decision as RoutingDecision
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
    "AgentSpec",
    "AgentState",
    "CallSpec",
    "Decision",
    "EntryState",
    "Explanation",
    "Pending",
    "QueueEntry",
    "RoutingConfig",
    "RoutingDecision",
    "RoutingEngine",
    "StateChange",
    "Strategy",
    "allowed_actions",
    "can_serve",
    "config_warnings",
    "default_device",
    "estimate_wait",
    "match",
    "position",
]
