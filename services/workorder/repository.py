"""Workorder's rows: orders and callbacks (row ⇄ domain, locks, saves, on SQL written once:
the call's path), and the customers, outages and order listings (SQLAlchemy Core: REST)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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


# -- customers -----------------------------------------------------------------------------

async def save_customer(tx: Transaction, account: str, fields: dict[str, Any],
                        given: set[str], numbers: list[str] | None) -> None:
    """Insert or update the record; only the ``given`` fields of an existing one change (a
    partial record must not wipe what is stored). ``numbers`` (if not None) become the
    account's, in order, each moving from whichever account had it before."""
    now = tx.now
    statement = insert(db.customers).values(account=account, created_at=now, updated_at=now,
                                            **fields)
    changes = {name: statement.excluded[name] for name in fields if name in given}
    changes["updated_at"] = statement.excluded.updated_at
    await tx.session.execute(statement.on_conflict_do_update(index_elements=["account"],
                                                             set_=changes))
    if numbers is None:
        return
    await tx.session.execute(db.customer_numbers.delete()
                             .where(db.customer_numbers.c.account == account))
    for position, number in enumerate(numbers):
        row = insert(db.customer_numbers).values(number=number, account=account,
                                                 position=position)
        await tx.session.execute(row.on_conflict_do_update(
            index_elements=["number"],
            set_={"account": row.excluded.account, "position": row.excluded.position}))


async def customer(session: AsyncSession, account: str) -> dict[str, Any] | None:
    """The record with its numbers in order; None if the account is unknown."""
    row = (await session.execute(select(db.customers)
                                 .where(db.customers.c.account == account))).first()
    if row is None:
        return None
    numbers = (await session.execute(
        select(db.customer_numbers.c.number).where(db.customer_numbers.c.account == account)
        .order_by(db.customer_numbers.c.position))).scalars().all()
    return {**row._asdict(), "numbers": list(numbers)}


async def account_of(session: AsyncSession, number: str) -> str | None:
    account: str | None = (await session.execute(
        select(db.customer_numbers.c.account)
        .where(db.customer_numbers.c.number == number))).scalar()
    return account


# -- outages -------------------------------------------------------------------------------

async def insert_outage(tx: Transaction, outage_id: str, *, area: str, type_: str,
                        start: datetime, restore_eta: datetime | None) -> None:
    await tx.session.execute(db.outages.insert().values(
        outage_id=outage_id, area=area, type=type_, start_at=start, restore_eta=restore_eta,
        created_at=tx.now))


async def outage(tx: Transaction, outage_id: str, *, lock: bool = False) -> Any:
    query = select(db.outages).where(db.outages.c.outage_id == outage_id)
    return (await tx.session.execute(query.with_for_update() if lock else query)).first()


async def mark_outage_restored(tx: Transaction, outage_id: str, actor: str) -> None:
    await tx.session.execute(update(db.outages).where(db.outages.c.outage_id == outage_id)
                             .values(restored_at=tx.now, restored_by=actor))


async def outages(session: AsyncSession, *, area: str | None, active: bool | None,
                  now: datetime) -> list[Any]:
    t = db.outages
    query = select(t).order_by(t.c.start_at, t.c.outage_id)
    if area is not None:
        query = query.where(t.c.area == area)
    is_active = and_(t.c.restored_at.is_(None), t.c.start_at <= now,
                     or_(t.c.restore_eta.is_(None), t.c.restore_eta > now))
    if active is True:
        query = query.where(is_active)
    elif active is False:
        query = query.where(~is_active)
    return list((await session.execute(query)).all())


# -- order listings ------------------------------------------------------------------------

async def orders(session: AsyncSession, *, call_id: str | None, state: OrderState | None,
                 customer_account: str | None, order_type: OrderType | None,
                 open_only: bool | None, limit: int, department: str | None = None,
                 owner: str | None = None, abandoned_call_id: str | None = None) -> list[Any]:
    """Orders newest first, by any of the filters given."""
    t = db.orders
    query = select(t).order_by(t.c.created_at.desc(), t.c.order_id).limit(limit)
    if call_id is not None:
        # The order the call opened, or the one its report joined.
        joined = select(db.order_reporters.c.order_id).where(
            db.order_reporters.c.call_id == call_id)
        query = query.where(or_(t.c.call_id == call_id, t.c.order_id.in_(joined)))
    if abandoned_call_id is not None:
        query = query.where(t.c.abandoned_call_id == abandoned_call_id)
    if state is not None:
        query = query.where(t.c.state == state.value)
    if customer_account is not None:
        query = query.where(t.c.customer_account == customer_account)
    if order_type is not None:
        query = query.where(t.c.type == order_type.value)
    if department is not None:
        query = query.where(t.c.department == department)
    if owner is not None:
        query = query.where(t.c.owner == owner)
    if open_only is not None:
        closed = t.c.state.in_([s.value for s in od.TERMINAL_STATES])
        query = query.where(~closed if open_only else closed)
    return list((await session.execute(query)).all())
