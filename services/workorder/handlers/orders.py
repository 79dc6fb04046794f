"""An order's life after intake: dispatch, accept, arrive, transfer, pause, priority,
resolution (which owes callbacks), reopen; the detail and the listing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.workorder import db, repository
from services.workorder.clocks import (
    WORK_CLOCKS,
    Runtime,
    clock_view,
    pause_clocks,
    rebudget_clocks,
    resume_clocks,
    start_clocks,
    stop_clocks,
)
from services.workorder.domain import callbacks as cbd
from services.workorder.domain import orders as od
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.handlers.common import emit_ticket, new_id, start_work_round
from services.workorder.repository import lock_order, order_of, order_out, save_order
from services.workorder.schemas import DispatchIn
from shared.db import Queries, Row, Session
from shared.db import row as fetch_row
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

S = db.SCHEMA


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


SET_PRIORITY = f"UPDATE {S}.orders SET priority = $2, updated_at = $3 WHERE order_id = $1"


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
    await tx.execute(SET_PRIORITY, order_id, priority, tx.now)
    await rebudget_clocks(tx, rt, row, priority, actor=actor,
                           reason=reason or f"priority {row.priority} -> {priority}")
    await emit_ticket(tx, TicketPriorityChanged(
        order_id=order_id, previous=row.priority, priority=priority, reason=reason,
    ), order_id=order_id, call_id=row.call_id)


RESTORE_OUTAGE_OF_ORDER = f"""
    UPDATE {S}.outages SET restored_at = $2, restored_by = $3
     WHERE outage_id = $1 AND restored_at IS NULL"""


# Whom a resolution owes a callback: the reporters, and each party's latest outcome.
CALLBACK_PARTIES = f"""
    SELECT ARRAY(SELECT reporter_id FROM {S}.order_reporters WHERE order_id = $1
                  ORDER BY linked_at, reporter_id) AS reporters,
           ARRAY(SELECT ROW(reporter_id, outcome) FROM {S}.callbacks WHERE order_id = $1
                  ORDER BY resolution DESC) AS outcomes"""


INSERT_CALLBACK = f"""
    INSERT INTO {S}.callbacks (callback_id, order_id, resolution, state, attempts,
                               max_attempts, due_at, created_at, reporter_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT ON CONSTRAINT uq_callbacks_order_resolution_party DO NOTHING
    RETURNING callback_id"""


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
        await tx.execute(RESTORE_OUTAGE_OF_ORDER, row.outage_id, now, actor)
    await start_clocks(tx, rt, saved, ("reply",), round_=order.resolution, actor=actor)
    # The callers who reported the fault are owed the callback, one task each: the order's
    # own caller and every linked reporter (on a re-resolution, those not yet content).
    parties = await fetch_row(tx, CALLBACK_PARTIES, order_id)
    assert parties is not None
    last_outcome: dict[str | None, str | None] = {}
    for reporter_id, outcome in parties.outcomes:
        last_outcome.setdefault(reporter_id, outcome)
    owed = od.owed_callbacks([None, *parties.reporters], last_outcome)
    for position, reporter_id in enumerate(owed):
        callback = cbd.schedule(new_id("CB"), order.order_id, order.resolution, now=now,
                                policy=rt.callback_policy, position=position)
        # The order row lock serializes resolutions; the unique key is the backstop.
        inserted = await tx.fetchval(
            INSERT_CALLBACK, callback.callback_id, callback.order_id, callback.resolution,
            callback.state.value, callback.attempts, callback.max_attempts, callback.due_at,
            now, reporter_id)
        if inserted is not None:
            await rt.wake_after_commit(tx, callback.due_at)
            await start_clocks(tx, rt, saved, ("callback",), round_=order.resolution,
                                actor=actor, callback_id=callback.callback_id)


ORDER_DETAIL = f"""
    SELECT o.*,
           ARRAY(SELECT h FROM {S}.order_history h WHERE h.order_id = o.order_id
                  ORDER BY h.id) AS detail_history,
           ARRAY(SELECT r.recording_id FROM {S}.recordings r
                  WHERE o.call_id IS NOT NULL AND r.call_id = o.call_id
                  ORDER BY r.stored_at) AS detail_recordings,
           ARRAY(SELECT c FROM {S}.sla_clocks c WHERE c.order_id = o.order_id
                  ORDER BY c.clock_id) AS detail_clocks,
           ARRAY(SELECT ch FROM {S}.clock_history ch WHERE ch.order_id = o.order_id
                  ORDER BY ch.id) AS detail_clock_history,
           ARRAY(SELECT r FROM {S}.order_reporters r WHERE r.order_id = o.order_id
                  ORDER BY r.linked_at, r.reporter_id) AS detail_reporters,
           ARRAY(SELECT cb FROM {S}.callbacks cb WHERE cb.order_id = o.order_id
                  ORDER BY cb.created_at, cb.order_id, cb.resolution) AS detail_callbacks,
           ARRAY(SELECT a FROM {S}.callback_attempts a JOIN {S}.callbacks cb
                           ON cb.callback_id = a.callback_id
                  WHERE cb.order_id = o.order_id
                  ORDER BY a.callback_id, a.attempt) AS detail_attempts
      FROM {S}.orders o WHERE o.order_id = $1"""


def records(values: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(value.items()) for value in values]


def _with_attempts(callbacks: list[dict[str, Any]], attempts: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    log_of: dict[str, list[dict[str, Any]]] = {c["callback_id"]: [] for c in callbacks}
    for attempt in attempts:
        log_of[attempt["callback_id"]].append(attempt)
    return [{**c, "attempt_log": log_of[c["callback_id"]]} for c in callbacks]


async def order_detail(db_: Queries, order_id: str, rt: Runtime, now: datetime
                       ) -> dict[str, Any]:
    found = await fetch_row(db_, ORDER_DETAIL, order_id)
    if found is None:
        raise NotFound("order", order_id)
    parts = tuple(key for key in found if key.startswith("detail_"))
    return {**order_out(found, without=parts), "history": records(found.detail_history),
            "reporters": records(found.detail_reporters),
            "callbacks": _with_attempts(records(found.detail_callbacks),
                                        records(found.detail_attempts)),
            "recording_ids": list(found.detail_recordings),
            "clocks": [clock_view(Row(c), now, rt.calendar) for c in found.detail_clocks],
            "clock_history": records(found.detail_clock_history)}


async def list_orders(session: Session, **filters: Any) -> list[dict[str, Any]]:
    """Orders newest first, by the filters of :func:`repository.orders`."""
    return [order_out(row) for row in await repository.orders(session, **filters)]
