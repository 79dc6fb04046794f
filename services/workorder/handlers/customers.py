"""The customer directory: records, numbers, and the IVR's lookup of a caller."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db
from services.workorder.schemas import CustomerIn
from shared.errors import NotFound
from shared.messaging import Transaction


async def upsert_customer(tx: Transaction, account: str, body: CustomerIn) -> None:
    now = tx.now
    given = body.model_fields_set
    numbers: list[str] | None = None
    if body.numbers is not None or body.ani is not None:
        numbers = list(dict.fromkeys([*(body.numbers or []), *([body.ani] if body.ani else [])]))
    fields = {"name": body.name, "area": body.area, "tier": body.tier,
              "flags": list(dict.fromkeys(body.flags)), "balance": body.balance}
    table = db.customers
    statement = insert(table).values(account=account, created_at=now, updated_at=now, **fields)
    # A partial record (say, a trace line without a balance) must not wipe what is stored.
    changes = {name: statement.excluded[name] for name in fields if name in given}
    changes["updated_at"] = statement.excluded.updated_at
    await tx.session.execute(statement.on_conflict_do_update(index_elements=["account"],
                                                             set_=changes))
    if numbers is not None:
        await tx.session.execute(db.customer_numbers.delete()
                                 .where(db.customer_numbers.c.account == account))
        for position, number in enumerate(numbers):
            row = insert(db.customer_numbers).values(number=number, account=account,
                                                     position=position)
            # A number now listed here moves from whichever account had it before.
            await tx.session.execute(row.on_conflict_do_update(
                index_elements=["number"],
                set_={"account": row.excluded.account, "position": row.excluded.position}))


async def get_customer(session: AsyncSession, account: str) -> dict[str, Any]:
    row = (await session.execute(select(db.customers)
                                 .where(db.customers.c.account == account))).first()
    if row is None:
        raise NotFound("customer", account)
    numbers = (await session.execute(
        select(db.customer_numbers.c.number).where(db.customer_numbers.c.account == account)
        .order_by(db.customer_numbers.c.position))).scalars().all()
    return {**row._asdict(), "numbers": list(numbers)}


async def lookup_customer(session: AsyncSession, number: str) -> dict[str, Any]:
    account = (await session.execute(
        select(db.customer_numbers.c.account)
        .where(db.customer_numbers.c.number == number.strip()))).scalar()
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
