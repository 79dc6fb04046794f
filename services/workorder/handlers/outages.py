"""Outages: declared, listed, restored (restoring resolves the outage's repair order)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder import repository
from services.workorder.domain import orders as od
from services.workorder.domain.orders import OrderState
from services.workorder.handlers import Runtime
from services.workorder.handlers.common import new_id
from services.workorder.handlers.orders import resolve_order
from services.workorder.repository import lock_order
from services.workorder.schemas import OutageIn
from shared.db import Session
from shared.errors import Invalid, NotFound
from shared.messaging import Transaction


def _outage_active(row: Any, now: datetime) -> bool:
    return (row.restored_at is None and row.start_at <= now
            and (row.restore_eta is None or now < row.restore_eta))


def _outage_out(row: Any, now: datetime) -> dict[str, Any]:
    return {"outage_id": row.outage_id, "area": row.area, "type": row.type,
            "start": row.start_at, "restore_eta": row.restore_eta,
            "created_at": row.created_at, "active": _outage_active(row, now),
            "order_id": row.order_id, "restored_at": row.restored_at,
            "restored_by": row.restored_by}


async def create_outage(tx: Transaction, body: OutageIn) -> dict[str, Any]:
    start = body.start or tx.now
    if body.restore_eta is not None and body.restore_eta <= start:
        raise Invalid("restore_eta", "restore_eta must be after the outage start")
    outage_id = new_id("OUT")
    await repository.insert_outage(tx, outage_id, area=body.area, type_=body.type, start=start,
                                   restore_eta=body.restore_eta)
    return _outage_out(await repository.outage(tx, outage_id), tx.now)


async def list_outages(session: Session, *, area: str | None, active: bool | None,
                       now: datetime) -> list[dict[str, Any]]:
    return [_outage_out(row, now)
            for row in await repository.outages(session, area=area, active=active, now=now)]


async def restore_outage(tx: Transaction, outage_id: str, reply: str | None, actor: str,
                         rt: Runtime) -> dict[str, Any]:
    """The outage is over: mark it restored and resolve its repair order, which calls back
    everybody who reported it. Restoring twice changes nothing."""
    row = await repository.outage(tx, outage_id, lock=True)
    if row is None:
        raise NotFound("outage", outage_id)
    if row.restored_at is None:
        await repository.mark_outage_restored(tx, outage_id, actor)
        if row.order_id is not None:
            order = await lock_order(tx, row.order_id)
            if od.linkable(OrderState(order.state)):
                await resolve_order(tx, row.order_id, reply or "Power restored: the outage in "
                                    f"{row.area} is over.", actor, rt)
    return _outage_out(await repository.outage(tx, outage_id), tx.now)
