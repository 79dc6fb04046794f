"""Order intake: a new order, a repeated request, a report joining an open order or outage,
repeat complaints."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from services.workorder import db
from services.workorder.clocks import Runtime, rebudget_clocks
from services.workorder.domain import intake
from services.workorder.domain import orders as od
from services.workorder.domain.intake import CustomerOnFile
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.handlers.common import emit_ticket, new_id, start_work_round
from services.workorder.repository import audit, insert_order, lock_order, order_of, order_out
from services.workorder.schemas import OrderIn
from shared.db import Queries, Row
from shared.db import row as fetch_row
from shared.db import rows as fetch_rows
from shared.events.workorder import (
    SlaEscalated,
    TicketCreated,
    TicketFlagged,
    TicketLinked,
)
from shared.messaging import Transaction

S = db.SCHEMA


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


CUSTOMER_CONTACT = f"""
    SELECT c.area, (SELECT n.number FROM {S}.customer_numbers n WHERE n.account = c.account
                     ORDER BY n.position LIMIT 1) AS first_number
      FROM {S}.customers c WHERE c.account = $1"""


LINK_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"


IVR_PATH = f"SELECT ivr_path::text FROM {S}.call_contexts WHERE call_id = $1"


OUTAGE_ORDER = f"UPDATE {S}.outages SET order_id = $2 WHERE outage_id = $1"


async def create_order(tx: Transaction, body: OrderIn, actor: str,
                       rt: Runtime) -> tuple[dict[str, Any], bool]:
    """Return (order, created). A repeated request gets the order it created (or joined) the
    first time; a repair of a fault already reported joins that order (``linked``)."""
    existing = await _existing_order(tx, body)
    if existing is not None:
        return order_out(existing), False
    joined = await _existing_report(tx, body)
    if joined is not None:
        return joined, False
    on_file = None
    if body.customer_account is not None:
        found = await fetch_row(tx, CUSTOMER_CONTACT, body.customer_account)
        on_file = None if found is None else CustomerOnFile(found.area, found.first_number)
    area = intake.intake_area(area=body.area, account=body.customer_account,
                              contact_number=body.contact_number, customer=on_file)
    outage_id: str | None = None
    if area is not None and intake.may_join(body.type, area, standalone=body.standalone):
        # Reports from one area are decided one at a time, so a burst of calls about the
        # same fault cannot open two orders side by side.
        await tx.execute(LINK_LOCK, f"workorder.link:{body.type.value}:{area}")
        active_outages = await _active_outages(tx, area)
        joined = await _existing_report(tx, body) or await _link_report(
            tx, body, area, active_outages, actor)
        if joined is not None:
            return joined, False
        # Nothing open to join: if the area has an active outage, this is its order now.
        outage_id = intake.outage_of_new_order(active_outages)
    ivr_path = None if body.ivr_path is None else json.dumps(body.ivr_path)
    if ivr_path is None and body.call_id is not None:
        ivr_path = await tx.fetchval(IVR_PATH, body.call_id)
    order, step = od.create(new_id("WO"), body.type, now=tx.now, actor=actor)
    inserted = await insert_order(
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
    order_row = await lock_order(tx, candidate.order_id)
    if not od.linkable(OrderState(order_row.state)):
        return None  # resolved meanwhile: this report is news, and opens its own order
    step = od.link(order_of(order_row), f"{reason}: call {body.call_id or '-'} joins",
                   now=tx.now, actor=actor)
    reporter_id = new_id("RP")
    await tx.execute(INSERT_REPORTER, reporter_id, candidate.order_id, body.type.value,
                     body.call_id, body.customer_account, body.contact_number,
                     body.description, body.idempotency_key, reason, actor, tx.now)
    audit(tx, step)
    await emit_ticket(tx, TicketLinked(
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
    await emit_ticket(tx, TicketFlagged(
        order_id=order.order_id, flag="repeat_complaint", related_order_ids=earlier,
    ), order_id=order.order_id, call_id=call_id)
    await emit_ticket(tx, SlaEscalated(
        order_id=order.order_id, level=1, level_name="repeat_complaint",
        reason="repeat_complaint"), order_id=order.order_id, call_id=call_id)
    # A repeat complainant is urgent: the running clocks take the urgent budgets.
    await rebudget_clocks(tx, rt, flagged, "urgent", actor=actor, reason="repeat_complaint")
    return flagged
