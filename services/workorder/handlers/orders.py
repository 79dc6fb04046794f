"""An order's life after intake: dispatch, accept, arrive, transfer, pause, priority,
resolution (which owes callbacks), reopen; the detail and the listing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder import repository
from services.workorder.domain import callbacks as cbd
from services.workorder.domain import orders as od
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.handlers import Runtime
from services.workorder.handlers.clocks import (
    WORK_CLOCKS,
    pause_clocks,
    rebudget_clocks,
    resume_clocks,
    start_clocks,
    stop_clocks,
)
from services.workorder.handlers.common import emit_ticket, new_id, start_work_round
from services.workorder.repository import lock_order, order_of, order_out, save_order
from services.workorder.schemas import DispatchIn
from shared.db import Queries, Session
from shared.errors import IllegalTransition, NotFound
from shared.events.workorder import (
    TicketAccepted,
    TicketArrived,
    TicketClosed,
    TicketDispatched,
    TicketPriorityChanged,
    TicketReopened,
    TicketResolved,
    TicketTransferred,
)
from shared.messaging import Transaction


async def dispatch_order(tx: Transaction, order_id: str, body: DispatchIn, actor: str,
                         rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    # The dispatch may complete the case's details; check what the department needs.
    details = {"area": body.area or row.area, "description": body.description or row.description,
               "category": body.category or row.category}
    od.require_for_dispatch(OrderType(row.type), details)
    order, step = od.dispatch(order_of(row), body.department, now=tx.now, actor=actor,
                              reason=body.reason)
    saved = await save_order(tx, order, step, **details)
    await stop_clocks(tx, rt, order_id, ("dispatch", "acceptance"), actor=actor,
                       reason=f"dispatched to {body.department}")
    await start_clocks(tx, rt, saved, ("acceptance",), round_=order.resolution + 1, actor=actor)
    await emit_ticket(tx, TicketDispatched(
        order_id=order_id, department=body.department, dispatches=order.dispatches,
        reason=body.reason), order_id=order_id, call_id=row.call_id)


async def accept_order(tx: Transaction, order_id: str, owner: str, actor: str,
                       rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    order, step = od.accept(order_of(row), owner, now=tx.now, actor=actor)
    await save_order(tx, order, step)
    await stop_clocks(tx, rt, order_id, ("acceptance",), actor=actor, reason="accepted")
    await emit_ticket(tx, TicketAccepted(
        order_id=order_id, department=order.department, owner=owner),
        order_id=order_id, call_id=row.call_id)


async def arrive_order(tx: Transaction, order_id: str, actor: str, rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    order, step = od.arrive(order_of(row), now=tx.now, actor=actor)
    await save_order(tx, order, step)
    await stop_clocks(tx, rt, order_id, ("arrival",), actor=actor, reason="on site")
    await emit_ticket(tx, TicketArrived(
        order_id=order_id, department=order.department),
        order_id=order_id, call_id=row.call_id)


async def transfer_order(tx: Transaction, order_id: str, department: str, reason: str,
                         actor: str, rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    order, step = od.transfer(order_of(row), department, reason, now=tx.now, actor=actor)
    saved = await save_order(tx, order, step)
    await stop_clocks(tx, rt, order_id, ("acceptance",), actor=actor,
                       reason=f"transferred to {department}")
    await start_clocks(tx, rt, saved, ("acceptance",), round_=order.resolution + 1, actor=actor)
    await emit_ticket(tx, TicketTransferred(
        order_id=order_id, from_department=row.department, to_department=department,
        reason=reason), order_id=order_id, call_id=row.call_id)


async def reopen_order(tx: Transaction, order_id: str, reason: str, actor: str,
                       rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    order, step = od.reopen_closed(order_of(row), reason, now=tx.now, actor=actor)
    saved = await save_order(tx, order, step)
    await emit_ticket(tx, TicketReopened(order_id=order_id, reason=reason),
                       order_id=order_id, call_id=row.call_id)
    await start_work_round(tx, rt, saved, actor)


async def pause_order(tx: Transaction, order_id: str, reason: str, actor: str,
                      rt: Runtime) -> int:
    row = await lock_order(tx, order_id)
    if not od.is_open(OrderState(row.state)):
        raise IllegalTransition("order", row.state, "pause", [])
    return await pause_clocks(tx, rt, order_id, actor=actor, reason=reason)


async def resume_order(tx: Transaction, order_id: str, reason: str | None, actor: str,
                       rt: Runtime) -> int:
    await lock_order(tx, order_id)
    return await resume_clocks(tx, rt, order_id, actor=actor, reason=reason)


async def change_priority(tx: Transaction, order_id: str, priority: str, reason: str | None,
                          actor: str, rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    if row.priority == priority:
        return
    await repository.save_priority(tx, order_id, priority)
    await rebudget_clocks(tx, rt, row, priority, actor=actor,
                           reason=reason or f"priority {row.priority} -> {priority}")
    await emit_ticket(tx, TicketPriorityChanged(
        order_id=order_id, previous=row.priority, priority=priority, reason=reason,
    ), order_id=order_id, call_id=row.call_id)


async def resolve_order(tx: Transaction, order_id: str, reply: str, actor: str,
                        rt: Runtime) -> None:
    row = await lock_order(tx, order_id)
    now = tx.now
    order, step = od.resolve(order_of(row), reply, now=now, actor=actor)
    saved = await save_order(tx, order, step)
    await stop_clocks(tx, rt, order_id, WORK_CLOCKS, actor=actor, reason="resolved")
    await emit_ticket(tx, TicketResolved(
        order_id=order.order_id, resolution=order.resolution, reply=reply,
    ), order_id=order.order_id, call_id=row.call_id)
    if not od.owes_survey(order.type):
        # A callback request is done once the customer has been called back.
        closed, close_step = od.close_without_survey(order, now=now, actor=actor)
        await save_order(tx, closed, close_step)
        await stop_clocks(tx, rt, order_id, None, actor=actor, reason="closed")
        await emit_ticket(tx, TicketClosed(order_id=order_id),
                           order_id=order_id, call_id=row.call_id)
        return
    if row.outage_id is not None:
        # The repair is done, so is the outage: later calls from the area are news.
        await repository.restore_outage_of_order(tx, row.outage_id, actor)
    await start_clocks(tx, rt, saved, ("reply",), round_=order.resolution, actor=actor)
    # The callers who reported the fault are owed the callback, one task each: the order's
    # own caller and every linked reporter (on a re-resolution, those not yet content).
    reporters, last_outcome = await repository.callback_parties(tx, order_id)
    owed = od.owed_callbacks([None, *reporters], last_outcome)
    for position, reporter_id in enumerate(owed):
        callback = cbd.schedule(new_id("CB"), order.order_id, order.resolution, now=now,
                                policy=rt.callback_policy, position=position)
        # The order row lock serializes resolutions; the unique key is the backstop.
        if await repository.insert_callback(tx, callback, reporter_id):
            await rt.wake_after_commit(tx, callback.due_at)
            await start_clocks(tx, rt, saved, ("callback",), round_=order.resolution,
                                actor=actor, callback_id=callback.callback_id)


async def order_detail(db_: Queries, order_id: str, rt: Runtime, now: datetime
                       ) -> dict[str, Any]:
    found = await repository.order_detail(db_, order_id, now=now, calendar=rt.calendar)
    if found is None:
        raise NotFound("order", order_id)
    return found


async def list_orders(session: Session, **filters: Any) -> list[dict[str, Any]]:
    """Orders newest first, by the filters of :func:`repository.orders`."""
    return [order_out(row) for row in await repository.orders(session, **filters)]
