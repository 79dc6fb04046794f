from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_PORTS, ServiceSettings


class RecordingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RECORDING_", extra="ignore")

    port: int = DEFAULT_PORTS["recording"]
    # Where WAV files go; unset means ``<HOTLINE_VAR_DIR>/recordings``.
    storage_dir: Path | None = None
    # Audio is collected up to this many bytes before one write to disk (8 kHz 16-bit mono:
    # 16000 bytes is one second), so a call costs one thread hop per second, not per frame.
    flush_bytes: int = Field(default=16000, ge=2)
    # Largest binary frame accepted (bytes); bigger ones get a bad_frame error.
    max_frame_bytes: int = Field(default=64 * 1024, ge=2)
    # Audio one stream may carry (seconds at its sample rate): a stream that goes on past
    # it is stopped and stored as far as the limit, so no stream fills the disk.
    max_stream_seconds: float = Field(default=4 * 3600, gt=0)
    max_search_limit: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _default_storage(self) -> RecordingSettings:
        if self.storage_dir is None:
            self.storage_dir = Path(self.common.var_dir) / "recordings"
        return self

    @property
    def storage(self) -> Path:
        assert self.storage_dir is not None
        return self.storage_dir
