from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.workorder.domain.callbacks import CallbackPolicy
from services.workorder.domain.dialing import CallingRules
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
    # Between the first attempts to the callers of one resolution (linked reports).
    callback_spacing_seconds: float = Field(default=5, ge=0)
    # An attempt with no outcome heard within this long counts as failed.
    callback_attempt_timeout_seconds: float = Field(default=600, gt=0)
    # The timer (SLA clocks, callback tasks) sleeps until the earliest deadline it knows of,
    # and at most this many wall seconds before it looks at the tables again (deadlines
    # another replica wrote).
    callback_poll_seconds: float = Field(default=5.0, gt=0)
    # Local calling window for callback attempts ("00:00-24:00" = any time) and whether
    # statutory holidays are skipped.
    callback_hours: str = "08:00-21:00"
    callback_skip_holidays: bool = True
    # (Never dialled: the suite's HOTLINE_DIAL_HOME_PREFIX / HOTLINE_DIAL_DENY_PREFIXES.)
    # Attempts per number per local day; over it, the attempt waits for the next day.
    callback_daily_cap: int = Field(default=20, ge=1)
    # Department that takes callback_request cases (abandoned / dropped calls).
    callback_team: str = "callback_team"
    calendar_tz: str = "Asia/Shanghai"
    # Year files <year>.yaml; the shipped ones by default.
    calendars_dir: Path = Path(__file__).parent / "calendars"
    # Loaded as policy version 1 when the database has no policy yet.
    sla_policy_file: Path = Path(__file__).parent / "sla" / "default.yaml"
    # A complaint by a customer who complained within this many days is flagged and escalated.
    repeat_complaint_days: float = Field(default=30, gt=0)
    # Concurrent timer workers while rows are due (each fires one due row per transaction).
    timer_workers: int = Field(default=4, ge=1, le=64)
    # Wall seconds between checks for calendar years changed over REST on another replica.
    calendar_poll_seconds: float = Field(default=2.0, gt=0)
    # Due SLA clocks a worker fires in one transaction (callback tasks: one at a time).
    timer_batch: int = Field(default=25, ge=1, le=1000)
    # Open cases moved to a new SLA policy version per transaction.
    replan_batch: int = Field(default=500, ge=1, le=10_000)

    def callback_policy(self) -> CallbackPolicy:
        return CallbackPolicy.from_seconds(
            delay=self.callback_delay_seconds, retry=self.callback_retry_seconds,
            max_attempts=self.callback_max_attempts,
            attempt_timeout=self.callback_attempt_timeout_seconds,
            spacing=self.callback_spacing_seconds)

    def calling_rules(self) -> CallingRules:
        start, end = CallingRules.parse_hours(self.callback_hours)
        numbers = self.common.number_policy()
        return CallingRules(start=start, end=end, deny_prefixes=numbers.deny_prefixes,
                            home_prefix=numbers.home_prefix,
                            daily_cap=self.callback_daily_cap,
                            skip_holidays=self.callback_skip_holidays)
