"""The shapes of cti_gateway's REST: a command's body, a call as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.cti_gateway.domain import Call, CallState
from shared.data_scope import DataScope


class AgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Who acts: an agent token acts as itself (naming another agent is refused); a
    # supervisor names the agent.
    agent_id: str | None = Field(default=None, min_length=1, max_length=64)


class LegsView(BaseModel):
    party: str
    party_state: str
    agent: str


class CallView(BaseModel):
    call_id: str
    direction: str
    state: CallState
    from_number: str
    to_number: str
    agent_id: str | None
    agent_device: str | None
    team: str | None = None
    department: str | None = None
    reservation_id: str | None
    queue: str | None
    context: dict[str, Any]
    last_prompt_id: str | None
    request_id: str | None
    legs: LegsView
    allowed_actions: list[str]
    ring_deadline: datetime | None
    offered_at: datetime
    answered_at: datetime | None
    connected_at: datetime | None
    released_at: datetime | None
    cause: str | None

    @classmethod
    def shown(cls, call: Call, scope: DataScope) -> CallView:
        """The call as ``scope`` may see it: an agent token its own calls only (403), an
        integrator's numbers masked unless granted."""
        scope.check_agent(call.agent_id, "calls", call.team, call.department)
        view = cls.of(call)
        return view if scope.personal else cls.model_validate(
            scope.shown(view.model_dump()) | {"context": {}})

    @classmethod
    def of(cls, call: Call) -> CallView:
        return cls(
            call_id=call.call_id, direction=call.direction, state=call.state,
            from_number=call.from_number, to_number=call.to_number, agent_id=call.agent_id,
            agent_device=call.agent_device, team=call.team, department=call.department,
            reservation_id=call.reservation_id,
            queue=call.queue, context=call.context, last_prompt_id=call.last_prompt_id,
            request_id=call.request_id,
            legs=LegsView(party=call.party, party_state=call.party_leg.value,
                          agent=call.agent_leg.value),
            allowed_actions=call.allowed(), ring_deadline=call.ring_deadline,
            offered_at=call.offered_at, answered_at=call.answered_at,
            connected_at=call.connected_at, released_at=call.released_at, cause=call.cause)
