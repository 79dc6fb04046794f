"""The event catalog: one pydantic model per (type, version).

Publishing an event whose (type, version) is not here fails; so does data that does not
validate against its model. Each producing service has its own module; importing this
package registers them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from shared.envelope import routing_key


class EventData(BaseModel):
    """Base for event payloads: strict about unknown fields so producer typos fail loudly."""

    model_config = ConfigDict(extra="forbid")


class UnknownEventType(LookupError):
    pass


CATALOG: dict[tuple[str, int], type[EventData]] = {}

M = TypeVar("M", bound=type[EventData])


def event(event_type: str, version: int = 1) -> Callable[[M], M]:
    def register(model: M) -> M:
        key = (event_type, version)
        if key in CATALOG:
            raise ValueError(f"event {routing_key(*key)} registered twice")
        CATALOG[key] = model
        model.event_type = event_type  # type: ignore[attr-defined]
        model.event_version = version  # type: ignore[attr-defined]
        return model

    return register


def model_for(event_type: str, version: int = 1) -> type[EventData]:
    try:
        return CATALOG[(event_type, version)]
    except KeyError:
        raise UnknownEventType(f"unknown event type {routing_key(event_type, version)}") from None


def validate_data(event_type: str, version: int, data: dict[str, Any] | EventData) -> dict[str, Any]:
    model = model_for(event_type, version)
    if isinstance(data, EventData):
        if not isinstance(data, model):
            raise TypeError(f"{type(data).__name__} is not the model of {event_type}.v{version}")
        return data.model_dump(mode="json")
    return model.model_validate(data).model_dump(mode="json")


def all_routing_keys() -> list[str]:
    return sorted(routing_key(t, v) for t, v in CATALOG)


# Register every producer's events.
from shared.events import acd, cti, ivr, recording, workorder  # noqa: E402

__all__ = [
    "CATALOG",
    "EventData",
    "UnknownEventType",
    "acd",
    "all_routing_keys",
    "cti",
    "event",
    "ivr",
    "model_for",
    "recording",
    "validate_data",
    "workorder",
]
