"""Simulation settings: how trace calls map to queues and timings, and the routing policy.

Loaded from the ``--config`` YAML: a ``simulation:`` section for this module and a
``routing:`` section handed unchanged to the ACD engine's own configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

# The IVR's default 95598 menu (services/ivr_engine/menus/95598.yaml), flattened to the
# digit paths that end in a queue; None: the IVR serves the caller itself (balance).
DEFAULT_MENU: dict[str, str | None] = {
    "1": "repair",
    "2": None,
    "2 0": "billing",
    "3": "billing",
    "9": "complaint",
    "0": "billing",
}


class SimulationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds of priority credit a VIP call gets (ordered as if it arrived that much
    # earlier); the bank's practice is 1.5 minutes.
    vip_credit: float = Field(default=90.0, ge=0)
    # Customer tiers treated as VIP.
    vip_tiers: list[str] = ["vip"]
    menu: dict[str, str | None] = Field(default_factory=lambda: dict(DEFAULT_MENU))
    # Where a caller goes who pressed nothing usable (the IVR falls back to an agent).
    fallback_queue: str = "billing"
    # Seconds each IVR prompt plays before the caller's think time.
    prompt_seconds: float = Field(default=0.0, ge=0)
    service_level_seconds: float = Field(default=20.0, gt=0)
    router: str = "engine"


class FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    routing: dict[str, Any] | None = None


def load_config(path: Path | None) -> FileConfig:
    if path is None:
        return FileConfig()
    data = yaml.safe_load(path.read_text()) or {}
    return FileConfig.model_validate(data)
