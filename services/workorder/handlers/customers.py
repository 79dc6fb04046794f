"""The customer directory: records, numbers, and the IVR's lookup of a caller."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from services.workorder import db, repository
from services.workorder.schemas import CustomerIn
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


LOOKUP = f"""
    SELECT c.account, c.name, c.area, c.tier, c.flags, c.balance, c.created_at, c.updated_at,
           (SELECT array_agg(m.number ORDER BY m.position) FROM {db.SCHEMA}.customer_numbers m
             WHERE m.account = c.account) AS numbers,
           (SELECT coalesce(json_agg(json_build_object(
                    'outage_id', o.outage_id, 'area', o.area, 'type', o.type,
                    'start', o.start_at, 'restore_eta', o.restore_eta,
                    'created_at', o.created_at, 'active', true, 'order_id', o.order_id,
                    'restored_at', o.restored_at, 'restored_by', o.restored_by)
                    ORDER BY o.start_at, o.outage_id), '[]')
              FROM {db.SCHEMA}.outages o
             WHERE o.area = c.area AND o.restored_at IS NULL AND o.start_at <= $2
               AND (o.restore_eta IS NULL OR o.restore_eta > $2)) AS active_outages
      FROM {db.SCHEMA}.customer_numbers n JOIN {db.SCHEMA}.customers c ON c.account = n.account
     WHERE n.number = $1"""


async def lookup_with_outages(service: Any, number: str, now: datetime) -> dict[str, Any]:
    """The caller behind a number and the outages now active in their area, in one
    statement: what the IVR asks while the caller waits in the menu."""
    row = await service.fetchrow(LOOKUP, number.strip(), now)
    if row is None:
        raise NotFound("customer number", number)
    found = dict(row)
    for key in ("flags", "active_outages"):
        if isinstance(found[key], str):
            found[key] = json.loads(found[key])
    found["numbers"] = list(found["numbers"] or [])
    return found
