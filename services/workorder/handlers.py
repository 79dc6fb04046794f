"""Handlers: load state, let the domain decide, save it and record events, in one transaction.

Routes and consumers call these; nothing here knows about HTTP or the bus.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db
from services.workorder.clocks import WORK_CLOCKS, Runtime
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
from shared.errors import IllegalTransition, Invalid, NotFound
from shared.messaging import Transaction

log = structlog.get_logger(__name__)

SYSTEM_ACTOR = "workorder"


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


async def _first_number(session: AsyncSession, account: str | None) -> str | None:
    if account is None:
        return None
    return (await session.execute(
        select(db.customer_numbers.c.number).where(db.customer_numbers.c.account == account)
        .order_by(db.customer_numbers.c.position).limit(1))).scalar()


# -- outages --------------------------------------------------------------------------------

def _outage_active(row: Row[Any], now: datetime) -> bool:
    return (row.restored_at is None and row.start_at <= now
            and (row.restore_eta is None or now < row.restore_eta))


def _outage_out(row: Row[Any], now: datetime) -> dict[str, Any]:
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

def _order_of(row: Row[Any]) -> Order:
    return Order(order_id=row.order_id, type=OrderType(row.type), state=OrderState(row.state),
                 resolution=row.resolution, reply=row.reply, satisfaction=row.satisfaction,
                 department=row.department, owner=row.owner, dispatches=row.dispatches)


def order_out(row: Row[Any]) -> dict[str, Any]:
    data = row._asdict()
    data["allowed_actions"] = od.allowed_actions(OrderState(row.state), OrderType(row.type))
    return data


async def _lock_order(tx: Transaction, order_id: str) -> Row[Any]:
    row = (await tx.session.execute(select(db.orders).where(db.orders.c.order_id == order_id)
                                    .with_for_update())).first()
    if row is None:
        raise NotFound("order", order_id)
    return row


async def _save_order(tx: Transaction, order: Order, step: Transition,
                      **extra: Any) -> None:
    values: dict[str, Any] = {"state": order.state.value, "resolution": order.resolution,
                              "reply": order.reply, "satisfaction": order.satisfaction,
                              "department": order.department, "owner": order.owner,
                              "dispatches": order.dispatches, "updated_at": step.at, **extra}
    if step.to_state is OrderState.RESOLVED:
        values["resolved_at"] = step.at
        values["first_resolved_at"] = func.coalesce(db.orders.c.first_resolved_at, step.at)
    if step.to_state is OrderState.CLOSED:
        values["closed_at"] = step.at
    await tx.session.execute(update(db.orders).where(db.orders.c.order_id == order.order_id)
                             .values(**values))
    await _audit(tx, step)


async def _audit(tx: Transaction, step: Transition) -> None:
    await tx.session.execute(db.order_history.insert().values(
        order_id=step.order_id, action=step.action.value,
        from_state=step.from_state.value if step.from_state else None,
        to_state=step.to_state.value, actor=step.actor, reason=step.reason, at=step.at))


async def _emit_ticket(tx: Transaction, event_type: str, data: dict[str, Any], *,
                       order_id: str, call_id: str | None) -> None:
    await tx.emit(event_type, data, subject=f"ticket/{order_id}", correlationid=call_id)


def _same_request(table: Any, body: OrderIn) -> list[Any]:
    """What marks a row of ``table`` as made by this request: its idempotency key, or its
    call and type."""
    matches = []
    if body.idempotency_key is not None:
        matches.append(table.c.idempotency_key == body.idempotency_key)
    if body.call_id is not None:
        matches.append(and_(table.c.call_id == body.call_id, table.c.type == body.type.value))
    return matches


async def _existing_order(session: AsyncSession, body: OrderIn) -> Row[Any] | None:
    t = db.orders
    matches = _same_request(t, body)
    if not matches:
        return None
    rows = (await session.execute(select(t).where(or_(*matches)))).all()
    # The idempotency key is the client's own word for "this request"; it wins a tie.
    for row in rows:
        if body.idempotency_key is not None and row.idempotency_key == body.idempotency_key:
            return row
    return rows[0] if rows else None


async def _existing_report(session: AsyncSession, body: OrderIn) -> dict[str, Any] | None:
    """The order a repeated request joined the first time, with its place on the list."""
    r = db.order_reporters
    matches = _same_request(r, body)
    if not matches:
        return None
    reporter = (await session.execute(select(r).where(or_(*matches)).limit(1))).first()
    if reporter is None:
        return None
    order = (await session.execute(select(db.orders)
                                   .where(db.orders.c.order_id == reporter.order_id))).one()
    return {**order_out(order), "linked": reporter._asdict()}


def _reporters_of(order_id: str) -> Any:
    """The callers whose reports joined the order, in the order they joined."""
    r = db.order_reporters
    return select(r).where(r.c.order_id == order_id).order_by(r.c.linked_at, r.c.reporter_id)


async def _start_work_round(tx: Transaction, rt: Runtime, order_id: str, actor: str) -> None:
    """A new round of work (creation, reopen): the dispatch, arrival and resolution clocks."""
    row = (await tx.session.execute(select(db.orders)
                                    .where(db.orders.c.order_id == order_id))).one()
    await _start_clocks(tx, rt, row, ("dispatch", "arrival", "resolution"),
                        round_=row.resolution + 1, actor=actor)


async def create_order(tx: Transaction, body: OrderIn, actor: str,
                       rt: Runtime) -> tuple[dict[str, Any], bool]:
    """Return (order, created). A repeated request gets the order it created (or joined) the
    first time; a repair of a fault already reported joins that order (``linked``)."""
    od.require_contact(body.customer_account, body.contact_number)
    existing = await _existing_order(tx.session, body)
    if existing is not None:
        return order_out(existing), False
    joined = await _existing_report(tx.session, body)
    if joined is not None:
        return joined, False
    area = body.area
    if body.customer_account is not None:
        customer = (await tx.session.execute(
            select(db.customers.c.area)
            .where(db.customers.c.account == body.customer_account))).first()
        if customer is None:
            raise Invalid("customer_account", f"unknown customer_account {body.customer_account!r}")
        area = area or customer.area
        if body.contact_number is None and await _first_number(tx.session,
                                                                body.customer_account) is None:
            raise Invalid("contact_number", f"customer {body.customer_account!r} has no number "
                          "on file to call back; give a contact_number")
    outage_id: str | None = None
    if area is not None and body.type in od.LINKABLE_TYPES and not body.standalone:
        # Reports from one area are decided one at a time, so a burst of calls about the
        # same fault cannot open two orders side by side.
        await tx.session.execute(select(func.pg_advisory_xact_lock(
            func.hashtext(f"workorder.link:{body.type.value}:{area}"))))
        active_outages = await _active_outages(tx, area)
        joined = await _existing_report(tx.session, body) or await _link_report(
            tx, body, area, active_outages, actor)
        if joined is not None:
            return joined, False
        # Nothing open to join: if the area has an active outage, this is its order now.
        outage_id = active_outages[0] if active_outages else None
    ivr_path = body.ivr_path
    if ivr_path is None and body.call_id is not None:
        ivr_path = await _ivr_path(tx.session, body.call_id)
    now = tx.now
    order, step = od.create(_new_id("WO"), body.type, now=now, actor=actor)
    inserted = (await tx.session.execute(
        insert(db.orders).values(
            order_id=order.order_id, type=order.type.value, state=order.state.value,
            call_id=body.call_id, customer_account=body.customer_account,
            contact_number=body.contact_number, area=area, description=body.description,
            category=body.category, idempotency_key=body.idempotency_key,
            resolution=order.resolution, created_by=actor, created_at=now, updated_at=now,
            priority=body.priority, address=body.address, ivr_path=ivr_path, flags=[],
            outage_id=outage_id)
        # A concurrent twin committed first: its row is the answer, not a 500.
        .on_conflict_do_nothing().returning(db.orders.c.order_id))).first()
    if inserted is None:
        existing = await _existing_order(tx.session, body)
        if existing is None:
            raise RuntimeError("order insert conflicted but no existing order matches")
        return order_out(existing), False
    if outage_id is not None:
        await tx.session.execute(update(db.outages).where(db.outages.c.outage_id == outage_id)
                                 .values(order_id=order.order_id))
    await _audit(tx, step)
    await _emit_ticket(tx, "workorder.ticket.created", {
        "order_id": order.order_id, "type": order.type.value, "call_id": body.call_id,
        "customer_account": body.customer_account, "area": area, "outage_id": outage_id,
    }, order_id=order.order_id, call_id=body.call_id)
    await _start_work_round(tx, rt, order.order_id, actor)
    if order.type is OrderType.COMPLAINT and body.customer_account is not None:
        await _check_repeat_complaint(tx, rt, order.order_id, body.customer_account,
                                      body.call_id, actor)
    row = (await tx.session.execute(select(db.orders)
                                    .where(db.orders.c.order_id == order.order_id))).one()
    return order_out(row), True


async def _ivr_path(session: AsyncSession, call_id: str) -> list[str] | None:
    return (await session.execute(select(db.call_contexts.c.ivr_path)
                                  .where(db.call_contexts.c.call_id == call_id))).scalar()


async def _active_outages(tx: Transaction, area: str) -> list[str]:
    """The area's active outages, oldest first, locked: a new order may become one's order."""
    t = db.outages
    return list((await tx.session.execute(
        select(t.c.outage_id).where(t.c.area == area, _outage_active_clause(tx.now))
        .order_by(t.c.start_at, t.c.outage_id).with_for_update())).scalars())


async def _link_report(tx: Transaction, body: OrderIn, area: str, active_outages: list[str],
                       actor: str) -> dict[str, Any] | None:
    """Join the report to the open order for the same fault, if there is one."""
    o = db.orders
    candidates = [od.LinkCandidate(row.order_id, OrderState(row.state), row.outage_id)
                  for row in (await tx.session.execute(
                      select(o.c.order_id, o.c.state, o.c.outage_id)
                      .where(o.c.area == area, o.c.type == body.type.value,
                             o.c.state.in_([s.value for s in od.LINKABLE_STATES]))
                      .order_by(o.c.created_at, o.c.order_id))).all()]
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
    await tx.session.execute(db.order_reporters.insert().values(
        reporter_id=reporter_id, order_id=candidate.order_id, type=body.type.value,
        call_id=body.call_id, customer_account=body.customer_account,
        contact_number=body.contact_number, description=body.description,
        idempotency_key=body.idempotency_key, reason=reason, linked_by=actor,
        linked_at=tx.now))
    await _audit(tx, step)
    await _emit_ticket(tx, "workorder.ticket.linked", {
        "order_id": candidate.order_id, "reporter_id": reporter_id, "call_id": body.call_id,
        "customer_account": body.customer_account, "reason": reason,
        "outage_id": candidate.outage_id if reason == "outage" else None,
    }, order_id=candidate.order_id, call_id=body.call_id)
    return await _existing_report(tx.session, body)


async def _check_repeat_complaint(tx: Transaction, rt: Runtime, order_id: str, account: str,
                                  call_id: str | None, actor: str) -> None:
    t = db.orders
    since = tx.now - timedelta(days=rt.repeat_complaint_days)
    earlier = list((await tx.session.execute(
        select(t.c.order_id).where(t.c.customer_account == account,
                                   t.c.type == OrderType.COMPLAINT.value,
                                   t.c.order_id != order_id, t.c.created_at >= since)
        .order_by(t.c.created_at))).scalars())
    if not od.is_repeat_complaint(OrderType.COMPLAINT, len(earlier)):
        return
    row = (await tx.session.execute(select(t).where(t.c.order_id == order_id))).one()
    await tx.session.execute(update(t).where(t.c.order_id == order_id).values(
        flags=[*row.flags, "repeat_complaint"], priority="urgent"))
    await _emit_ticket(tx, "workorder.ticket.flagged", {
        "order_id": order_id, "flag": "repeat_complaint", "related_order_ids": earlier,
    }, order_id=order_id, call_id=call_id)
    await _emit_ticket(tx, "workorder.sla.escalated", {
        "order_id": order_id, "level": 1, "level_name": "repeat_complaint",
        "reason": "repeat_complaint"}, order_id=order_id, call_id=call_id)
    # A repeat complainant is urgent: the running clocks take the urgent budgets.
    fresh = (await tx.session.execute(select(t).where(t.c.order_id == order_id))).one()
    await _rebudget_clocks(tx, rt, fresh, "urgent", actor=actor, reason="repeat_complaint")


async def dispatch_order(tx: Transaction, order_id: str, body: DispatchIn, actor: str,
                         rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    # The dispatch may complete the case's details; check what the department needs.
    details = {"area": body.area or row.area, "description": body.description or row.description,
               "category": body.category or row.category}
    od.require_for_dispatch(OrderType(row.type), details)
    order, step = od.dispatch(_order_of(row), body.department, now=tx.now, actor=actor,
                              reason=body.reason)
    await _save_order(tx, order, step, area=details["area"], description=details["description"],
                      category=details["category"])
    await _stop_clocks(tx, rt, order_id, ("dispatch", "acceptance"), actor=actor,
                       reason=f"dispatched to {body.department}")
    fresh = await _lock_order(tx, order_id)
    await _start_clocks(tx, rt, fresh, ("acceptance",), round_=order.resolution + 1, actor=actor)
    await _emit_ticket(tx, "workorder.ticket.dispatched", {
        "order_id": order_id, "department": body.department, "dispatches": order.dispatches,
        "reason": body.reason}, order_id=order_id, call_id=row.call_id)


async def accept_order(tx: Transaction, order_id: str, owner: str, actor: str,
                       rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.accept(_order_of(row), owner, now=tx.now, actor=actor)
    await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, ("acceptance",), actor=actor, reason="accepted")
    await _emit_ticket(tx, "workorder.ticket.accepted", {
        "order_id": order_id, "department": order.department, "owner": owner},
        order_id=order_id, call_id=row.call_id)


async def arrive_order(tx: Transaction, order_id: str, actor: str, rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.arrive(_order_of(row), now=tx.now, actor=actor)
    await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, ("arrival",), actor=actor, reason="on site")
    await _emit_ticket(tx, "workorder.ticket.arrived", {
        "order_id": order_id, "department": order.department},
        order_id=order_id, call_id=row.call_id)


async def transfer_order(tx: Transaction, order_id: str, department: str, reason: str,
                         actor: str, rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.transfer(_order_of(row), department, reason, now=tx.now, actor=actor)
    await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, ("acceptance",), actor=actor,
                       reason=f"transferred to {department}")
    fresh = await _lock_order(tx, order_id)
    await _start_clocks(tx, rt, fresh, ("acceptance",), round_=order.resolution + 1, actor=actor)
    await _emit_ticket(tx, "workorder.ticket.transferred", {
        "order_id": order_id, "from_department": row.department, "to_department": department,
        "reason": reason}, order_id=order_id, call_id=row.call_id)


async def reopen_order(tx: Transaction, order_id: str, reason: str, actor: str,
                       rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    order, step = od.reopen_closed(_order_of(row), reason, now=tx.now, actor=actor)
    await _save_order(tx, order, step)
    await _emit_ticket(tx, "workorder.ticket.reopened", {"order_id": order_id, "reason": reason},
                       order_id=order_id, call_id=row.call_id)
    await _start_work_round(tx, rt, order_id, actor)


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
    await tx.session.execute(update(db.orders).where(db.orders.c.order_id == order_id)
                             .values(priority=priority, updated_at=tx.now))
    await _rebudget_clocks(tx, rt, row, priority, actor=actor,
                           reason=reason or f"priority {row.priority} -> {priority}")
    await _emit_ticket(tx, "workorder.ticket.priority_changed", {
        "order_id": order_id, "previous": row.priority, "priority": priority, "reason": reason,
    }, order_id=order_id, call_id=row.call_id)


async def resolve_order(tx: Transaction, order_id: str, reply: str, actor: str,
                        rt: Runtime) -> None:
    row = await _lock_order(tx, order_id)
    now = tx.now
    order, step = od.resolve(_order_of(row), reply, now=now, actor=actor)
    await _save_order(tx, order, step)
    await _stop_clocks(tx, rt, order_id, WORK_CLOCKS, actor=actor, reason="resolved")
    await _emit_ticket(tx, "workorder.ticket.resolved", {
        "order_id": order.order_id, "resolution": order.resolution, "reply": reply,
    }, order_id=order.order_id, call_id=row.call_id)
    if not od.owes_survey(order.type):
        # A callback request is done once the customer has been called back.
        closed, close_step = od.close_without_survey(order, now=now, actor=actor)
        await _save_order(tx, closed, close_step)
        await _stop_clocks(tx, rt, order_id, None, actor=actor, reason="closed")
        await _emit_ticket(tx, "workorder.ticket.closed", {"order_id": order_id},
                           order_id=order_id, call_id=row.call_id)
        return
    if row.outage_id is not None:
        # The repair is done, so is the outage: later calls from the area are news.
        await tx.session.execute(
            update(db.outages).where(db.outages.c.outage_id == row.outage_id,
                                     db.outages.c.restored_at.is_(None))
            .values(restored_at=now, restored_by=actor))
    fresh = await _lock_order(tx, order_id)
    await _start_clocks(tx, rt, fresh, ("reply",), round_=order.resolution, actor=actor)
    # The callers who reported the fault are owed the callback, one task each: the order's
    # own caller and every linked reporter (on a re-resolution, those not yet content).
    reporters = (await tx.session.execute(_reporters_of(order_id))).all()
    c = db.callbacks
    latest_first = (await tx.session.execute(
        select(c.c.reporter_id, c.c.outcome).where(c.c.order_id == order_id)
        .order_by(c.c.resolution.desc()))).all()
    last_outcome: dict[str | None, str | None] = {}
    for earlier in latest_first:
        last_outcome.setdefault(earlier.reporter_id, earlier.outcome)
    owed = od.owed_callbacks([None, *(r.reporter_id for r in reporters)], last_outcome)
    for position, reporter_id in enumerate(owed):
        callback = cbd.schedule(_new_id("CB"), order.order_id, order.resolution, now=now,
                                policy=rt.callback_policy, position=position)
        # The order row lock serializes resolutions; the unique key is the backstop.
        inserted = (await tx.session.execute(insert(db.callbacks).values(
            callback_id=callback.callback_id, order_id=callback.order_id,
            resolution=callback.resolution, state=callback.state.value,
            attempts=callback.attempts, max_attempts=callback.max_attempts,
            due_at=callback.due_at, created_at=now, reporter_id=reporter_id,
        ).on_conflict_do_nothing(constraint="uq_callbacks_order_resolution_party")
            .returning(db.callbacks.c.callback_id))).first()
        if inserted is not None:
            rt.woken_after_commit(tx, callback.due_at)
            await _start_clocks(tx, rt, fresh, ("callback",), round_=order.resolution,
                                actor=actor, callback_id=callback.callback_id)


async def order_detail(session: AsyncSession, order_id: str, rt: Runtime | None = None,
                       now: datetime | None = None) -> dict[str, Any]:
    from services.workorder.clocks import clock_view

    row = (await session.execute(select(db.orders)
                                 .where(db.orders.c.order_id == order_id))).first()
    if row is None:
        raise NotFound("order", order_id)
    history = (await session.execute(
        select(db.order_history).where(db.order_history.c.order_id == order_id)
        .order_by(db.order_history.c.id))).all()
    recordings: Sequence[str] = []
    if row.call_id is not None:
        recordings = (await session.execute(
            select(db.recordings.c.recording_id).where(db.recordings.c.call_id == row.call_id)
            .order_by(db.recordings.c.stored_at))).scalars().all()
    clocks: list[dict[str, Any]] = []
    clock_log: list[dict[str, Any]] = []
    if rt is not None and now is not None:
        clock_rows = (await session.execute(
            select(db.sla_clocks).where(db.sla_clocks.c.order_id == order_id)
            .order_by(db.sla_clocks.c.clock_id))).all()
        clocks = [clock_view(c, now, rt.calendar) for c in clock_rows]
        clock_log = [h._asdict() for h in (await session.execute(
            select(db.clock_history).where(db.clock_history.c.order_id == order_id)
            .order_by(db.clock_history.c.id))).all()]
    reporters = (await session.execute(_reporters_of(order_id))).all()
    return {**order_out(row), "history": [h._asdict() for h in history],
            "reporters": [r._asdict() for r in reporters],
            "callbacks": await list_callbacks(session, order_id=order_id, state=None),
            "recording_ids": list(recordings), "clocks": clocks, "clock_history": clock_log}


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

def _callback_of(row: Row[Any]) -> Callback:
    return Callback(callback_id=row.callback_id, order_id=row.order_id,
                    resolution=row.resolution, max_attempts=row.max_attempts,
                    state=CallbackState(row.state), attempts=row.attempts, due_at=row.due_at,
                    satisfaction=row.satisfaction, outcome=row.outcome,
                    last_failure=row.last_failure, completed_at=row.completed_at)


async def list_callbacks(session: AsyncSession, *, order_id: str | None,
                         state: CallbackState | None, limit: int = 1000,
                         order_ids: list[str] | None = None) -> list[dict[str, Any]]:
    t = db.callbacks
    query = select(t).order_by(t.c.created_at, t.c.order_id, t.c.resolution).limit(limit)
    if order_id is not None:
        query = query.where(t.c.order_id == order_id)
    if order_ids is not None:
        query = query.where(t.c.order_id.in_(order_ids))
    if state is not None:
        query = query.where(t.c.state == state.value)
    rows = (await session.execute(query)).all()
    attempts: dict[str, list[dict[str, Any]]] = {row.callback_id: [] for row in rows}
    if rows:
        a = db.callback_attempts
        for attempt in (await session.execute(
                select(a).where(a.c.callback_id.in_(list(attempts)))
                .order_by(a.c.callback_id, a.c.attempt))).all():
            attempts[attempt.callback_id].append(attempt._asdict())
    return [{**row._asdict(), "attempt_log": attempts[row.callback_id]} for row in rows]


async def _save_callback(tx: Transaction, callback: Callback) -> None:
    await tx.session.execute(update(db.callbacks)
                             .where(db.callbacks.c.callback_id == callback.callback_id)
                             .values(state=callback.state.value, attempts=callback.attempts,
                                     due_at=callback.due_at, satisfaction=callback.satisfaction,
                                     outcome=callback.outcome, last_failure=callback.last_failure,
                                     completed_at=callback.completed_at))


async def _end_attempt(tx: Transaction, callback_id: str, attempt: int, result: str) -> None:
    a = db.callback_attempts
    await tx.session.execute(update(a).where(a.c.callback_id == callback_id,
                                             a.c.attempt == attempt)
                             .values(ended_at=tx.now, result=result))


async def fire_one_callback(tx: Transaction, rt: Runtime) -> bool:
    """Take the earliest due callback task nobody else holds; dial it, defer it, or time its
    attempt out. False when none is due."""
    t = db.callbacks
    row = (await tx.session.execute(
        select(t).where(t.c.state.in_([s.value for s in cbd.ACTIVE_STATES]),
                        t.c.due_at <= tx.now)
        .order_by(t.c.due_at).limit(1).with_for_update(skip_locked=True))).first()
    if row is None:
        return False
    await _fire_callback(tx, _callback_of(row), rt)
    return True


async def fire_callback_timer(tx: Transaction, callback_id: str, rt: Runtime) -> bool:
    """Fire one named task if it is due. False when another worker holds it or it is not due."""
    row = (await tx.session.execute(
        select(db.callbacks).where(db.callbacks.c.callback_id == callback_id)
        .with_for_update(skip_locked=True))).first()
    if row is None or not cbd.is_due(_callback_of(row), tx.now):
        return False
    await _fire_callback(tx, _callback_of(row), rt)
    return True


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
    a = db.callback_attempts
    start, end = dialing.local_day_bounds(tx.now, rt.calendar)
    return int((await tx.session.execute(
        select(func.count()).select_from(a).where(a.c.to_number == number,
                                                  a.c.requested_at >= start,
                                                  a.c.requested_at < end))).scalar_one())


async def _dial(tx: Transaction, pending: Callback, rt: Runtime) -> None:
    order_row = await _lock_order(tx, pending.order_id)
    now = tx.now
    to_number, reported_call_id = await _callback_party(tx.session, pending.callback_id,
                                                        order_row)
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
    await tx.session.execute(db.callback_attempts.insert().values(
        callback_id=callback.callback_id, attempt=callback.attempts, request_id=request_id,
        to_number=to_number, requested_at=now))
    await _save_callback(tx, callback)
    rt.woken_after_commit(tx, callback.due_at)
    context = {"purpose": "survey", "order_id": callback.order_id,
               "callback_id": callback.callback_id, "attempt": callback.attempts,
               "request_id": request_id, "reported_call_id": reported_call_id}
    await tx.emit("workorder.callback.requested", {
        "request_id": request_id, "callback_id": callback.callback_id,
        "order_id": callback.order_id, "attempt": callback.attempts, "to_number": to_number,
        "context": context,
    }, subject=f"callback/{callback.callback_id}", correlationid=order_row.call_id)


async def _callback_party(session: AsyncSession, callback_id: str,
                          order_row: Row[Any]) -> tuple[str | None, str | None]:
    """Whom the task calls, and about which of their calls: its linked reporter, or the
    order's own caller."""
    r, c = db.order_reporters, db.callbacks
    party: Row[Any] | Any = (await session.execute(
        select(r.c.contact_number, r.c.customer_account, r.c.call_id)
        .join(c, c.c.reporter_id == r.c.reporter_id)
        .where(c.c.callback_id == callback_id))).first() or order_row
    number = party.contact_number or await _first_number(session, party.customer_account)
    return number, party.call_id


async def _settle(tx: Transaction, callback: Callback, action: CallbackAction,
                  rt: Runtime) -> None:
    """Save a callback after an outcome; a final outcome closes or reopens its order."""
    await _save_callback(tx, callback)
    if action is CallbackAction.RETRY or callback.outcome is None:
        rt.woken_after_commit(tx, callback.due_at)
        return
    order_row = await _lock_order(tx, callback.order_id)
    await tx.emit("workorder.callback.completed", {
        "callback_id": callback.callback_id, "order_id": callback.order_id,
        "outcome": callback.outcome, "attempts": callback.attempts,
    }, subject=f"callback/{callback.callback_id}", correlationid=order_row.call_id)
    await _stop_clocks(tx, rt, callback.order_id, ("callback",), actor=SYSTEM_ACTOR,
                       reason=f"callback {callback.outcome}", callback_id=callback.callback_id)
    c = db.callbacks
    siblings = (await tx.session.execute(
        select(c.c.state, c.c.outcome).where(c.c.order_id == callback.order_id,
                                             c.c.resolution == callback.resolution))).all()
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
    await _save_order(tx, order, step)
    if order.state is OrderState.CLOSED:
        await _stop_clocks(tx, rt, order.order_id, None, actor=SYSTEM_ACTOR, reason="closed")
        await _emit_ticket(tx, "workorder.ticket.closed", {
            "order_id": order.order_id, "satisfaction": order.satisfaction,
        }, order_id=order.order_id, call_id=order_row.call_id)
    else:
        await _emit_ticket(tx, "workorder.ticket.reopened", {
            "order_id": order.order_id, "reason": step.reason,
        }, order_id=order.order_id, call_id=order_row.call_id)
        # Reopened work is dispatched again (二次派单): a new round of work clocks.
        await _start_work_round(tx, rt, order.order_id, SYSTEM_ACTOR)


# -- events from CTI, IVR and recording -----------------------------------------------------

async def _find_attempt(tx: Transaction, *, request_id: Any = None,
                        context: dict[str, Any] | None = None,
                        call_id: Any = None) -> Row[Any] | None:
    """Which callback attempt an event is about: by request id, by the context we attached,
    or by the outbound call's id (if CTI did not echo the context)."""
    a = db.callback_attempts
    context = context or {}
    request_id = request_id or context.get("request_id")
    if isinstance(request_id, str):
        row = (await tx.session.execute(select(a).where(a.c.request_id == request_id))).first()
        if row is not None:
            return row
    callback_id, attempt = context.get("callback_id"), context.get("attempt")
    if isinstance(callback_id, str) and isinstance(attempt, int):
        row = (await tx.session.execute(select(a).where(a.c.callback_id == callback_id,
                                                        a.c.attempt == attempt))).first()
        if row is not None:
            return row
    if isinstance(call_id, str):
        return (await tx.session.execute(select(a).where(a.c.call_id == call_id)
                                         .order_by(a.c.requested_at.desc()).limit(1))).first()
    return None


async def _lock_callback(tx: Transaction, callback_id: str) -> Callback:
    row = (await tx.session.execute(select(db.callbacks)
                                    .where(db.callbacks.c.callback_id == callback_id)
                                    .with_for_update())).one()
    return _callback_of(row)


def _ignored(event_type: str, why: str, **fields: Any) -> None:
    log.info("event ignored", ignored_type=event_type, why=why, **fields)


async def on_call_originated(tx: Transaction, data: dict[str, Any]) -> None:
    attempt = await _find_attempt(tx, request_id=data.get("request_id"),
                                  context=data.get("context"))
    if attempt is None:
        _ignored("cti.call.originated", "unknown request", request_id=data.get("request_id"))
        return
    a = db.callback_attempts
    # Recorded even for a superseded attempt: the call's release will still need matching.
    await tx.session.execute(update(a).where(a.c.callback_id == attempt.callback_id,
                                             a.c.attempt == attempt.attempt)
                             .values(call_id=data["call_id"]))


async def on_attempt_failed(tx: Transaction, event: str, attempt: Row[Any] | None, reason: str,
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


async def on_origination_failed(tx: Transaction, data: dict[str, Any], rt: Runtime) -> None:
    attempt = await _find_attempt(tx, request_id=data.get("request_id"),
                                  context=data.get("context"))
    await on_attempt_failed(tx, "cti.call.origination_failed", attempt,
                            f"origination_failed:{data.get('reason', 'unknown')}"[:64], rt)


# An inbound call the caller left while waiting for an agent: owed a call back.
ABANDONED_STATES = frozenset({"queued", "alerting"})


async def on_call_released(tx: Transaction, data: dict[str, Any], rt: Runtime) -> None:
    context = data.get("context") or {}
    if data.get("direction") != "outbound" and not context.get("callback_id"):
        if data.get("cause") == "caller_hangup" and data.get("state") in ABANDONED_STATES:
            await _call_abandoned(tx, rt, str(data["call_id"]), "caller_hangup",
                                  from_number=data.get("from_number"))
        return  # otherwise an ordinary inbound call: not ours to track
    attempt = await _find_attempt(tx, context=context, call_id=data.get("call_id"))
    # After a survey answer the attempt is settled and the domain refuses the failure.
    await on_attempt_failed(tx, "cti.call.released", attempt,
                            str(data.get("cause") or "released")[:64], rt)


async def on_survey_completed(tx: Transaction, data: dict[str, Any], rt: Runtime) -> None:
    attempt = await _find_attempt(tx, context=data.get("context"), call_id=data.get("call_id"))
    if attempt is None:
        _ignored("ivr.survey.completed", "not a callback attempt we know",
                 call_id=data.get("call_id"))
        return
    callback = await _lock_callback(tx, attempt.callback_id)
    satisfaction = data.get("satisfaction")
    try:
        after, action = cbd.survey_result(callback, attempt.attempt, satisfaction, now=tx.now,
                                          policy=rt.callback_policy)
    except (IllegalTransition, cbd.StaleAttempt) as error:
        _ignored("ivr.survey.completed", str(error), callback_id=attempt.callback_id,
                 attempt=attempt.attempt)
        return
    await _end_attempt(tx, attempt.callback_id, attempt.attempt,
                       "answered" if action is CallbackAction.ANSWER else "no_answer_given")
    await _settle(tx, after, action, rt)


async def on_recording_stored(tx: Transaction, data: dict[str, Any]) -> None:
    await tx.session.execute(insert(db.recordings).values(
        recording_id=data["recording_id"], call_id=data["call_id"],
        duration_seconds=data.get("duration_seconds"), stored_at=tx.now,
    ).on_conflict_do_nothing())


# -- abandoned and dropped calls -> callback_request cases ----------------------------------

async def on_ivr_session_completed(tx: Transaction, data: dict[str, Any], rt: Runtime) -> None:
    """Remember who the caller is (the IVR identified them) and the menu path taken."""
    route = data.get("route") or {}
    customer = route.get("customer") or {}
    c = db.call_contexts
    statement = insert(c).values(call_id=data["call_id"], account=customer.get("account"),
                                 from_number=route.get("from_number"),
                                 ivr_path=data.get("path") or [], updated_at=tx.now)
    await tx.session.execute(statement.on_conflict_do_update(index_elements=["call_id"], set_={
        "account": func.coalesce(statement.excluded.account, c.c.account),
        "from_number": func.coalesce(c.c.from_number, statement.excluded.from_number),
        "ivr_path": statement.excluded.ivr_path, "updated_at": statement.excluded.updated_at}))
    row = (await tx.session.execute(select(c).where(c.c.call_id == data["call_id"]))).one()
    if row.abandoned_at is not None:
        # The abandonment was heard first; now we know who to call back.
        await _callback_request(tx, rt, row)


async def on_call_abandoned(tx: Transaction, data: dict[str, Any], rt: Runtime) -> None:
    await _call_abandoned(tx, rt, str(data["call_id"]), "abandoned_in_queue")


async def on_call_rejected(tx: Transaction, data: dict[str, Any], rt: Runtime) -> None:
    """A queue limit offered the caller a callback (outcome ``callback``): they are owed one,
    like a caller who gave up waiting, and their number is enough to place it."""
    if data.get("outcome") == "callback":
        await _call_abandoned(tx, rt, str(data["call_id"]), f"callback_offer:{data['reason']}")


async def _call_abandoned(tx: Transaction, rt: Runtime, call_id: str, reason: str, *,
                          from_number: Any = None) -> None:
    c = db.call_contexts
    statement = insert(c).values(call_id=call_id, from_number=from_number, abandoned_at=tx.now,
                                 abandon_reason=reason, updated_at=tx.now)
    await tx.session.execute(statement.on_conflict_do_update(index_elements=["call_id"], set_={
        "abandoned_at": func.coalesce(c.c.abandoned_at, statement.excluded.abandoned_at),
        "abandon_reason": func.coalesce(c.c.abandon_reason, statement.excluded.abandon_reason),
        "from_number": func.coalesce(c.c.from_number, statement.excluded.from_number),
        "updated_at": statement.excluded.updated_at}))
    row = (await tx.session.execute(select(c).where(c.c.call_id == call_id))).one()
    await _callback_request(tx, rt, row)


async def _callback_request(tx: Transaction, rt: Runtime, context: Row[Any]) -> None:
    """Exactly one callback_request case per abandoned call of an identified customer, and per
    call a queue limit promised a callback (then the caller's number will do)."""
    account = context.account
    if account is None and context.from_number:
        account = (await tx.session.execute(
            select(db.customer_numbers.c.account)
            .where(db.customer_numbers.c.number == context.from_number))).scalar()
    promised = str(context.abandon_reason or "").startswith("callback_offer")
    customer = None if account is None else (await tx.session.execute(
        select(db.customers.c.area).where(db.customers.c.account == account))).first()
    if customer is None:
        account = None  # none, or one the directory does not know
    area = customer.area if customer is not None else None
    if account is None and not (promised and context.from_number):
        return  # unidentified: nobody to owe a case to (the caller's number alone is no account)
    now = tx.now
    order, step = od.create(_new_id("WO"), OrderType.CALLBACK_REQUEST, now=now,
                            actor=SYSTEM_ACTOR, reason=f"abandoned call {context.call_id}")
    inserted = (await tx.session.execute(insert(db.orders).values(
        order_id=order.order_id, type=order.type.value, state=order.state.value,
        customer_account=account, contact_number=context.from_number, area=area,
        description=f"call {context.call_id} ended before an agent answered "
                    f"({context.abandon_reason})",
        category="abandoned_call", resolution=0, created_by=SYSTEM_ACTOR, created_at=now,
        updated_at=now, priority="normal", ivr_path=context.ivr_path, flags=[],
        abandoned_call_id=context.call_id,
    ).on_conflict_do_nothing().returning(db.orders.c.order_id))).first()
    if inserted is None:
        return  # already owed (the abandonment was heard twice, by ACD and CTI)
    await _audit(tx, step)
    await _emit_ticket(tx, "workorder.ticket.created", {
        "order_id": order.order_id, "type": order.type.value, "call_id": None,
        "customer_account": account, "area": area,
    }, order_id=order.order_id, call_id=context.call_id)
    await _start_work_round(tx, rt, order.order_id, SYSTEM_ACTOR)
    await dispatch_order(tx, order.order_id, DispatchIn(department=rt.callback_team,
                                                        reason="abandoned call"),
                         SYSTEM_ACTOR, rt)


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
