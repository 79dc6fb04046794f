from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.workorder.domain.callbacks import CallbackPolicy
from shared.settings import DEFAULT_PORTS, ServiceSettings


class WorkorderSettings(ServiceSettings):
    """Durations are suite seconds (they follow ``HOTLINE_TIME_SCALE``) unless named wall."""

    model_config = SettingsConfigDict(env_prefix="WORKORDER_", extra="ignore")

    port: int = DEFAULT_PORTS["workorder"]
    # After a resolution, how long before the customer is called back.
    callback_delay_seconds: float = Field(default=30, ge=0)
    # After a failed attempt, how long before the next one.
    callback_retry_seconds: float = Field(default=120, ge=0)
    callback_max_attempts: int = Field(default=3, ge=1)
    # An attempt with no outcome heard within this long counts as failed.
    callback_attempt_timeout_seconds: float = Field(default=600, gt=0)
    # Wall seconds between scans for due callback tasks.
    callback_poll_seconds: float = Field(default=0.2, gt=0)

    def callback_policy(self) -> CallbackPolicy:
        return CallbackPolicy.from_seconds(
            delay=self.callback_delay_seconds, retry=self.callback_retry_seconds,
            max_attempts=self.callback_max_attempts,
            attempt_timeout=self.callback_attempt_timeout_seconds)
