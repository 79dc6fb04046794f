"""The customer directory: records, numbers, and the IVR's lookup of a caller."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder import repository
from services.workorder.schemas import CustomerIn
from shared.auth import Principal
from shared.data_scope import data_scope, mask
from shared.db import Session
from shared.dialing import NumberPolicy, normalized
from shared.errors import Invalid, NotFound
from shared.messaging import Transaction


def stored_numbers(body: CustomerIn, policy: NumberPolicy, where: str = "") -> list[str] | None:
    """The record's numbers as the directory keeps them: in E.164 however they were written
    (``0755 8123 4567``, full-width digits), so the caller's number from the switch finds
    the record, and a number is one entry however it was spelled. One that is no phone
    number is refused (422 naming it). None: the body does not replace the numbers."""
    if body.numbers is None and body.ani is None:
        return None
    given = [(f"{where}numbers.{i}", n) for i, n in enumerate(body.numbers or [])]
    given += [(f"{where}ani", body.ani)] if body.ani else []
    numbers = []
    for field, number in given:
        spelled = normalized(number, policy)
        if spelled is None:
            raise Invalid(field, f"{mask(number)!r} is not a phone number")
        numbers.append(spelled)
    return list(dict.fromkeys(numbers))


async def upsert_customer(tx: Transaction, account: str, body: CustomerIn,
                          numbers: list[str] | None) -> None:
    """Insert or update the record; ``numbers`` from :func:`stored_numbers`."""
    fields = {"name": body.name, "area": body.area, "tier": body.tier,
              "flags": list(dict.fromkeys(body.flags)), "balance": body.balance}
    await repository.save_customer(tx, account, fields, set(body.model_fields_set), numbers)


async def get_customer(session: Session, account: str) -> dict[str, Any]:
    found = await repository.customer(session, account)
    if found is None:
        raise NotFound("customer", account)
    return found


async def lookup_with_outages(service: Any, number: str, now: datetime, policy: NumberPolicy
                              ) -> dict[str, Any]:
    """The caller behind a number and the outages now active in their area, in one
    statement: what the IVR asks while the caller waits in the menu. The number is looked
    up as the directory stores it (:func:`stored_numbers`)."""
    found = await repository.customer_with_outages(
        service, normalized(number, policy) or number.strip(), now)
    if found is None:
        raise NotFound("customer number", number)
    return found


async def audit_read(service: Any, principal: Principal, account: str, action: str,
                     order_id: str | None = None) -> None:
    """Record that ``principal`` was shown ``account``'s personal data, before it is: a read
    whose audit cannot be written fails. Masked reads show nothing personal, and the
    suite's own lookups (the IVR's, with a service token) would only record every call."""
    if not data_scope(principal).personal or "service" in principal.scopes:
        return
    async with service.transaction() as tx:
        await repository.record_access(tx, account, action, principal.subject,
                                       " ".join(sorted(principal.scopes)), tx.now, order_id)


async def access_of(service: Any, account: str, limit: int) -> list[dict[str, Any]]:
    async with service.reader() as reader:
        return await repository.access_of(reader, account, limit)
