"""acd_router settings (``ACD_`` prefix). Durations are suite seconds unless named ``wall``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_PORTS, ServiceSettings


class AcdSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACD_", extra="ignore")

    port: int = DEFAULT_PORTS["acd_router"]
    # How long a reserved agent's phone may ring before the reservation is withdrawn.
    reservation_timeout_seconds: float = Field(default=30.0, gt=0)
    # Longest wrap-up before the agent is made ready automatically.
    wrapup_seconds: float = Field(default=60.0, ge=0)
    # Average handle time assumed by the queued-call wait estimate.
    default_handle_seconds: float = Field(default=180.0, gt=0)
    # Wall-clock period of the deadline poller (reservations, wrap-ups).
    poll_interval_wall_seconds: float = Field(default=0.2, gt=0)
    # The day boundary for "calls handled today".
    timezone: str = "Asia/Shanghai"
    # Routing configuration (YAML) applied at startup when it differs from the version in
    # force; without it the shipped config/default.yaml seeds an empty database.
    config_file: Path | None = None
