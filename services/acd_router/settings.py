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
    # A reservation never expires sooner than this many wall seconds after it was made: its
    # expiry guards against a lost CTI, and under a high HOTLINE_TIME_SCALE 30 suite seconds
    # can be shorter than the connect event's way back through the bus. No effect at real
    # time.
    reservation_min_wall_seconds: float = Field(default=5.0, ge=0)
    # Virtual hold: how much longer an agent-first dial's reservation lasts, for the
    # customer's phone to ring and be answered after the agent has picked up.
    virtual_hold_dial_seconds: float = Field(default=60.0, gt=0)
    # A desktop's auto-ready: an agent the ACD put in not ready for a ring no answer is made
    # ready again after this many suite seconds (unless they chose another state meanwhile).
    # Unset: they stay not ready until they, or a supervisor, say otherwise.
    ring_no_answer_ready_seconds: float | None = Field(default=None, ge=0)
    # Longest wrap-up before the agent is made ready automatically.
    wrapup_seconds: float = Field(default=60.0, ge=0)
    # Average handle time assumed by the queued-call wait estimate.
    default_handle_seconds: float = Field(default=180.0, gt=0)
    # The deadline timer (reservations, wrap-ups, auto-readies, queue timers) sleeps until
    # the next deadline it knows of, and at most this many wall seconds before it looks at
    # the tables again (a standby checking whether it may fire yet).
    poll_interval_wall_seconds: float = Field(default=1.0, gt=0)
    # The day boundary for "calls handled today".
    timezone: str = "Asia/Shanghai"
    # Routing configuration (YAML) applied at startup when it differs from the version in
    # force; without it the shipped config/default.yaml seeds an empty database.
    config_file: Path | None = None
    # Active/standby (lease.py). Wall seconds: the lease lives in PostgreSQL's clock, so a
    # scaled suite clock must not shorten it. Takeover after a crash takes about the lease
    # plus one standby poll (half the renew period).
    lease_seconds: float = Field(default=3.0, gt=0)
    lease_renew_seconds: float = Field(default=1.0, gt=0)
    # Names this process in the lease, /ready and /v1/instance; default hostname-pid.
    instance_id: str | None = Field(default=None, min_length=1, max_length=128)
    # Losing the lease while consuming: the bus cannot detach a consumer, so the process
    # stops itself (SIGTERM; its supervisor restarts it, as a standby). Tests that run two
    # instances in one process turn this off.
    exit_on_lease_loss: bool = True
