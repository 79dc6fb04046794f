"""Typed consumers: binding keys from the models, tolerant reading, upcasts, stale events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from shared.consumers import Consumes
from shared.envelope import Envelope
from shared.errors import IllegalTransition
from shared.events import EventData, EventPart
from shared.events.cti import CallOffered, CallReleased
from shared.events.ivr import SessionCompleted

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def envelope(event_type: str, data: dict[str, Any], version: int = 1) -> Envelope:
    return Envelope(source="/test", type=event_type, time=NOW, subject="call/C1", sequence=1,
                    dataversion=version, data=data)


def offered(**extra: Any) -> dict[str, Any]:
    return {"call_id": "C1", "from_number": "+8613800000001", "to_number": "95598",
            "offered_at": NOW.isoformat(), **extra}


async def nothing(tx: Any, event: Any) -> None:
    return None


def test_binding_keys_come_from_the_models() -> None:
    table = Consumes()
    table.add(CallOffered, nothing)
    table.add(CallReleased, nothing)
    assert table.routing_keys == ["cti.call.offered.v1", "cti.call.released.v1"]
    with pytest.raises(ValueError, match="has a handler already"):
        table.add(CallOffered, nothing)


def test_a_field_the_consumer_does_not_know_is_dropped_at_every_level() -> None:
    table = Consumes()
    table.add(SessionCompleted, nothing)
    data = {"call_id": "C1", "session_id": "S1", "menu": "main", "outcome": "routed",
            "added_later": 1,
            "route": {"queue": "billing", "skills": ["billing"], "channel": "voice",
                      "customer": {"account": "31", "segment": "new"}}}
    parsed = table.parse(envelope("ivr.session.completed", data))
    assert parsed is not None
    event, _ = parsed
    assert isinstance(event, SessionCompleted)
    assert event.route is not None and event.route.customer is not None
    assert event.route.customer.account == "31"
    assert "added_later" not in event.model_dump()


def test_producers_stay_strict() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CallOffered.model_validate(offered(typo="x"))
    with pytest.raises(ValidationError, match="extra"):
        SessionCompleted.model_validate({
            "call_id": "C1", "session_id": "S1", "menu": "main", "outcome": "routed",
            "route": {"queue": "q", "skills": [], "sklls": []}})


def test_a_type_without_a_handler_is_none_and_bad_data_raises() -> None:
    table = Consumes()
    table.add(CallOffered, nothing)
    assert table.parse(envelope("cti.call.released", {})) is None
    assert table.parse(envelope("cti.call.offered", offered(), version=2)) is None
    with pytest.raises(ValidationError):
        table.parse(envelope("cti.call.offered", {"call_id": "C1"}))


class ScoredV3(EventData):
    """A consumer's model of version 3 of an event whose v1 lacked ``score`` and whose v2
    called it ``points``."""

    call_id: str
    score: int
    detail: Detail | None = None


class Detail(EventPart):
    why: str


ScoredV3.model_rebuild()
ScoredV3.event_type = "acd.call.scored"  # type: ignore[attr-defined]
ScoredV3.event_version = 3  # type: ignore[attr-defined]


def test_older_versions_reach_the_newer_handler_through_upcasts() -> None:
    table = Consumes()
    table.add(ScoredV3, nothing)

    @table.upcast("acd.call.scored", 1)
    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "points": 0}

    @table.upcast("acd.call.scored", 2)
    def v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        points = data.pop("points")
        return {**data, "score": points}

    # Orphan upcast (nothing handles what it leads to): not bound.
    table.upcast("acd.call.other", 1)(lambda data: data)
    assert table.routing_keys == ["acd.call.scored.v1", "acd.call.scored.v2",
                                  "acd.call.scored.v3"]
    for version, data, score in [(1, {"call_id": "C1"}, 0),
                                 (2, {"call_id": "C1", "points": 4}, 4),
                                 (3, {"call_id": "C1", "score": 7, "extra": True}, 7)]:
        parsed = table.parse(envelope("acd.call.scored", data, version=version))
        assert parsed is not None
        event, _ = parsed
        assert isinstance(event, ScoredV3) and event.score == score


async def test_stale_errors_are_dropped_others_raise() -> None:
    seen: list[str] = []

    async def moved_on(tx: Any, event: CallOffered) -> None:
        seen.append(event.call_id)
        raise IllegalTransition("call", "released", "offer")

    async def broken(tx: Any, event: CallReleased) -> None:
        raise RuntimeError("bug")

    table = Consumes(stale=(IllegalTransition,))
    table.add(CallOffered, moved_on)
    table.add(CallReleased, broken)
    parsed = table.parse(envelope("cti.call.offered", offered()))
    assert parsed is not None
    await parsed[1](None, parsed[0])
    assert seen == ["C1"]
    released = {"call_id": "C1", "direction": "inbound", "cause": "caller_hangup",
                "state": "talking", "from_number": "+861", "to_number": "95598",
                "released_at": NOW.isoformat()}
    parsed = table.parse(envelope("cti.call.released", released))
    assert parsed is not None
    with pytest.raises(RuntimeError):
        await parsed[1](None, parsed[0])
