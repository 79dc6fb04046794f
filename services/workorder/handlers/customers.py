"""The customer directory: records, numbers, and the IVR's lookup of a caller."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder import repository
from services.workorder.schemas import CustomerIn
from shared.auth import Principal
from shared.data_scope import data_scope
from shared.db import Session
from shared.errors import NotFound
from shared.messaging import Transaction


async def upsert_customer(tx: Transaction, account: str, body: CustomerIn) -> None:
    numbers: list[str] | None = None
    if body.numbers is not None or body.ani is not None:
        numbers = list(dict.fromkeys([*(body.numbers or []), *([body.ani] if body.ani else [])]))
    fields = {"name": body.name, "area": body.area, "tier": body.tier,
              "flags": list(dict.fromkeys(body.flags)), "balance": body.balance}
    await repository.save_customer(tx, account, fields, set(body.model_fields_set), numbers)


async def get_customer(session: Session, account: str) -> dict[str, Any]:
    found = await repository.customer(session, account)
    if found is None:
        raise NotFound("customer", account)
    return found


async def lookup_customer(session: Session, number: str) -> dict[str, Any]:
    account = await repository.account_of(session, number.strip())
    if account is None:
        raise NotFound("customer number", number)
    return await get_customer(session, account)


async def lookup_with_outages(service: Any, number: str, now: datetime) -> dict[str, Any]:
    """The caller behind a number and the outages now active in their area, in one
    statement: what the IVR asks while the caller waits in the menu."""
    found = await repository.customer_with_outages(service, number.strip(), now)
    if found is None:
        raise NotFound("customer number", number)
    return found


async def audit_read(service: Any, principal: Principal, account: str, action: str) -> None:
    """Record that ``principal`` was shown ``account``'s personal data, before it is: a read
    whose audit cannot be written fails. Masked reads show nothing personal, and the
    suite's own lookups (the IVR's, with a service token) would only record every call."""
    if not data_scope(principal).personal or "service" in principal.scopes:
        return
    async with service.transaction() as tx:
        await repository.record_access(tx, account, action, principal.subject,
                                       " ".join(sorted(principal.scopes)), tx.now)


async def access_of(service: Any, account: str, limit: int) -> list[dict[str, Any]]:
    async with service.reader() as reader:
        return await repository.access_of(reader, account, limit)
