"""Orders and callbacks as rows: row ⇄ domain, locks, saves (SQL written once)."""

from __future__ import annotations

from typing import Any

from services.workorder import db, journal
from services.workorder.domain import orders as od
from services.workorder.domain.callbacks import Callback, CallbackState
from services.workorder.domain.orders import Order, OrderState, OrderType, Transition
from shared.db import Row
from shared.db import row as fetch_row
from shared.errors import NotFound
from shared.messaging import Transaction

S = db.SCHEMA


def order_of(row: Row) -> Order:
    return Order(order_id=row.order_id, type=OrderType(row.type), state=OrderState(row.state),
                 resolution=row.resolution, reply=row.reply, satisfaction=row.satisfaction,
                 department=row.department, owner=row.owner, dispatches=row.dispatches)


def order_out(row: Row | Any, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """The order as the API shows it (``without``: extra columns a read joined in)."""
    data = row._asdict()
    for key in without:
        del data[key]
    data["allowed_actions"] = od.allowed_actions(OrderState(row.state), OrderType(row.type))
    return data


LOCK_ORDER = f"SELECT * FROM {S}.orders WHERE order_id = $1 FOR UPDATE"


# The domain's new state of the order; the dispatch may complete its details ($10-$12).


SAVE_ORDER = f"""
    UPDATE {S}.orders
       SET state = $2::text, resolution = $3, reply = $4, satisfaction = $5,
           department = $6, owner = $7, dispatches = $8, updated_at = $9,
           area = coalesce($10, area), description = coalesce($11, description),
           category = coalesce($12, category),
           resolved_at = CASE WHEN $2::text = 'resolved' THEN $9 ELSE resolved_at END,
           first_resolved_at = CASE WHEN $2::text = 'resolved' THEN coalesce(first_resolved_at, $9)
                                    ELSE first_resolved_at END,
           closed_at = CASE WHEN $2::text = 'closed' THEN $9 ELSE closed_at END
     WHERE order_id = $1
    RETURNING *"""


async def lock_order(tx: Transaction, order_id: str) -> Row:
    row = await fetch_row(tx, LOCK_ORDER, order_id)
    if row is None:
        raise NotFound("order", order_id)
    return row


async def save_order(tx: Transaction, order: Order, step: Transition, *,
                      area: str | None = None, description: str | None = None,
                      category: str | None = None) -> Row:
    """Write the order's new state and its history step; the row as saved."""
    saved = await fetch_row(tx, SAVE_ORDER, order.order_id, order.state.value, order.resolution,
                            order.reply, order.satisfaction, order.department, order.owner,
                            order.dispatches, step.at, area, description, category)
    assert saved is not None, "the order was locked"
    audit(tx, step)
    return saved


def audit(tx: Transaction, step: Transition) -> None:
    journal.order_step(tx, step.order_id, step.action.value,
                       step.from_state.value if step.from_state else None,
                       step.to_state.value, step.actor, step.reason, step.at)


# JSON goes in as text, whatever codec the connection has for jsonb.


INSERT_ORDER = f"""
    INSERT INTO {S}.orders (order_id, type, state, call_id, customer_account, contact_number,
                            area, description, category, idempotency_key, resolution,
                            created_by, created_at, updated_at, priority, address, ivr_path,
                            flags, outage_id, abandoned_call_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15,
            $16::text::jsonb, '[]'::jsonb, $17, $18)
    ON CONFLICT DO NOTHING
    RETURNING *"""


async def insert_order(tx: Transaction, order: Order, *, actor: str, call_id: str | None,
                        account: str | None, contact_number: str | None, area: str | None,
                        description: str | None, category: str | None,
                        idempotency_key: str | None = None, priority: str = "normal",
                        address: str | None = None, ivr_path: str | None = None,
                        outage_id: str | None = None,
                        abandoned_call_id: str | None = None) -> Row | None:
    """The new order's row; None when a twin (same call and type, idempotency key or
    abandoned call) is already there."""
    return await fetch_row(
        tx, INSERT_ORDER, order.order_id, order.type.value, order.state.value, call_id, account,
        contact_number, area, description, category, idempotency_key, order.resolution, actor,
        tx.now, priority, address, ivr_path, outage_id, abandoned_call_id)


def callback_of(row: Row) -> Callback:
    return Callback(callback_id=row.callback_id, order_id=row.order_id,
                    resolution=row.resolution, max_attempts=row.max_attempts,
                    state=CallbackState(row.state), attempts=row.attempts, due_at=row.due_at,
                    satisfaction=row.satisfaction, outcome=row.outcome,
                    last_failure=row.last_failure, completed_at=row.completed_at)


SAVE_CALLBACK = f"""
    UPDATE {S}.callbacks
       SET state = $2, attempts = $3, due_at = $4, satisfaction = $5, outcome = $6,
           last_failure = $7, completed_at = $8
     WHERE callback_id = $1"""


END_ATTEMPT = f"""
    UPDATE {S}.callback_attempts SET ended_at = $3, result = $4
     WHERE callback_id = $1 AND attempt = $2"""


async def save_callback(tx: Transaction, callback: Callback) -> None:
    await tx.execute(SAVE_CALLBACK, callback.callback_id, callback.state.value,
                     callback.attempts, callback.due_at, callback.satisfaction,
                     callback.outcome, callback.last_failure, callback.completed_at)


async def end_attempt(tx: Transaction, callback_id: str, attempt: int, result: str) -> None:
    await tx.execute(END_ATTEMPT, callback_id, attempt, tx.now, result)


# Which callback attempt an event is about: by request id, by the context we attached, or by
# the outbound call's id (if CTI did not echo the context), in that order of trust.


FIND_ATTEMPT = f"""
    SELECT a.* FROM (
        SELECT 0 AS rank, a.* FROM {S}.callback_attempts a WHERE a.request_id = $1
        UNION ALL
        SELECT 1, a.* FROM {S}.callback_attempts a WHERE a.callback_id = $2 AND a.attempt = $3
        UNION ALL
        (SELECT 2, a.* FROM {S}.callback_attempts a WHERE a.call_id = $4
          ORDER BY a.requested_at DESC LIMIT 1)) a
     ORDER BY a.rank LIMIT 1"""


async def find_attempt(tx: Transaction, *, request_id: Any = None,
                        context: dict[str, Any] | None = None,
                        call_id: Any = None) -> Row | None:
    context = context or {}
    request_id = request_id or context.get("request_id")
    callback_id, attempt = context.get("callback_id"), context.get("attempt")
    if not isinstance(callback_id, str) or not isinstance(attempt, int):
        callback_id = attempt = None
    keys = (request_id if isinstance(request_id, str) else None, callback_id, attempt,
            call_id if isinstance(call_id, str) else None)
    if not any(key is not None for key in keys):
        return None
    return await fetch_row(tx, FIND_ATTEMPT, *keys)


LOCK_CALLBACK = f"SELECT * FROM {S}.callbacks WHERE callback_id = $1 FOR UPDATE"


async def lock_callback(tx: Transaction, callback_id: str) -> Callback:
    found = await fetch_row(tx, LOCK_CALLBACK, callback_id)
    assert found is not None, "an attempt's callback is never deleted"
    return callback_of(found)
