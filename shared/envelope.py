"""The event envelope: CloudEvents 1.0 attributes plus Hotline's ordering and tracing fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str = Field(pattern=r"^[a-z][a-z_]*\.[a-z][a-z_]*\.[a-z][a-z_]*$")
    time: datetime
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    dataversion: int = Field(default=1, ge=1)
    # Monotonic per (source, subject): assigned by the producer's outbox.
    sequence: int = Field(ge=1)
    # The call this event belongs to, when there is one.
    correlationid: str | None = None
    # The id of the event that caused this one.
    causationid: str | None = None
    data: dict[str, Any]

    @property
    def routing_key(self) -> str:
        return routing_key(self.type, self.dataversion)


def routing_key(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}"
