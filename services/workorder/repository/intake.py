"""What intake reads and writes: the order (or report) a repeated request made, the caller's
customer on file, the area's lock, active outages and open orders a report may join, the
reporter row, a call's IVR path, earlier complaints and the repeat flag. On the call's path:
SQL written once, on the unit of work's connection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.workorder import db
from services.workorder.domain import orders as od
from services.workorder.domain.intake import CustomerOnFile
from services.workorder.domain.orders import OrderState, OrderType
from services.workorder.repository import order_out
from shared.db import Queries, Row
from shared.db import row as fetch_row
from shared.db import rows as fetch_rows
from shared.messaging import Transaction

S = db.SCHEMA

# What marks a row as made by one request: (idempotency key, call id, order type).
RequestKeys = tuple[str | None, str | None, str | None]


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


async def existing_order(db: Queries, keys: RequestKeys) -> Row | None:
    """The order the request created the first time (its idempotency key wins a tie)."""
    return await fetch_row(db, EXISTING_ORDER, *keys)


async def existing_report(db: Queries, keys: RequestKeys) -> dict[str, Any] | None:
    """The order a repeated request joined the first time, with its place on the list
    (``linked``: the reporter row)."""
    found = await fetch_row(db, EXISTING_REPORT, *keys)
    if found is None:
        return None
    return {**order_out(found, without=("reporter_row",)),
            "linked": dict(found.reporter_row.items())}


CUSTOMER_CONTACT = f"""
    SELECT c.area, (SELECT n.number FROM {S}.customer_numbers n WHERE n.account = c.account
                     ORDER BY n.position LIMIT 1) AS first_number
      FROM {S}.customers c WHERE c.account = $1"""


async def customer_contact(db: Queries, account: str) -> CustomerOnFile | None:
    """The customer's area and first number; None if the account is unknown."""
    found = await fetch_row(db, CUSTOMER_CONTACT, account)
    return None if found is None else CustomerOnFile(found.area, found.first_number)


LINK_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1))"


async def lock_area_intake(tx: Transaction, order_type: OrderType, area: str) -> None:
    """Take the area's intake lock for reports of this type (a transaction advisory lock:
    held until the transaction ends)."""
    await tx.execute(LINK_LOCK, f"workorder.link:{order_type.value}:{area}")


IVR_PATH = f"SELECT ivr_path::text FROM {S}.call_contexts WHERE call_id = $1"


async def call_ivr_path(db: Queries, call_id: str) -> str | None:
    """The menu path the IVR reported for the call (JSON text), if it did."""
    path: str | None = await db.fetchval(IVR_PATH, call_id)
    return path


OUTAGE_ORDER = f"UPDATE {S}.outages SET order_id = $2 WHERE outage_id = $1"


async def set_outage_order(tx: Transaction, outage_id: str, order_id: str) -> None:
    """The new order is the outage's: later reports from its area join it."""
    await tx.execute(OUTAGE_ORDER, outage_id, order_id)


ACTIVE_OUTAGES = f"""
    SELECT outage_id FROM {S}.outages
     WHERE area = $1 AND restored_at IS NULL AND start_at <= $2
       AND (restore_eta IS NULL OR restore_eta > $2)
     ORDER BY start_at, outage_id FOR UPDATE"""


async def active_outages(tx: Transaction, area: str) -> list[str]:
    """The area's active outages, oldest first, locked: a new order may become one's order."""
    return [r["outage_id"] for r in await tx.fetch(ACTIVE_OUTAGES, area, tx.now)]


LINK_CANDIDATES = f"""
    SELECT order_id, state, outage_id FROM {S}.orders
     WHERE area = $1 AND type = $2 AND state = ANY($3::text[])
     ORDER BY created_at, order_id"""


LINKABLE = [s.value for s in od.LINKABLE_STATES]


async def link_candidates(db: Queries, area: str, order_type: OrderType
                          ) -> list[od.LinkCandidate]:
    """The area's open orders of the type a report could join, oldest first."""
    return [od.LinkCandidate(r.order_id, OrderState(r.state), r.outage_id)
            for r in await fetch_rows(db, LINK_CANDIDATES, area, order_type.value, LINKABLE)]


INSERT_REPORTER = f"""
    INSERT INTO {S}.order_reporters (reporter_id, order_id, type, call_id, customer_account,
                                     contact_number, description, idempotency_key, reason,
                                     linked_by, linked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"""


async def insert_reporter(tx: Transaction, reporter_id: str, order_id: str, *,
                          order_type: OrderType, call_id: str | None, account: str | None,
                          contact_number: str | None, description: str | None,
                          idempotency_key: str | None, reason: str, actor: str) -> None:
    """The caller goes on the order's callback list (linked now)."""
    await tx.execute(INSERT_REPORTER, reporter_id, order_id, order_type.value, call_id,
                     account, contact_number, description, idempotency_key, reason, actor,
                     tx.now)


EARLIER_COMPLAINTS = f"""
    SELECT order_id FROM {S}.orders
     WHERE customer_account = $1 AND type = 'complaint' AND order_id <> $2 AND created_at >= $3
     ORDER BY created_at"""


async def earlier_complaints(db: Queries, account: str, order_id: str,
                             since: datetime) -> list[str]:
    """Ids of the customer's other complaints created since ``since``, oldest first."""
    return [r["order_id"] for r in await db.fetch(EARLIER_COMPLAINTS, account, order_id, since)]


FLAG_REPEAT = f"""
    UPDATE {S}.orders SET flags = flags || '["repeat_complaint"]'::jsonb, priority = 'urgent'
     WHERE order_id = $1 RETURNING *"""


async def flag_repeat_complaint(tx: Transaction, order_id: str) -> Row:
    """Flag the order ``repeat_complaint`` and make it urgent; the row as saved."""
    flagged = await fetch_row(tx, FLAG_REPEAT, order_id)
    assert flagged is not None, "the order was just inserted"
    return flagged
