"""Handlers: load state, let the domain decide, save it and record events, in one transaction.

Routes and consumers call these; nothing here knows about HTTP or the bus.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db, journal
from services.workorder.clocks import WORK_CLOCKS, Runtime, clock_view
from services.workorder.clocks import pause_clocks as _pause_clocks
from services.workorder.clocks import rebudget_clocks as _rebudget_clocks
from services.workorder.clocks import resume_clocks as _resume_clocks
from services.workorder.clocks import start_clocks as _start_clocks
from services.workorder.clocks import stop_clocks as _stop_clocks
from services.workorder.domain import callbacks as cbd
from services.workorder.domain import dialing
from services.workorder.domain import orders as od
from services.workorder.domain.callbacks import Callback, CallbackAction, CallbackState
from services.workorder.domain.orders import Order, OrderState, OrderType, Transition
from services.workorder.domain.reports import callback_completion_rate
from services.workorder.schemas import CustomerIn, DispatchIn, OrderIn, OutageIn
from shared.consumers import Consumes
from shared.db import Queries, Row
from shared.db import row as fetch_row
from shared.db import rows as fetch_rows
from shared.errors import IllegalTransition, Invalid, NotFound
from shared.events import EventData
from shared.events.acd import CallAbandoned, CallRejected
from shared.events.cti import CallOriginated, CallReleased, OriginationFailed
from shared.events.ivr import SessionCompleted, SurveyCompleted
from shared.events.recording import FileStored
from shared.events.workorder import (
    CallbackCompleted,
    CallbackRequested,
    SlaEscalated,
    TicketAccepted,
    TicketArrived,
    TicketClosed,
    TicketCreated,
    TicketDispatched,
    TicketFlagged,
    TicketLinked,
    TicketPriorityChanged,
    TicketReopened,
    TicketResolved,
    TicketTransferred,
)
from shared.messaging import Transaction

log = structlog.get_logger(__name__)

SYSTEM_ACTOR = "workorder"
S = db.SCHEMA


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:16].upper()}"


# -- customers ------------------------------------------------------------------------------

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


# -- outages --------------------------------------------------------------------------------

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
    now = tx.now
    start = body.start or now
    if body.restore_eta is not None and body.restore_eta <= start:
        raise Invalid("restore_eta", "restore_eta must be after the outage start")
    outage_id = _new_id("OUT")
    await tx.session.execute(db.outages.insert().values(
        outage_id=outage_id, area=body.area, type=body.type, start_at=start,
        restore_eta=body.restore_eta, created_at=now))
    row = (await tx.session.execute(select(db.outages)
                                    .where(db.outages.c.outage_id == outage_id))).one()
    return _outage_out(row, now)


async def list_outages(session: AsyncSession, *, area: str | None, active: bool | None,
                       now: datetime) -> list[dict[str, Any]]:
    t = db.outages
    query = select(t).order_by(t.c.start_at, t.c.outage_id)
    if area is not None:
        query = query.where(t.c.area == area)
    is_active = _outage_active_clause(now)
    if active is True:
        query = query.where(is_active)
    elif active is False:
        query = query.where(~is_active)
    return [_outage_out(row, now) for row in (await session.execute(query)).all()]


def _outage_active_clause(now: datetime) -> Any:
    t = db.outages
    return and_(t.c.restored_at.is_(None), t.c.start_at <= now,
                or_(t.c.restore_eta.is_(None), t.c.restore_eta > now))


async def restore_outage(tx: Transaction, outage_id: str, reply: str | None, actor: str,
                         rt: Runtime) -> dict[str, Any]:
    """The outage is over: mark it restored and resolve its repair order, which calls back
    everybody who reported it. Restoring twice changes nothing."""
    row = (await tx.session.execute(select(db.outages).where(db.outages.c.outage_id == outage_id)
                                    .with_for_update())).first()
    if row is None:
        raise NotFound("outage", outage_id)
    if row.restored_at is None:
        await tx.session.execute(update(db.outages).where(db.outages.c.outage_id == outage_id)
                                 .values(restored_at=tx.now, restored_by=actor))
        if row.order_id is not None:
            order = await _lock_order(tx, row.order_id)
            if OrderState(order.state) in od.LINKABLE_STATES:
                await resolve_order(tx, row.order_id, reply or "Power restored: the outage in "
                                    f"{row.area} is over.", actor, rt)
    fresh = (await tx.session.execute(select(db.outages)
                                      .where(db.outages.c.outage_id == outage_id))).one()
    return _outage_out(fresh, tx.now)


# -- orders ---------------------------------------------------------------------------------

def _order_of(row: Row) -> Order:
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


async def _lock_order(tx: Transaction, order_id: str) -> Row:
    row = await fetch_row(tx, LOCK_ORDER, order_id)
    if row is None:
        raise NotFound("order", order_id)
    return row


async def _save_order(tx: Transaction, order: Order, step: Transition, *,
                      area: str | None = None, description: str | None = None,
                      category: str | None = None) -> Row:
    """Write the order's new state and its history step; the row as saved."""
    saved = await fetch_row(tx, SAVE_ORDER, order.order_id, order.state.value, order.resolution,
                            order.reply, order.satisfaction, order.department, order.owner,
                            order.dispatches, step.at, area, description, category)
    assert saved is not None, "the order was locked"
    _audit(tx, step)
    return saved


def _audit(tx: Transaction, step: Transition) -> None:
    journal.order_step(tx, step.order_id, step.action.value,
                       step.from_state.value if step.from_state else None,
                       step.to_state.value, step.actor, step.reason, step.at)


EXISTING_ORDER = f"""
    SELECT o.* FROM {S}.orders o
     WHERE o.order_id = (SELECT m.order_id FROM (
             SELECT 0 AS rank, order_id FROM {S}.orders WHERE idempotency_key = $1
             UNION ALL
             SELECT 1, order_id FROM {S}.orders WHERE call_id = $2 AND type = $3) m
           ORDER BY m.rank LIMIT 1)"""

# The order a repeated request joined the first time, with its reporter row.


EXISTING_REPORT = f"""
    SELECT o.*, r AS reporter_row
      FROM {S}.order_reporters r JOIN {S}.orders o ON o.order_id = r.order_id
     WHERE r.idempotency_key = $1 OR (r.call_id = $2 AND r.type = $3)
     ORDER BY r.idempotency_key = $1 DESC NULLS LAST LIMIT 1"""


def _request_keys(body: OrderIn) -> tuple[str | None, str | None, str | None] | None:
    """What marks a row as made by this request: its idempotency key (which wins a tie: it
    is the client's own word for "this request"), or its call and type."""
    if body.idempotency_key is None and body.call_id is None:
        return None
    return body.idempotency_key, body.call_id, body.type.value


async def _emit_ticket(tx: Transaction, event: EventData, *, order_id: str,
                       call_id: str | None) -> None:
    await tx.emit(event, subject=f"ticket/{order_id}", correlationid=call_id)


async def _existing_order(db_: Queries, body: OrderIn) -> Row | None:
    keys = _request_keys(body)
    return None if keys is None else await fetch_row(db_, EXISTING_ORDER, *keys)


async def _existing_report(db_: Queries, body: OrderIn) -> dict[str, Any] | None:
    """The order a repeated request joined the first time, with its place on the list."""
    keys = _request_keys(body)
    found = None if keys is None else await fetch_row(db_, EXISTING_REPORT, *keys)
    if found is None:
        return None
    return {**order_out(found, without=("reporter_row",)),
            "linked": dict(found.reporter_row.items())}


async def _start_work_round(tx: Transaction, rt: Runtime, order: Row, actor: str) -> None:
    """A new round of work (creation, reopen): the dispatch, arrival and resolution clocks."""
    await _start_clocks(tx, rt, order, ("dispatch", "arrival", "resolution"),
                        round_=order.resolution + 1, actor=actor)


CUSTOMER_CONTACT = f"""
    SELECT c.area, (SELECT n.number FROM {S}.customer_numbers n WHERE n.account = c.account
                     ORDER BY n.position LIMIT 1) AS first_number
      FROM {S}.customers c WHERE c.account = $1"""


LINK_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"


IVR_PATH = f"SELECT ivr_path::text FROM {S}.call_contexts WHERE call_id = $1"

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


OUTAGE_ORDER = f"UPDATE {S}.outages SET order_id = $2 WHERE outage_id = $1"


async def _insert_order(tx: Transaction, order: Order, *, actor: str, call_id: str | None,
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


async def create_order(tx: Transaction, body: OrderIn, actor: str,
                       rt: Runtime) -> tuple[dict[str, Any], bool]:
    """Return (order, created). A repeated request gets the order it created (or joined) the
    first time; a repair of a fault already reported joins that order (``linked``)."""
    od.require_contact(body.customer_account, body.contact_number)
    existing = await _existing_order(tx, body)
    if existing is not None:
        return order_out(existing), False
    joined = await _existing_report(tx, body)
    if joined is not None:
        return joined, False
    area = body.area
    if body.customer_account is not None:
        customer = await fetch_row(tx, CUSTOMER_CONTACT, body.customer_account)
        if customer is None:
            raise Invalid("customer_account", f"unknown customer_account {body.customer_account!r}")
        area = area or customer.area
        if body.contact_number is None and customer.first_number is None:
            raise Invalid("contact_number", f"customer {body.customer_account!r} has no number "
                          "on file to call back; give a contact_number")
    outage_id: str | None = None
    if area is not None and body.type in od.LINKABLE_TYPES and not body.standalone:
        # Reports from one area are decided one at a time, so a burst of calls about the
        # same fault cannot open two orders side by side.
        await tx.execute(LINK_LOCK, f"workorder.link:{body.type.value}:{area}")
        active_outages = await _active_outages(tx, area)
        joined = await _existing_report(tx, body) or await _link_report(
            tx, body, area, active_outages, actor)
        if joined is not None:
            return joined, False
        # Nothing open to join: if the area has an active outage, this is its order now.
        outage_id = active_outages[0] if active_outages else None
    ivr_path = None if body.ivr_path is None else json.dumps(body.ivr_path)
    if ivr_path is None and body.call_id is not None:
        ivr_path = await tx.fetchval(IVR_PATH, body.call_id)
    order, step = od.create(_new_id("WO"), body.type, now=tx.now, actor=actor)
    inserted = await _insert_order(
        tx, order, actor=actor, call_id=body.call_id, account=body.customer_account,
        contact_number=body.contact_number, area=area, description=body.description,
        category=body.category, idempotency_key=body.idempotency_key, priority=body.priority,
        address=body.address, ivr_path=ivr_path, outage_id=outage_id)
    if inserted is None:
        # A concurrent twin committed first: its row is the answer, not a 500.
        existing = await _existing_order(tx, body)
        if existing is None:
            raise RuntimeError("order insert conflicted but no existing order matches")
        return order_out(existing), False
    if outage_id is not None:
        await tx.execute(OUTAGE_ORDER, outage_id, order.order_id)
    _audit(tx, step)
    await _emit_ticket(tx, TicketCreated(
        order_id=order.order_id, type=order.type.value, call_id=body.call_id,
        customer_account=body.customer_account, area=area, outage_id=outage_id,
    ), order_id=order.order_id, call_id=body.call_id)
    await _start_work_round(tx, rt, inserted, actor)
    if order.type is OrderType.COMPLAINT and body.customer_account is not None:
        inserted = await _check_repeat_complaint(tx, rt, inserted, body.customer_account,
                                                 body.call_id, actor)
    return order_out(inserted), True


ACTIVE_OUTAGES = f"""
    SELECT outage_id FROM {S}.outages
     WHERE area = $1 AND restored_at IS NULL AND start_at <= $2
       AND (restore_eta IS NULL OR restore_eta > $2)
     ORDER BY start_at, outage_id FOR UPDATE"""


async def _active_outages(tx: Transaction, area: str) -> list[str]:
    """The area's active outages, oldest first, locked: a new order may become one's order."""
    return [r["outage_id"] for r in await tx.fetch(ACTIVE_OUTAGES, area, tx.now)]


LINK_CANDIDATES = f"""
    SELECT order_id, state, outage_id FROM {S}.orders
     WHERE area = $1 AND type = $2 AND state = ANY($3::text[])
     ORDER BY created_at, order_id"""


INSERT_REPORTER = f"""
    INSERT INTO {S}.order_reporters (reporter_id, order_id, type, call_id, customer_account,
                                     contact_number, description, idempotency_key, reason,
                                     linked_by, linked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"""


LINKABLE = [s.value for s in od.LINKABLE_STATES]


async def _link_report(tx: Transaction, body: OrderIn, area: str, active_outages: list[str],
                       actor: str) -> dict[str, Any] | None:
    """Join the report to the open order for the same fault, if there is one."""
    candidates = [od.LinkCandidate(r.order_id, OrderState(r.state), r.outage_id)
                  for r in await fetch_rows(tx, LINK_CANDIDATES, area, body.type.value,
                                            LINKABLE)]
    target = od.link_target(body.type, candidates, active_outages)
    if target is None:
        return None
    candidate, reason = target
    order_row = await _lock_order(tx, candidate.order_id)
    if OrderState(order_row.state) not in od.LINKABLE_STATES:
        return None  # resolved meanwhile: this report is news, and opens its own order
    step = od.link(_order_of(order_row), f"{reason}: call {body.call_id or '-'} joins",
                   now=tx.now, actor=actor)
    reporter_id = _new_id("RP")
    await tx.execute(INSERT_REPORTER, reporter_id, candidate.order_id, body.type.value,
                     body.call_id, body.customer_account, body.contact_number,
                     body.description, body.idempotency_key, reason, actor, tx.now)
    _audit(tx, step)
    await _emit_ticket(tx, TicketLinked(
        order_id=candidate.order_id, reporter_id=reporter_id, call_id=body.call_id,
        customer_account=body.customer_account, reason=reason,
        outage_id=candidate.outage_id if reason == "outage" else None,
    ), order_id=candidate.order_id, call_id=body.call_id)
    return await _existing_report(tx, body)


EARLIER_COMPLAINTS = f"""
    SELECT order_id FROM {S}.orders
     WHERE customer_account = $1 AND type = 'complaint' AND order_id <> $2 AND created_at >= $3
     ORDER BY created_at"""


FLAG_REPEAT = f"""
    UPDATE {S}.orders SET flags = flags || '["repeat_complaint"]'::jsonb, priority = 'urgent'
     WHERE order_id = $1 RETURNING *"""


async def _check_repeat_complaint(tx: Transaction, rt: Runtime, order: Row, account: str,
                                  call_id: str | None, actor: str) -> Row:
    """The order as it stands after the check (flagged and urgent for a repeat)."""
    since = tx.now - timedelta(days=rt.repeat_complaint_days)
    earlier = [r["order_id"] for r in await tx.fetch(EARLIER_COMPLAINTS, account,
                                                      order.order_id, since)]
    if not od.is_repeat_complaint(OrderType.COMPLAINT, len(earlier)):
        return order
    flagged = await fetch_row(tx, FLAG_REPEAT, order.order_id)
    assert flagged is not None
    await _emit_ticket(tx, TicketFlagged(
        order_id=order.order_id, flag="repeat_complaint", related_order_ids=earlier,
    ), order_id=order.order_id, call_id=call_id)
    await _emit_ticket(tx, SlaEscalated(
        order_id=order.order_id, level=1, level_name="repeat_complaint",
        reason="repeat_complaint"), order_id=order.order_id, call_id=call_id)
    # A repeat complainant is urgent: the running clocks take the urgent budgets.
    await _rebudget_clocks(tx, rt, flagged, "urgent", actor=actor, reason="repeat_complaint")
    return flagged


async def dispatch_order(tx: Transaction, order_id: str, body: DispatchIn, actor: str,
                         rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    # The dispatch may complete the case's details; check what the department needs.
    details = {"area": body.area or row.area, "description": body.description or row.description,
               "category": body.category or row.category}
    od.require_for_dispatch(OrderType(row.type), details)
    order, step = od.dispatch(_order_of(row), body.department, now=tx.now, actor=actor,
                              reason=body.reason)
    saved = await _save_order(tx, order, step, **details)
    await _stop_clocks(tx, rt, order_id, ("dispatch", "acceptance"), actor=actor,
                       reason=f"dispatched to {body.department}")
    await _start_clocks(tx, rt, saved, ("acceptance",), round_=order.resolution + 1, actor=actor)
    await _emit_ticket(tx, TicketDispatched(
        order_id=order_id, department=body.department, dispatches=order.dispatches,
        reason=body.reason), order_id=order_id, call_id=row.call_id)


async def accept_order(tx: Transaction, order_id: str, owner: str, actor: str,
                       rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.accept(_order_of(row), owner, now=tx.now, actor=actor)
    await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, ("acceptance",), actor=actor, reason="accepted")
    await _emit_ticket(tx, TicketAccepted(
        order_id=order_id, department=order.department, owner=owner),
        order_id=order_id, call_id=row.call_id)


async def arrive_order(tx: Transaction, order_id: str, actor: str, rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.arrive(_order_of(row), now=tx.now, actor=actor)
    await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, ("arrival",), actor=actor, reason="on site")
    await _emit_ticket(tx, TicketArrived(
        order_id=order_id, department=order.department),
        order_id=order_id, call_id=row.call_id)


async def transfer_order(tx: Transaction, order_id: str, department: str, reason: str,
                         actor: str, rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.transfer(_order_of(row), department, reason, now=tx.now, actor=actor)
    saved = await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, ("acceptance",), actor=actor,
                       reason=f"transferred to {department}")
    await _start_clocks(tx, rt, saved, ("acceptance",), round_=order.resolution + 1, actor=actor)
    await _emit_ticket(tx, TicketTransferred(
        order_id=order_id, from_department=row.department, to_department=department,
        reason=reason), order_id=order_id, call_id=row.call_id)


async def reopen_order(tx: Transaction, order_id: str, reason: str, actor: str,
                       rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.reopen_closed(_order_of(row), reason, now=tx.now, actor=actor)
    saved = await _save_order(tx, order, step)
    await _emit_ticket(tx, TicketReopened(order_id=order_id, reason=reason),
                       order_id=order_id, call_id=row.call_id)
    await _start_work_round(tx, rt, saved, actor)


SET_PRIORITY = f"UPDATE {S}.orders SET priority = $2, updated_at = $3 WHERE order_id = $1"


async def pause_order(tx: Transaction, order_id: str, reason: str, actor: str,
                      rt: Runtime) -> int:
    row = await _lock_order(tx, order_id)
    if not od.is_open(OrderState(row.state)):
        raise IllegalTransition("order", row.state, "pause", [])
    return await _pause_clocks(tx, rt, order_id, actor=actor, reason=reason)


async def resume_order(tx: Transaction, order_id: str, reason: str | None, actor: str,
                       rt: Runtime) -> int:
    await _lock_order(tx, order_id)
    return await _resume_clocks(tx, rt, order_id, actor=actor, reason=reason)


async def change_priority(tx: Transaction, order_id: str, priority: str, reason: str | None,
                          actor: str, rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    if row.priority == priority:
        return
    await tx.execute(SET_PRIORITY, order_id, priority, tx.now)
    await _rebudget_clocks(tx, rt, row, priority, actor=actor,
                           reason=reason or f"priority {row.priority} -> {priority}")
    await _emit_ticket(tx, TicketPriorityChanged(
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
    row = await _lock_order(tx, order_id)
    now = tx.now
    order, step = od.resolve(_order_of(row), reply, now=now, actor=actor)
    saved = await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, WORK_CLOCKS, actor=actor, reason="resolved")
    await _emit_ticket(tx, TicketResolved(
        order_id=order.order_id, resolution=order.resolution, reply=reply,
    ), order_id=order.order_id, call_id=row.call_id)
    if not od.owes_survey(order.type):
        # A callback request is done once the customer has been called back.
        closed, close_step = od.close_without_survey(order, now=now, actor=actor)
        await _save_order(tx, closed, close_step)
        await _stop_clocks(tx, rt, order_id, None, actor=actor, reason="closed")
        await _emit_ticket(tx, TicketClosed(order_id=order_id),
                           order_id=order_id, call_id=row.call_id)
        return
    if row.outage_id is not None:
        # The repair is done, so is the outage: later calls from the area are news.
        await tx.execute(RESTORE_OUTAGE_OF_ORDER, row.outage_id, now, actor)
    await _start_clocks(tx, rt, saved, ("reply",), round_=order.resolution, actor=actor)
    # The callers who reported the fault are owed the callback, one task each: the order's
    # own caller and every linked reporter (on a re-resolution, those not yet content).
    parties = await fetch_row(tx, CALLBACK_PARTIES, order_id)
    assert parties is not None
    last_outcome: dict[str | None, str | None] = {}
    for reporter_id, outcome in parties.outcomes:
        last_outcome.setdefault(reporter_id, outcome)
    owed = od.owed_callbacks([None, *parties.reporters], last_outcome)
    for position, reporter_id in enumerate(owed):
        callback = cbd.schedule(_new_id("CB"), order.order_id, order.resolution, now=now,
                                policy=rt.callback_policy, position=position)
        # The order row lock serializes resolutions; the unique key is the backstop.
        inserted = await tx.fetchval(
            INSERT_CALLBACK, callback.callback_id, callback.order_id, callback.resolution,
            callback.state.value, callback.attempts, callback.max_attempts, callback.due_at,
            now, reporter_id)
        if inserted is not None:
            rt.woken_after_commit(tx, callback.due_at)
            await _start_clocks(tx, rt, saved, ("callback",), round_=order.resolution,
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


def _records(values: Sequence[Any]) -> list[dict[str, Any]]:
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
    return {**order_out(found, without=parts), "history": _records(found.detail_history),
            "reporters": _records(found.detail_reporters),
            "callbacks": _with_attempts(_records(found.detail_callbacks),
                                        _records(found.detail_attempts)),
            "recording_ids": list(found.detail_recordings),
            "clocks": [clock_view(Row(c), now, rt.calendar) for c in found.detail_clocks],
            "clock_history": _records(found.detail_clock_history)}


async def list_orders(session: AsyncSession, *, call_id: str | None, state: OrderState | None,
                      customer_account: str | None, order_type: OrderType | None,
                      open_only: bool | None, limit: int, department: str | None = None,
                      owner: str | None = None,
                      abandoned_call_id: str | None = None) -> list[dict[str, Any]]:
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
    return [order_out(row) for row in (await session.execute(query)).all()]


# -- callbacks ------------------------------------------------------------------------------

def _callback_of(row: Row) -> Callback:
    return Callback(callback_id=row.callback_id, order_id=row.order_id,
                    resolution=row.resolution, max_attempts=row.max_attempts,
                    state=CallbackState(row.state), attempts=row.attempts, due_at=row.due_at,
                    satisfaction=row.satisfaction, outcome=row.outcome,
                    last_failure=row.last_failure, completed_at=row.completed_at)


LIST_CALLBACKS = f"""
    SELECT cb.*, ARRAY(SELECT a FROM {S}.callback_attempts a
                        WHERE a.callback_id = cb.callback_id ORDER BY a.attempt) AS attempt_log
      FROM {S}.callbacks cb
     WHERE ($1::text IS NULL OR cb.order_id = $1)
       AND ($2::text[] IS NULL OR cb.order_id = ANY($2::text[]))
       AND ($3::text IS NULL OR cb.state = $3)
     ORDER BY cb.created_at, cb.order_id, cb.resolution LIMIT $4"""


async def list_callbacks(db_: Queries, *, order_id: str | None, state: CallbackState | None,
                         limit: int = 1000, order_ids: list[str] | None = None
                         ) -> list[dict[str, Any]]:
    return [{**found._asdict(), "attempt_log": _records(found.attempt_log)}
            for found in await fetch_rows(db_, LIST_CALLBACKS, order_id, order_ids,
                                          None if state is None else state.value, limit)]


SAVE_CALLBACK = f"""
    UPDATE {S}.callbacks
       SET state = $2, attempts = $3, due_at = $4, satisfaction = $5, outcome = $6,
           last_failure = $7, completed_at = $8
     WHERE callback_id = $1"""


END_ATTEMPT = f"""
    UPDATE {S}.callback_attempts SET ended_at = $3, result = $4
     WHERE callback_id = $1 AND attempt = $2"""


async def _save_callback(tx: Transaction, callback: Callback) -> None:
    await tx.execute(SAVE_CALLBACK, callback.callback_id, callback.state.value,
                     callback.attempts, callback.due_at, callback.satisfaction,
                     callback.outcome, callback.last_failure, callback.completed_at)


async def _end_attempt(tx: Transaction, callback_id: str, attempt: int, result: str) -> None:
    await tx.execute(END_ATTEMPT, callback_id, attempt, tx.now, result)


DUE_CALLBACK = f"""
    SELECT * FROM {S}.callbacks WHERE state IN ('pending', 'dialing') AND due_at <= $1
     ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"""


async def fire_one_callback(tx: Transaction, rt: Runtime) -> bool:
    """Take the earliest due callback task nobody else holds; dial it, defer it, or time its
    attempt out. False when none is due."""
    found = await fetch_row(tx, DUE_CALLBACK, tx.now)
    if found is None:
        return False
    await _fire_callback(tx, _callback_of(found), rt)
    return True


ATTEMPTS_TODAY = f"""
    SELECT count(*) FROM {S}.callback_attempts
     WHERE to_number = $1 AND requested_at >= $2 AND requested_at < $3"""


async def _fire_callback(tx: Transaction, before: Callback, rt: Runtime) -> None:
    now = tx.now
    if before.state is CallbackState.PENDING:
        allowed = dialing.next_allowed(now, rt.rules, rt.calendar)
        if allowed > now:
            # Outside calling hours or on a statutory holiday: wait, using no attempt.
            await _save_callback(tx, cbd.defer(before, allowed))
            rt.woken_after_commit(tx, allowed)
            return
        await _dial(tx, before, rt)
        return
    after, action = cbd.on_timer(before, now=now, policy=rt.callback_policy)
    await _end_attempt(tx, before.callback_id, before.attempts, "timeout")
    await _settle(tx, after, action, rt)


async def _attempts_today(tx: Transaction, number: str, rt: Runtime) -> int:
    start, end = dialing.local_day_bounds(tx.now, rt.calendar)
    return int(await tx.fetchval(ATTEMPTS_TODAY, number, start, end))


INSERT_ATTEMPT = f"""
    INSERT INTO {S}.callback_attempts (callback_id, attempt, request_id, to_number,
                                       requested_at)
    VALUES ($1, $2, $3, $4, $5)"""


async def _dial(tx: Transaction, pending: Callback, rt: Runtime) -> None:
    order_row = await _lock_order(tx, pending.order_id)
    now = tx.now
    to_number, reported_call_id = await _callback_party(tx, pending.callback_id)
    order = _order_of(order_row)
    if order.state is OrderState.RESOLVED:
        order, step = od.start_callback(order, now=now, actor=SYSTEM_ACTOR,
                                        reason=f"callback {pending.callback_id}")
        await _save_order(tx, order, step)
    refusal = "no_number" if to_number is None else dialing.denied(to_number, rt.rules)
    if refusal is not None or to_number is None:
        # No attempt can reach the customer: hand the case back to people at once.
        reason = refusal or "no_number"
        await _settle(tx, cbd.give_up(pending, f"denied:{reason}" if to_number else reason,
                                      now=now), CallbackAction.GIVE_UP, rt)
        return
    if await _attempts_today(tx, to_number, rt) >= rt.rules.daily_cap:
        until = dialing.next_day_window(now, rt.rules, rt.calendar)
        await _save_callback(tx, cbd.defer(pending, until))
        rt.woken_after_commit(tx, until)
        return
    callback = cbd.dial(pending, now=now, policy=rt.callback_policy)
    request_id = str(uuid.uuid4())
    await tx.execute(INSERT_ATTEMPT, callback.callback_id, callback.attempts, request_id,
                     to_number, now)
    await _save_callback(tx, callback)
    rt.woken_after_commit(tx, callback.due_at)
    context = {"purpose": "survey", "order_id": callback.order_id,
               "callback_id": callback.callback_id, "attempt": callback.attempts,
               "request_id": request_id, "reported_call_id": reported_call_id}
    await tx.emit(CallbackRequested(
        request_id=request_id, callback_id=callback.callback_id,
        order_id=callback.order_id, attempt=callback.attempts, to_number=to_number,
        context=context,
    ), subject=f"callback/{callback.callback_id}", correlationid=order_row.call_id)


# Whom a task calls, and about which of their calls: its linked reporter, or else the order's
# own caller (their number on the case, or else the first on the customer's file).


CALLBACK_PARTY = f"""
    SELECT p.call_id,
           coalesce(p.contact_number,
                    (SELECT n.number FROM {S}.customer_numbers n
                      WHERE n.account = p.customer_account ORDER BY n.position LIMIT 1))
             AS number
      FROM {S}.callbacks cb
      JOIN {S}.orders o ON o.order_id = cb.order_id
      LEFT JOIN {S}.order_reporters r ON r.reporter_id = cb.reporter_id
     CROSS JOIN LATERAL (
           SELECT CASE WHEN r.reporter_id IS NULL THEN o.call_id ELSE r.call_id END,
                  CASE WHEN r.reporter_id IS NULL THEN o.contact_number
                       ELSE r.contact_number END,
                  CASE WHEN r.reporter_id IS NULL THEN o.customer_account
                       ELSE r.customer_account END) AS p(call_id, contact_number,
                                                           customer_account)
     WHERE cb.callback_id = $1"""


async def _callback_party(tx: Transaction, callback_id: str) -> tuple[str | None, str | None]:
    party = await fetch_row(tx, CALLBACK_PARTY, callback_id)
    assert party is not None, "the callback was locked"
    return party.number, party.call_id


SIBLINGS = f"""
    SELECT state, outcome FROM {S}.callbacks WHERE order_id = $1 AND resolution = $2"""


async def _settle(tx: Transaction, callback: Callback, action: CallbackAction,
                  rt: Runtime) -> None:
    """Save a callback after an outcome; a final outcome closes or reopens its order."""
    await _save_callback(tx, callback)
    if action is CallbackAction.RETRY or callback.outcome is None:
        rt.woken_after_commit(tx, callback.due_at)
        return
    order_row = await _lock_order(tx, callback.order_id)
    await tx.emit(CallbackCompleted(
        callback_id=callback.callback_id, order_id=callback.order_id,
        outcome=callback.outcome, attempts=callback.attempts,
    ), subject=f"callback/{callback.callback_id}", correlationid=order_row.call_id)
    await _stop_clocks(tx, rt, callback.order_id, ("callback",), actor=SYSTEM_ACTOR,
                       reason=f"callback {callback.outcome}", callback_id=callback.callback_id)
    siblings = await fetch_rows(tx, SIBLINGS, callback.order_id, callback.resolution)
    if any(CallbackState(sibling.state) in cbd.ACTIVE_STATES for sibling in siblings):
        return  # other reporters of this resolution are still to be called back
    outcome = od.combined_outcome([sibling.outcome for sibling in siblings])
    await _stop_clocks(tx, rt, callback.order_id, ("reply",), actor=SYSTEM_ACTOR,
                       reason=f"callback {outcome}")
    try:
        order, step = od.apply_callback_outcome(_order_of(order_row), outcome,
                                                now=tx.now, actor=SYSTEM_ACTOR)
    except IllegalTransition as error:
        # The callback's result stands on its own; the order moved on by another path.
        log.warning("callback outcome does not apply to the order", order_id=callback.order_id,
                    callback_id=callback.callback_id, error=str(error))
        return
    saved = await _save_order(tx, order, step)
    if order.state is OrderState.CLOSED:
        await _stop_clocks(tx, rt, order.order_id, None, actor=SYSTEM_ACTOR, reason="closed")
        await _emit_ticket(tx, TicketClosed(
            order_id=order.order_id, satisfaction=order.satisfaction,
        ), order_id=order.order_id, call_id=order_row.call_id)
    else:
        await _emit_ticket(tx, TicketReopened(
            order_id=order.order_id, reason=step.reason,
        ), order_id=order.order_id, call_id=order_row.call_id)
        # Reopened work is dispatched again (二次派单): a new round of work clocks.
        await _start_work_round(tx, rt, saved, SYSTEM_ACTOR)


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


# -- events from CTI, IVR and recording -----------------------------------------------------

async def _find_attempt(tx: Transaction, *, request_id: Any = None,
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


async def _lock_callback(tx: Transaction, callback_id: str) -> Callback:
    found = await fetch_row(tx, LOCK_CALLBACK, callback_id)
    assert found is not None, "an attempt's callback is never deleted"
    return _callback_of(found)


ATTEMPT_CALL = f"""
    UPDATE {S}.callback_attempts SET call_id = $3 WHERE callback_id = $1 AND attempt = $2"""


def _ignored(event_type: str, why: str, **fields: Any) -> None:
    log.info("event ignored", ignored_type=event_type, why=why, **fields)


async def on_call_originated(tx: Transaction, event: CallOriginated) -> None:
    attempt = await _find_attempt(tx, request_id=event.request_id, context=event.context)
    if attempt is None:
        _ignored("cti.call.originated", "unknown request", request_id=event.request_id)
        return
    # Recorded even for a superseded attempt: the call's release will still need matching.
    await tx.execute(ATTEMPT_CALL, attempt.callback_id, attempt.attempt, event.call_id)


async def on_attempt_failed(tx: Transaction, event: str, attempt: Row | None, reason: str,
                            rt: Runtime) -> None:
    if attempt is None:
        _ignored(event, "not a callback attempt we know")
        return
    callback = await _lock_callback(tx, attempt.callback_id)
    try:
        after, action = cbd.fail_attempt(callback, attempt.attempt, reason, now=tx.now,
                                          policy=rt.callback_policy)
    except (IllegalTransition, cbd.StaleAttempt) as error:
        _ignored(event, str(error), callback_id=attempt.callback_id, attempt=attempt.attempt)
        return
    await _end_attempt(tx, attempt.callback_id, attempt.attempt, reason)
    await _settle(tx, after, action, rt)


INSERT_RECORDING = f"""
    INSERT INTO {S}.recordings (recording_id, call_id, duration_seconds, stored_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"""


async def on_origination_failed(rt: Runtime, tx: Transaction, event: OriginationFailed) -> None:
    attempt = await _find_attempt(tx, request_id=event.request_id, context=event.context)
    await on_attempt_failed(tx, "cti.call.origination_failed", attempt,
                            f"origination_failed:{event.reason}"[:64], rt)


# An inbound call the caller left while waiting for an agent: owed a call back.
ABANDONED_STATES = frozenset({"queued", "alerting"})


async def on_call_released(rt: Runtime, tx: Transaction, event: CallReleased) -> None:
    if event.direction != "outbound" and not event.context.get("callback_id"):
        if event.cause == "caller_hangup" and event.state in ABANDONED_STATES:
            await _call_abandoned(tx, rt, event.call_id, "caller_hangup",
                                  from_number=event.from_number)
        return  # otherwise an ordinary inbound call: not ours to track
    attempt = await _find_attempt(tx, context=event.context, call_id=event.call_id)
    # After a survey answer the attempt is settled and the domain refuses the failure.
    await on_attempt_failed(tx, "cti.call.released", attempt,
                            (event.cause or "released")[:64], rt)


async def on_survey_completed(rt: Runtime, tx: Transaction, event: SurveyCompleted) -> None:
    attempt = await _find_attempt(tx, context=event.context, call_id=event.call_id)
    if attempt is None:
        _ignored("ivr.survey.completed", "not a callback attempt we know",
                 call_id=event.call_id)
        return
    callback = await _lock_callback(tx, attempt.callback_id)
    try:
        after, action = cbd.survey_result(callback, attempt.attempt, event.satisfaction,
                                          now=tx.now,
                                          policy=rt.callback_policy)
    except (IllegalTransition, cbd.StaleAttempt) as error:
        _ignored("ivr.survey.completed", str(error), callback_id=attempt.callback_id,
                 attempt=attempt.attempt)
        return
    await _end_attempt(tx, attempt.callback_id, attempt.attempt,
                       "answered" if action is CallbackAction.ANSWER else "no_answer_given")
    await _settle(tx, after, action, rt)


async def on_recording_stored(tx: Transaction, event: FileStored) -> None:
    await tx.execute(INSERT_RECORDING, event.recording_id, event.call_id,
                     event.duration_seconds, tx.now)


# -- abandoned and dropped calls -> callback_request cases ----------------------------------

IVR_CONTEXT = f"""
    INSERT INTO {S}.call_contexts AS c (call_id, account, from_number, ivr_path, updated_at)
    VALUES ($1, $2, $3, $4::text::jsonb, $5)
    ON CONFLICT (call_id) DO UPDATE
       SET account = coalesce(excluded.account, c.account),
           from_number = coalesce(c.from_number, excluded.from_number),
           ivr_path = excluded.ivr_path, updated_at = excluded.updated_at
    RETURNING *"""


ABANDONED_CONTEXT = f"""
    INSERT INTO {S}.call_contexts AS c (call_id, from_number, abandoned_at, abandon_reason,
                                        updated_at)
    VALUES ($1, $2, $3, $4, $3)
    ON CONFLICT (call_id) DO UPDATE
       SET abandoned_at = coalesce(c.abandoned_at, excluded.abandoned_at),
           abandon_reason = coalesce(c.abandon_reason, excluded.abandon_reason),
           from_number = coalesce(c.from_number, excluded.from_number),
           updated_at = excluded.updated_at
    RETURNING *"""


async def on_ivr_session_completed(rt: Runtime, tx: Transaction, event: SessionCompleted) -> None:
    """Remember who the caller is (the IVR identified them) and the menu path taken."""
    route = event.route
    account = None if route is None or route.customer is None else route.customer.account
    context = await fetch_row(tx, IVR_CONTEXT, event.call_id, account,
                              None if route is None else route.from_number,
                              json.dumps(event.path), tx.now)
    assert context is not None
    if context.abandoned_at is not None:
        # The abandonment was heard first; now we know who to call back.
        await _callback_request(tx, rt, context)


async def on_call_abandoned(rt: Runtime, tx: Transaction, event: CallAbandoned) -> None:
    await _call_abandoned(tx, rt, event.call_id, "abandoned_in_queue")


async def on_call_rejected(rt: Runtime, tx: Transaction, event: CallRejected) -> None:
    """A queue limit offered the caller a callback (outcome ``callback``): they are owed one,
    like a caller who gave up waiting, and their number is enough to place it."""
    if event.outcome == "callback":
        await _call_abandoned(tx, rt, event.call_id, f"callback_offer:{event.reason}")


async def _call_abandoned(tx: Transaction, rt: Runtime, call_id: str, reason: str, *,
                          from_number: str | None = None) -> None:
    context = await fetch_row(tx, ABANDONED_CONTEXT, call_id, from_number, tx.now, reason)
    assert context is not None
    await _callback_request(tx, rt, context)


# The account behind an abandoned call (the IVR's, else the number's), if the directory
# knows it, with its area.


ABANDONED_CUSTOMER = f"""
    SELECT c.account, c.area FROM {S}.customers c
     WHERE c.account = coalesce($1::text, (SELECT n.account FROM {S}.customer_numbers n
                                            WHERE n.number = $2))"""


async def _callback_request(tx: Transaction, rt: Runtime, context: Row) -> None:
    """Exactly one callback_request case per abandoned call of an identified customer, and per
    call a queue limit promised a callback (then the caller's number will do)."""
    promised = str(context.abandon_reason or "").startswith("callback_offer")
    customer = None
    if context.account is not None or context.from_number:
        customer = await fetch_row(tx, ABANDONED_CUSTOMER, context.account,
                                   context.from_number)
    account = None if customer is None else customer.account
    area = None if customer is None else customer.area
    if account is None and not (promised and context.from_number):
        return  # unidentified: nobody to owe a case to (the caller's number alone is no account)
    order, step = od.create(_new_id("WO"), OrderType.CALLBACK_REQUEST, now=tx.now,
                            actor=SYSTEM_ACTOR, reason=f"abandoned call {context.call_id}")
    inserted = await _insert_order(
        tx, order, actor=SYSTEM_ACTOR, call_id=None, account=account,
        contact_number=context.from_number, area=area,
        description=f"call {context.call_id} ended before an agent answered "
                    f"({context.abandon_reason})",
        category="abandoned_call",
        ivr_path=None if context.ivr_path is None else json.dumps(context.ivr_path),
        abandoned_call_id=context.call_id)
    if inserted is None:
        return  # already owed (the abandonment was heard twice, by ACD and CTI)
    _audit(tx, step)
    await _emit_ticket(tx, TicketCreated(
        order_id=order.order_id, type=order.type.value, call_id=None,
        customer_account=account, area=area,
    ), order_id=order.order_id, call_id=context.call_id)
    await _start_work_round(tx, rt, inserted, SYSTEM_ACTOR)
    await dispatch_order(tx, order.order_id, DispatchIn(department=rt.callback_team,
                                                        reason="abandoned call"),
                         SYSTEM_ACTOR, rt)


def consumes(rt: Runtime) -> Consumes:
    """The events workorder consumes: callback attempts' outcomes, abandoned calls owed a
    callback, the IVR's identification of the caller, recordings to attach."""
    table = Consumes()
    table.add(CallOriginated, on_call_originated)
    table.add(FileStored, on_recording_stored)
    with_runtime: list[tuple[type[EventData], Callable[[Runtime, Transaction, Any],
                                                       Awaitable[None]]]] = [
        (OriginationFailed, on_origination_failed), (CallReleased, on_call_released),
        (SurveyCompleted, on_survey_completed), (SessionCompleted, on_ivr_session_completed),
        (CallAbandoned, on_call_abandoned), (CallRejected, on_call_rejected),
    ]
    for model, handler in with_runtime:
        table.add(model, functools.partial(handler, rt))
    return table


# -- reports --------------------------------------------------------------------------------

async def summary(session: AsyncSession) -> dict[str, Any]:
    o, h, c = db.orders, db.order_history, db.callbacks
    by_type: dict[str, dict[str, int]] = {}
    by_state: dict[str, int] = {}
    total = 0
    for order_type, state, count in (await session.execute(
            select(o.c.type, o.c.state, func.count()).group_by(o.c.type, o.c.state))).all():
        by_type.setdefault(order_type, {})[state] = count
        by_state[state] = by_state.get(state, 0) + count
        total += count
    resolved = (await session.execute(select(func.count()).select_from(o)
                                      .where(o.c.resolution > 0))).scalar_one()
    reopened = (await session.execute(select(func.count(func.distinct(h.c.order_id)))
                                      .where(h.c.action == od.OrderAction.REOPEN.value)
                                      )).scalar_one()
    callback_states = dict((await session.execute(
        select(c.c.state, func.count()).group_by(c.c.state))).tuples().all())
    satisfaction = {s: 0 for s in od.SATISFACTIONS}
    for value, count in (await session.execute(
            select(c.c.satisfaction, func.count()).where(c.c.state == CallbackState.COMPLETED.value)
            .group_by(c.c.satisfaction))).all():
        if value in satisfaction:
            satisfaction[value] = count
    completed = callback_states.get(CallbackState.COMPLETED.value, 0)
    unreachable = callback_states.get(CallbackState.UNREACHABLE.value, 0)
    pending = sum(callback_states.get(s.value, 0) for s in cbd.ACTIVE_STATES)
    callbacks_total = completed + unreachable + pending
    return {
        "orders": {"total": total, "by_type": by_type, "by_state": by_state},
        "resolved": resolved,
        "closed": by_state.get(OrderState.CLOSED.value, 0),
        "reopened": reopened,
        "callbacks": {"total": callbacks_total, "completed": completed,
                      "unreachable": unreachable, "pending": pending},
        # One callback is owed per resolution, so resolutions are the denominator.
        "callback_completion_rate": callback_completion_rate(completed, unreachable,
                                                             callbacks_total),
        "satisfaction": satisfaction,
    }
