"""Softswitch settings (prefix ``SOFTSWITCH_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import DEFAULT_PORTS, ServiceSettings


class SoftswitchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SOFTSWITCH_", extra="ignore")

    port: int = DEFAULT_PORTS["softswitch"]
    # Wall seconds a replay may sit with nothing left to do on its own side (no local timer
    # pending) while calls or callbacks are still open with the peers; then it reports them.
    drain_timeout_seconds: float = Field(default=120.0, gt=0)
    # Wall seconds a replay waits for the CTI switch link before it fails.
    connect_timeout_seconds: float = Field(default=30.0, gt=0)
    # Wall seconds without any answer to a caller's INVITE before it is sent again (doubling
    # each time, up to four sends in all), as a SIP client retransmits: an INVITE can be lost
    # with a CTI process that died holding it.
    invite_retransmit_seconds: float = Field(default=4.0, gt=0)
    reconnect_min_seconds: float = Field(default=0.2, gt=0)
    reconnect_max_seconds: float = Field(default=5.0, gt=0)
    # Wall seconds between media frames of a forked call.
    media_frame_seconds: float = Field(default=0.05, gt=0)
    media_enabled: bool = True
    # Trace seconds a callback customer's phone rings before it answers or gives up (480).
    customer_ring_seconds: float = Field(default=4.0, ge=0)
    customer_answer_seconds: float = Field(default=2.0, ge=0)
    # Trace seconds a surveyed customer thinks before pressing the satisfaction digit.
    survey_think_seconds: float = Field(default=1.5, ge=0)
    # Trace seconds after which an answered callback customer hangs up if the line is still up.
    customer_max_call_seconds: float = Field(default=120.0, gt=0)
    # Wall seconds between polls of workorder for callback settlement while draining.
    settle_poll_seconds: float = Field(default=1.0, gt=0)
    # Trace seconds after a ring the agent missed (the ACD made them not ready) before the agent
    # notices and makes themselves ready again, as people on a floor do.
    missed_ring_ready_seconds: float = Field(default=5.0, ge=0)
    # How many times the agent asks (looking again 1, 2, 4 ... up to 10 wall seconds later)
    # while the ACD still has them not ready after a missed ring: the ring failure can reach
    # a late ACD after the first request. About a minute by default.
    missed_ring_ready_attempts: int = Field(default=9, ge=1)
    # The suite is falling behind when its replies to the parties (a prompt after the call
    # is answered or a key is pressed, the ACK after an agent answers) take longer than this
    # many trace seconds at the 90th percentile of the latest ones: what the trace says
    # happens then no longer does (callers wait, rings time out).
    lag_warn_seconds: float = Field(default=2.0, gt=0)
    # Wall seconds an agent phone waits for CTI's ACK before it counts itself connected.
    ack_grace_seconds: float = Field(default=5.0, gt=0)
    max_speed: float = Field(default=1000.0, gt=0)
    # The largest trace a replay takes (the request body).
    max_trace_bytes: int = Field(default=64 << 20, ge=1 << 20)
