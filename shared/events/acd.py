"""Events produced by acd_router. Subjects: ``call/<call_id>`` for call events,
``agent/<agent_id>`` for agent state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.events.catalog import EventData, EventPart, event


@event("acd.call.queued")
class CallQueued(EventData):
    call_id: str
    queue: str
    priority: int
    position: int
    estimated_wait_seconds: float | None = None
    customer: dict[str, Any] | None = None
    # The queue offers virtual hold to this caller (the wait is long): pressing this digit
    # leaves a callback request that keeps the call's place. None: not offered.
    virtual_hold_digit: str | None = None


class AgentFirstDial(EventPart):
    """A reservation for a caller on virtual hold: ring the agent on a new outbound call
    ``call_id``, then dial the customer at ``number`` and connect them."""

    call_id: str
    number: str


@event("acd.agent.reserved")
class AgentReserved(EventData):
    call_id: str
    agent_id: str
    device: str
    queue: str
    reservation_id: str
    expires_at: datetime
    dial: AgentFirstDial | None = None
    # The agent's team and department: the call's records are read by their supervisors.
    team: str | None = None
    department: str | None = None


@event("acd.reservation.expired")
class ReservationExpired(EventData):
    call_id: str
    agent_id: str
    reservation_id: str
    # A virtual-hold reservation: the outbound call that rings the agent (see AgentFirstDial).
    dial_call_id: str | None = None


@event("acd.call.virtual_hold_started")
class VirtualHoldStarted(EventData):
    """The caller left a callback request that keeps their place in the queue: CTI plays
    ``announcement`` and releases the inbound call; when the call reaches an agent, ACD
    reserves the agent with an agent-first dial to ``number``."""

    call_id: str
    queue: str
    number: str
    position: int
    estimated_wait_seconds: float | None = None
    announcement: str | None = None


@event("acd.agent.state_changed")
class AgentStateChanged(EventData):
    agent_id: str
    previous: str
    state: str
    reason: str | None = None
    call_id: str | None = None


@event("acd.call.abandoned")
class CallAbandoned(EventData):
    call_id: str
    queue: str
    waited_seconds: float


@event("acd.routing.decided")
class RoutingDecided(EventData):
    """Every routing decision with its explanation (candidates and their scores, the step and
    rule applied, why others were excluded). ``kind``: reserved, overflowed, callback,
    released."""

    call_id: str
    queue: str
    kind: str
    agent_id: str | None = None
    reservation_id: str | None = None
    step: int = 0
    explanation: dict[str, Any] = {}


@event("acd.call.overflowed")
class CallOverflowed(EventData):
    call_id: str
    from_queue: str
    to_queue: str
    # The queue limit behind it: closed, no_agents, max_length, max_wait.
    reason: str
    announcement: str | None = None


@event("acd.call.rejected")
class CallRejected(EventData):
    """A queue limit turned the call away: CTI plays ``announcement`` (if any) and releases
    it; with ``outcome`` callback a callback is offered first."""

    call_id: str
    queue: str
    reason: str
    outcome: str  # callback, release
    announcement: str | None = None
