"""cti_gateway settings (environment prefix ``CTI_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_PORTS, ServiceSettings


class CtiSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CTI_", extra="ignore")

    port: int = DEFAULT_PORTS["cti_gateway"]
    # Suite seconds an agent phone may ring before CTI gives up (ring no answer).
    ring_timeout_seconds: float = Field(default=20.0, gt=0)
    # Suite seconds a customer's phone may ring on an agent-first (virtual hold) dial.
    customer_ring_timeout_seconds: float = Field(default=40.0, gt=0)
    # A phone rings at least this many wall seconds before CTI gives up on it: under a high
    # HOTLINE_TIME_SCALE the ring timeout's suite seconds would otherwise be shorter than the
    # answer's way back through the suite, and agents who answer would be marked ring no
    # answer. Below the ACD's reservation floor (5 wall s), so the ring failure still comes
    # before the reservation expires. No effect at real time.
    ring_min_wall_seconds: float = Field(default=4.0, ge=0)
    # The ring timer sleeps until the next ring deadline it knows of, and at most this many
    # wall seconds before it looks at the table again (rings another replica started).
    timer_poll_seconds: float = Field(default=5.0, gt=0)
    # Calling number presented on outbound (callback) calls.
    outbound_caller_id: str = "95598"
    # Frames queued for the writer beyond which CTI stops reading the switch's socket until
    # it has caught up (back-pressure instead of an unbounded queue).
    frame_backlog: int = Field(default=5_000, ge=1)
