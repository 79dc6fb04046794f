"""Order intake: a new order, a repeated request, a report joining an open order or outage,
repeat complaints."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from services.workorder.domain import intake
from services.workorder.domain import orders as od
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.handlers import Runtime
from services.workorder.handlers.clocks import rebudget_clocks
from services.workorder.handlers.common import emit_ticket, new_id, start_work_round
from services.workorder.repository import audit, insert_order, lock_order, order_of, order_out
from services.workorder.repository import intake as intake_rows
from services.workorder.repository.intake import RequestKeys
from services.workorder.schemas import OrderIn
from shared.auth import Principal
from shared.db import Queries, Row
from shared.events.workorder import (
    SlaEscalated,
    TicketCreated,
    TicketFlagged,
    TicketLinked,
)
from shared.messaging import Transaction


def _request_keys(body: OrderIn) -> RequestKeys | None:
    """What marks a row as made by this request: its idempotency key (which wins a tie: it
    is the client's own word for "this request"), or its call and type."""
    if body.idempotency_key is None and body.call_id is None:
        return None
    return body.idempotency_key, body.call_id, body.type.value


async def _existing_order(db_: Queries, body: OrderIn) -> Row | None:
    keys = _request_keys(body)
    return None if keys is None else await intake_rows.existing_order(db_, keys)


async def _existing_report(db_: Queries, body: OrderIn) -> dict[str, Any] | None:
    """The order a repeated request joined the first time, with its place on the list."""
    keys = _request_keys(body)
    return None if keys is None else await intake_rows.existing_report(db_, keys)


async def create_order(tx: Transaction, body: OrderIn, actor: str, rt: Runtime, *,
                       taken_by: Principal | None = None) -> tuple[dict[str, Any], bool]:
    """Return (order, created). A repeated request gets the order it created (or joined) the
    first time; a repair of a fault already reported joins that order (``linked``).
    ``taken_by``: the token of the agent taking it, whose team the order keeps."""
    existing = await _existing_order(tx, body)
    if existing is not None:
        return order_out(existing), False
    joined = await _existing_report(tx, body)
    if joined is not None:
        return joined, False
    on_file = None
    if body.customer_account is not None:
        on_file = await intake_rows.customer_contact(tx, body.customer_account)
    area = intake.intake_area(area=body.area, account=body.customer_account,
                              contact_number=body.contact_number, customer=on_file)
    outage_id: str | None = None
    if area is not None and intake.may_join(body.type, area, standalone=body.standalone):
        # Reports from one area are decided one at a time, so a burst of calls about the
        # same fault cannot open two orders side by side.
        await intake_rows.lock_area_intake(tx, body.type, area)
        active_outages = await intake_rows.active_outages(tx, area)
        joined = await _existing_report(tx, body) or await _link_report(
            tx, body, area, active_outages, actor)
        if joined is not None:
            return joined, False
        # Nothing open to join: if the area has an active outage, this is its order now.
        outage_id = intake.outage_of_new_order(active_outages)
    ivr_path = None if body.ivr_path is None else json.dumps(body.ivr_path)
    if ivr_path is None and body.call_id is not None:
        ivr_path = await intake_rows.call_ivr_path(tx, body.call_id)
    order, step = od.create(new_id("WO"), body.type, now=tx.now, actor=actor)
    inserted = await insert_order(
        tx, order, actor=actor, call_id=body.call_id, account=body.customer_account,
        contact_number=body.contact_number, area=area, description=body.description,
        category=body.category, idempotency_key=body.idempotency_key, priority=body.priority,
        address=body.address, ivr_path=ivr_path, outage_id=outage_id, taken_by=taken_by)
    if inserted is None:
        # A concurrent twin committed first: its row is the answer, not a 500.
        existing = await _existing_order(tx, body)
        if existing is None:
            raise RuntimeError("order insert conflicted but no existing order matches")
        return order_out(existing), False
    if outage_id is not None:
        await intake_rows.set_outage_order(tx, outage_id, order.order_id)
    audit(tx, step)
    await emit_ticket(tx, TicketCreated(
        order_id=order.order_id, type=order.type.value, call_id=body.call_id,
        customer_account=body.customer_account, area=area, outage_id=outage_id,
    ), order_id=order.order_id, call_id=body.call_id)
    await start_work_round(tx, rt, inserted, actor)
    if order.type is OrderType.COMPLAINT and body.customer_account is not None:
        inserted = await _check_repeat_complaint(tx, rt, inserted, body.customer_account,
                                                 body.call_id, actor)
    return order_out(inserted), True


async def _link_report(tx: Transaction, body: OrderIn, area: str, active_outages: list[str],
                       actor: str) -> dict[str, Any] | None:
    """Join the report to the open order for the same fault, if there is one."""
    candidates = await intake_rows.link_candidates(tx, area, body.type)
    target = od.link_target(body.type, candidates, active_outages)
    if target is None:
        return None
    candidate, reason = target
    order_row = await lock_order(tx, candidate.order_id)
    if not od.linkable(OrderState(order_row.state)):
        return None  # resolved meanwhile: this report is news, and opens its own order
    step = od.link(order_of(order_row), f"{reason}: call {body.call_id or '-'} joins",
                   now=tx.now, actor=actor)
    reporter_id = new_id("RP")
    await intake_rows.insert_reporter(
        tx, reporter_id, candidate.order_id, order_type=body.type, call_id=body.call_id,
        account=body.customer_account, contact_number=body.contact_number,
        description=body.description, idempotency_key=body.idempotency_key, reason=reason,
        actor=actor)
    audit(tx, step)
    await emit_ticket(tx, TicketLinked(
        order_id=candidate.order_id, reporter_id=reporter_id, call_id=body.call_id,
        customer_account=body.customer_account, reason=reason,
        outage_id=candidate.outage_id if reason == "outage" else None,
    ), order_id=candidate.order_id, call_id=body.call_id)
    return await _existing_report(tx, body)


async def _check_repeat_complaint(tx: Transaction, rt: Runtime, order: Row, account: str,
                                  call_id: str | None, actor: str) -> Row:
    """The order as it stands after the check (flagged and urgent for a repeat)."""
    since = tx.now - timedelta(days=rt.repeat_complaint_days)
    earlier = await intake_rows.earlier_complaints(tx, account, order.order_id, since)
    if not od.is_repeat_complaint(OrderType.COMPLAINT, len(earlier)):
        return order
    flagged = await intake_rows.flag_repeat_complaint(tx, order.order_id)
    await emit_ticket(tx, TicketFlagged(
        order_id=order.order_id, flag="repeat_complaint", related_order_ids=earlier,
    ), order_id=order.order_id, call_id=call_id)
    await emit_ticket(tx, SlaEscalated(
        order_id=order.order_id, level=1, level_name="repeat_complaint",
        reason="repeat_complaint"), order_id=order.order_id, call_id=call_id)
    # A repeat complainant is urgent: the running clocks take the urgent budgets.
    await rebudget_clocks(tx, rt, flagged, "urgent", actor=actor, reason="repeat_complaint")
    return flagged
