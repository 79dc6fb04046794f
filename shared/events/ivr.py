"""Events produced by ivr_engine. Subject: ``call/<call_id>``."""

from __future__ import annotations

from typing import Any, Literal

from shared.events.catalog import EventData, EventPart, event


class Collect(EventPart):
    max_digits: int = 1
    timeout_seconds: float = 5.0


class CustomerContext(EventPart):
    account: str
    name: str | None = None
    tier: str = "regular"
    area: str | None = None
    flags: list[str] = []


class RouteRequest(EventPart):
    queue: str
    skills: list[str]
    priority: int = 0
    customer: CustomerContext | None = None
    from_number: str | None = None


@event("ivr.session.started")
class SessionStarted(EventData):
    call_id: str
    session_id: str
    menu: str
    menu_version: int
    purpose: Literal["inbound", "survey"] = "inbound"


@event("ivr.prompt.requested")
class PromptRequested(EventData):
    call_id: str
    session_id: str
    prompt_id: str
    text: str
    collect: Collect | None = None


@event("ivr.session.completed")
class SessionCompleted(EventData):
    call_id: str
    session_id: str
    # routed: hand to ACD with ``route``; self_served: the IVR released it; caller_hung_up;
    # survey: a satisfaction survey ended (see ivr.survey.completed)
    outcome: Literal["routed", "self_served", "caller_hung_up", "survey"]
    path: list[str] = []
    route: RouteRequest | None = None


@event("ivr.release.requested")
class ReleaseRequested(EventData):
    call_id: str
    reason: str


@event("ivr.survey.completed")
class SurveyCompleted(EventData):
    call_id: str
    # What workorder attached to the outbound call (order_id, callback_id, attempt ...).
    context: dict[str, Any]
    # None when the customer gave no valid answer.
    satisfaction: Literal["satisfied", "neutral", "dissatisfied"] | None
