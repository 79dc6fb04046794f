"""Events produced by cti_gateway. Subject: ``call/<call_id>`` (agent events: ``call/<call_id>`` too,
so every event of one call is ordered in one sequence)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from shared.events.catalog import EventData, event

Direction = Literal["inbound", "outbound"]


@event("cti.call.offered")
class CallOffered(EventData):
    call_id: str
    direction: Direction = "inbound"
    from_number: str
    to_number: str
    offered_at: datetime


@event("cti.call.answered")
class CallAnswered(EventData):
    """The call is up with the suite's media (inbound: answered into the IVR; outbound: the
    customer picked up). ``context`` carries what the originator asked to be attached."""

    call_id: str
    direction: Direction
    from_number: str
    to_number: str
    context: dict[str, Any] = {}


@event("cti.call.dtmf_received")
class DtmfReceived(EventData):
    call_id: str
    digits: str
    prompt_id: str | None = None


@event("cti.agent.alerting")
class AgentAlerting(EventData):
    call_id: str
    agent_id: str
    reservation_id: str


@event("cti.agent.ring_failed")
class AgentRingFailed(EventData):
    call_id: str
    agent_id: str
    reservation_id: str
    reason: Literal["no_answer", "rejected", "unreachable", "caller_gone"]


@event("cti.call.connected")
class CallConnected(EventData):
    call_id: str
    direction: Direction
    agent_id: str
    queue: str | None = None
    reservation_id: str | None = None
    from_number: str
    to_number: str
    connected_at: datetime
    # The agent's team and department (from its reservation): who supervises the records.
    team: str | None = None
    department: str | None = None


@event("cti.call.released")
class CallReleased(EventData):
    call_id: str
    direction: Direction
    # caller_hangup, agent_hangup, agent_release, ivr_release, no_answer, busy, rejected,
    # cancelled, forced, error
    cause: str
    # The call's state when it ended (in_ivr, queued, alerting, connected ...).
    state: str
    agent_id: str | None = None
    from_number: str
    to_number: str
    context: dict[str, Any] = {}
    connected_at: datetime | None = None
    released_at: datetime
    talk_seconds: float | None = None
    # As on cti.call.connected: the agent's team and department.
    team: str | None = None
    department: str | None = None


@event("cti.call.originated")
class CallOriginated(EventData):
    call_id: str
    request_id: str
    from_number: str
    to_number: str
    context: dict[str, Any] = {}


@event("cti.call.origination_failed")
class OriginationFailed(EventData):
    request_id: str
    to_number: str
    reason: str
    context: dict[str, Any] = {}
