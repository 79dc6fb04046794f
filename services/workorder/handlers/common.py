"""What the order, callback and consumer handlers share: ids, the ticket events' subject, a new
round of work clocks."""

from __future__ import annotations

import uuid

from services.workorder.handlers import Runtime
from services.workorder.handlers.clocks import start_clocks
from shared.db import Row
from shared.events import EventData
from shared.messaging import Transaction

SYSTEM_ACTOR = "workorder"


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16].upper()}"


async def emit_ticket(tx: Transaction, event: EventData, *, order_id: str,
                       call_id: str | None) -> None:
    await tx.emit(event, subject=f"ticket/{order_id}", correlationid=call_id)


async def start_work_round(tx: Transaction, rt: Runtime, order: Row, actor: str) -> None:
    """A new round of work (creation, reopen): the dispatch, arrival and resolution clocks."""
    await start_clocks(tx, rt, order, ("dispatch", "arrival", "resolution"),
                        round_=order.resolution + 1, actor=actor)
