"""Settings of the IVR engine (environment prefix ``IVR_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_PORTS, ServiceSettings

BUNDLED_MENU = Path(__file__).parent / "menus" / "95598.yaml"


class IvrSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IVR_", extra="ignore")

    port: int = DEFAULT_PORTS["ivr_engine"]
    # The default menu: it answers every dialled number no other menu claims, and surveys.
    menu_file: Path = BUNDLED_MENU
    # More menus, chosen by the dialled numbers they list.
    extra_menu_files: list[Path] = []
    # Used by menus whose ``defaults`` do not say (suite seconds).
    digit_timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=2, ge=1)
    # Workorder lookups run while the caller waits: a slow peer must not hold the call
    # (wall seconds).
    lookup_timeout_seconds: float = Field(default=1.0, gt=0)
    # A no-input timeout never fires sooner than this many wall seconds after the prompt:
    # under a high HOTLINE_TIME_SCALE a menu's few suite seconds would otherwise be shorter
    # than the prompt's and the digits' round trip through the bus, and answering callers
    # would be timed out. No effect at real time.
    no_input_min_wall_seconds: float = Field(default=1.5, ge=0)
    # The no-input timer sleeps until the next deadline it knows of, and at most this many
    # wall seconds before it looks at the table again (deadlines another replica wrote).
    timeout_poll_seconds: float = Field(default=5.0, gt=0)
    # Restore times are spoken in the callers' local time.
    spoken_timezone: str = "Asia/Shanghai"
