"""The event catalog: one pydantic model per (type, version).

Publishing an event whose (type, version) is not here fails; so does data that does not
validate against its model. Each producing service has its own module; importing this
package registers them all.
"""

from __future__ import annotations

from shared.events import acd, cti, ivr, recording, workorder
from shared.events.catalog import (
    CATALOG,
    TOLERANT,
    EventData,
    EventPart,
    UnknownEventType,
    all_routing_keys,
    event,
    model_for,
    validate_data,
)

__all__ = [
    "CATALOG",
    "TOLERANT",
    "EventData",
    "EventPart",
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
