"""Lookups in workorder over REST, made while the caller waits in the menu.

Any failure (peer down, slow, a 5xx, a body we cannot read) reads as "nothing known": the
call goes on as an unknown caller or without an outage notice, and is never failed for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from services.ivr_engine.domain import Customer, Outage

log = structlog.get_logger(__name__)


class _CustomerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    account: str
    name: str | None = None
    tier: str | None = None
    area: str | None = None
    flags: list[str] | None = None
    balance: float | None = None


class _OutageBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    area: str | None = None
    type: str | None = None
    restore_eta: datetime | None = None
    expected_restore_at: datetime | None = None
    active: bool = True

    @field_validator("restore_eta", "expected_restore_at", mode="before")
    @classmethod
    def _only_datetimes(cls, value: Any) -> Any:
        # A bare number is a trace offset, not a time we can speak; leave it unknown.
        return None if isinstance(value, int | float) else value


def _unwrap(body: Any, *keys: str) -> Any:
    if isinstance(body, Mapping):
        for key in keys:
            if key in body:
                return body[key]
    return body


@dataclass(frozen=True)
class Lookup:
    """What the IVR learns of a caller before their session starts."""

    customer: Customer | None
    outages: list[Outage] | None


class WorkorderClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout: float) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def lookup(self, number: str) -> tuple[Customer | None, list[Outage] | None]:
        """The caller behind ``number``, and the outages active in their area when workorder
        lists them with the customer (None: it did not say)."""
        body = await self._get("/v1/customers/lookup", {"number": number})
        if body is None:
            return None, None
        try:
            found = _CustomerBody.model_validate(_unwrap(body, "customer"))
        except ValidationError as error:
            log.warning("unreadable customer from workorder", error=str(error))
            return None, None
        customer = Customer(account=found.account, name=found.name,
                            tier=found.tier or "regular", area=found.area,
                            flags=found.flags or [], balance=found.balance)
        listed = body.get("active_outages") if isinstance(body, Mapping) else None
        outages = (None if listed is None or customer.area is None
                   else self._outages(listed, customer.area))
        return customer, outages

    async def active_outages(self, area: str) -> list[Outage]:
        body = await self._get("/v1/outages", {"area": area, "active": "true"})
        return self._outages(_unwrap(body, "outages", "items"), area)

    @staticmethod
    def _outages(items: Any, area: str) -> list[Outage]:
        if not isinstance(items, list):
            return []
        outages = []
        for item in items:
            try:
                parsed = _OutageBody.model_validate(item)
            except ValidationError as error:
                log.warning("unreadable outage from workorder", error=str(error))
                continue
            if parsed.active and (parsed.area is None or parsed.area == area):
                outages.append(Outage(area=parsed.area or area, type=parsed.type,
                                      restore_eta=parsed.restore_eta or parsed.expected_restore_at))
        return outages

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = await self.http.get(self.base_url + path, params=params,
                                           timeout=self.timeout)
        except httpx.HTTPError as error:
            log.warning("workorder unreachable; going on without it", path=path,
                        error=repr(error))
            return None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            log.warning("workorder lookup failed; going on without it", path=path,
                        status=response.status_code)
            return None
        try:
            return response.json()
        except ValueError:
            log.warning("workorder sent a body that is not JSON", path=path)
            return None
