"""Settings shared by every service (prefix ``HOTLINE_``; the two URLs also without it).

Each service extends :class:`ServiceSettings` with its own prefix (``CTI_``, ``ACD_`` ...).
Nothing here is read at import time: ``create_app(settings)`` receives an instance.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.clock import ScaledClock
from shared.dialing import NumberPolicy

DEFAULT_PORTS = {
    "cti_gateway": 8001,
    "acd_router": 8002,
    "ivr_engine": 8003,
    "workorder": 8004,
    "recording": 8005,
    "softswitch": 8006,
}


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "HOTLINE_DATABASE_URL")
    )
    amqp_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AMQP_URL", "HOTLINE_AMQP_URL")
    )
    time_scale: float = Field(default=1.0, gt=0)
    # Wall-clock epoch seconds from which suite time is scaled; processes of one suite share it.
    time_origin: float | None = None
    # Suite time at the origin (ISO 8601); unset: the real time at the origin.
    time_start: datetime | None = None
    # HS256 signing secret; when unset the development key file is used (created if missing).
    jwt_secret: str | None = None
    # Keys retired by a rotation: tokens they signed (named by ``kid``) still verify until
    # they expire; new tokens are signed with jwt_secret.
    jwt_previous_secrets: list[str] = []
    token_max_lifetime_seconds: int = Field(default=31 * 24 * 3600, ge=60)
    # True lets a service start with a published default secret (a throwaway compose stack).
    development: bool = False
    # Every outbound dial (callbacks, virtual hold): never international numbers (not the
    # home prefix) nor these national prefixes (premium rate).
    dial_home_prefix: str = Field(default="+86", pattern=r"^\+[1-9][0-9]{0,3}$")
    dial_deny_prefixes: list[str] = ["168", "1900", "1259"]
    var_dir: Path = Path(".hotline")
    log_level: str = "INFO"
    log_json: bool = True
    cti_url: str = "http://127.0.0.1:8001"
    acd_url: str = "http://127.0.0.1:8002"
    ivr_url: str = "http://127.0.0.1:8003"
    workorder_url: str = "http://127.0.0.1:8004"
    recording_url: str = "http://127.0.0.1:8005"
    softswitch_url: str = "http://127.0.0.1:8006"
    # Database connections per service (pool + overflow): 6 services x 10 stay well under
    # PostgreSQL's default 100, with room for operators and migrations.
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    # RabbitMQ: how many times a message is delivered before it is dead-lettered.
    delivery_limit: int = Field(default=5, ge=1)
    # Requests and sockets one service serves at once; beyond it, 503 at once rather than a
    # queue that grows until the process falls behind everything (shared.runner).
    http_max_concurrency: int = Field(default=1000, ge=16)
    # The all-in-one's private PostgreSQL (when DATABASE_URL is unset): durable by default;
    # false turns fsync and synchronous commits off (faster, but a crash of the machine can
    # lose accepted work).
    embedded_pg_durable: bool = True
    # Keep events no consumer is bound to in a bounded quorum queue (``hotline.unrouted``) to
    # inspect them. Off by default: that is a durable, replicated write per event nobody reads
    # (the broker drops them for free; integrators bind queues of their own).
    keep_unrouted: bool = False

    def make_clock(self) -> ScaledClock:
        return ScaledClock(self.time_scale, self.time_origin, self.time_start)

    def service_url(self, service: str) -> str:
        return str(getattr(self, url_field(service)))

    def number_policy(self) -> NumberPolicy:
        return NumberPolicy(home_prefix=self.dial_home_prefix,
                            deny_prefixes=tuple(self.dial_deny_prefixes))


def url_field(service: str) -> str:
    """The CommonSettings field holding where ``service`` is found (``cti_url`` ...)."""
    return f"{service.split('_')[0]}_url"


class ServiceSettings(BaseSettings):
    """Base for per-service settings; subclasses set ``env_prefix`` and the default port."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    port: int = 0
    common: CommonSettings = Field(default_factory=CommonSettings)
