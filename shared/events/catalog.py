"""The catalog's machinery: the payload base classes, the registry and its lookups.

The event modules (one per producing service) build on this; :mod:`shared.events` imports
them all so that the catalog is complete wherever it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from shared.envelope import routing_key

# Validation context of a consumer reading an event (see :mod:`shared.consumers`).
TOLERANT = {"tolerant": True}


class EventPart(BaseModel):
    """Base for event payloads and the models nested in them: strict about unknown fields so
    a producer's typo fails loudly, except when a consumer reads with :data:`TOLERANT`
    (fields added by a newer producer are then dropped, at every level)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is None or not info.context.get("tolerant") or not isinstance(data, dict):
            return data
        known = cls.model_fields
        return {key: value for key, value in data.items() if key in known}


class EventData(EventPart):
    """Base for event payloads (one model per (type, version) in :data:`CATALOG`)."""


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
