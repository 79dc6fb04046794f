"""Workorder's rows: orders and callbacks (row ⇄ domain, locks, saves, the order's detail),
the facts handlers gather about customers, outages and calls on the call's path (SQL written
once, on the unit of work's connection), and the customers, outages and order listings
(SQLAlchemy Core: REST). Intake's own reads and writes are in ``repository/intake.py``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.workorder import db
from services.workorder.domain import orders as od
from services.workorder.domain.calendar import WorkCalendar
from services.workorder.domain.callbacks import Callback, CallbackState
from services.workorder.domain.orders import Order, OrderState, OrderType, Transition
from services.workorder.repository import journal
from services.workorder.repository.clocks import clock_view
from shared.auth import Principal
from shared.data_scope import DataScope
from shared.db import Queries, Row
from shared.db import row as fetch_row
from shared.db import rows as fetch_rows
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
                            flags, outage_id, abandoned_call_id, team, agent_department)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15,
            $16::text::jsonb, '[]'::jsonb, $17, $18, $19, $20)
    ON CONFLICT DO NOTHING
    RETURNING *"""


async def insert_order(tx: Transaction, order: Order, *, actor: str, call_id: str | None,
                        account: str | None, contact_number: str | None, area: str | None,
                        description: str | None, category: str | None,
                        idempotency_key: str | None = None, priority: str = "normal",
                        address: str | None = None, ivr_path: str | None = None,
                        outage_id: str | None = None,
                        abandoned_call_id: str | None = None,
                        taken_by: Principal | None = None) -> Row | None:
    """The new order's row; None when a twin (same call and type, idempotency key or
    abandoned call) is already there. ``taken_by``: the agent's token, whose team and
    department the order keeps."""
    return await fetch_row(
        tx, INSERT_ORDER, order.order_id, order.type.value, order.state.value, call_id, account,
        contact_number, area, description, category, idempotency_key, order.resolution, actor,
        tx.now, priority, address, ivr_path, outage_id, abandoned_call_id,
        taken_by.team if taken_by else None, taken_by.department if taken_by else None)


SET_PRIORITY = f"UPDATE {S}.orders SET priority = $2, updated_at = $3 WHERE order_id = $1"


async def save_priority(tx: Transaction, order_id: str, priority: str) -> None:
    await tx.execute(SET_PRIORITY, order_id, priority, tx.now)


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


async def order_detail(db: Queries, order_id: str, *, now: datetime, calendar: WorkCalendar
                       ) -> dict[str, Any] | None:
    """The order with its history, reporters, callbacks and attempts, recordings, clocks (as
    of ``now``) and clock history, in one read; None if there is no such order."""
    found = await fetch_row(db, ORDER_DETAIL, order_id)
    if found is None:
        return None
    parts = tuple(key for key in found if key.startswith("detail_"))
    return {**order_out(found, without=parts), "history": records(found.detail_history),
            "reporters": records(found.detail_reporters),
            "callbacks": _with_attempts(records(found.detail_callbacks),
                                        records(found.detail_attempts)),
            "recording_ids": list(found.detail_recordings),
            "clocks": [clock_view(Row(c), now, calendar) for c in found.detail_clocks],
            "clock_history": records(found.detail_clock_history)}


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


LIST_CALLBACKS = f"""
    SELECT cb.*, ARRAY(SELECT a FROM {S}.callback_attempts a
                        WHERE a.callback_id = cb.callback_id ORDER BY a.attempt) AS attempt_log
      FROM {S}.callbacks cb
     WHERE ($1::text IS NULL OR cb.order_id = $1)
       AND ($2::text[] IS NULL OR cb.order_id = ANY($2::text[]))
       AND ($3::text IS NULL OR cb.state = $3)
     ORDER BY cb.created_at, cb.order_id, cb.resolution LIMIT $4"""


async def callbacks_with_attempts(db: Queries, *, order_id: str | None,
                                  order_ids: list[str] | None, state: CallbackState | None,
                                  limit: int) -> list[dict[str, Any]]:
    """Callback tasks by any of the filters given, each with its attempts (``attempt_log``)."""
    return [{**found._asdict(), "attempt_log": records(found.attempt_log)}
            for found in await fetch_rows(db, LIST_CALLBACKS, order_id, order_ids,
                                          None if state is None else state.value, limit)]


DUE_CALLBACK = f"""
    SELECT * FROM {S}.callbacks WHERE state IN ('pending', 'dialing') AND due_at <= $1
     ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"""


async def lock_due_callback(db: Queries, now: datetime) -> Callback | None:
    """The earliest callback task due by ``now`` that no other worker holds, locked."""
    found = await fetch_row(db, DUE_CALLBACK, now)
    return None if found is None else callback_of(found)


ATTEMPTS_TODAY = f"""
    SELECT count(*) FROM {S}.callback_attempts
     WHERE to_number = $1 AND requested_at >= $2 AND requested_at < $3"""


LOCK_NUMBER = "SELECT pg_advisory_xact_lock(hashtext('workorder.dial:' || $1))"


async def attempts_to_number(db: Queries, number: str, start: datetime, end: datetime) -> int:
    """Attempts requested to the number in [start, end), counted under a lock on the number
    held until the transaction ends: two timer workers dialling the same number count one
    after the other's insert, so the daily cap is never overshot. (The lock is a statement
    of its own: the count's snapshot must start after it is granted.)"""
    await db.execute(LOCK_NUMBER, number)
    return int(await db.fetchval(ATTEMPTS_TODAY, number, start, end))


INSERT_ATTEMPT = f"""
    INSERT INTO {S}.callback_attempts (callback_id, attempt, request_id, to_number,
                                       requested_at)
    VALUES ($1, $2, $3, $4, $5)"""


async def insert_attempt(tx: Transaction, callback: Callback, request_id: str, to_number: str,
                         requested_at: datetime) -> None:
    """The callback's latest attempt (number ``callback.attempts``)."""
    await tx.execute(INSERT_ATTEMPT, callback.callback_id, callback.attempts, request_id,
                     to_number, requested_at)


ATTEMPT_CALL = f"""
    UPDATE {S}.callback_attempts SET call_id = $3 WHERE callback_id = $1 AND attempt = $2"""


async def record_attempt_call(tx: Transaction, callback_id: str, attempt: int,
                              call_id: str) -> None:
    """The outbound call an attempt placed."""
    await tx.execute(ATTEMPT_CALL, callback_id, attempt, call_id)


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


async def callback_party(db: Queries, callback_id: str) -> tuple[str | None, str | None]:
    """(the number to call, the call the callback is about) for a task."""
    party = await fetch_row(db, CALLBACK_PARTY, callback_id)
    assert party is not None, "the callback was locked"
    return party.number, party.call_id


SIBLINGS = f"""
    SELECT state, outcome FROM {S}.callbacks WHERE order_id = $1 AND resolution = $2"""


async def resolution_callbacks(db: Queries, order_id: str, resolution: int
                               ) -> list[tuple[CallbackState, str | None]]:
    """(state, outcome) of every callback task one resolution of the order owes."""
    return [(CallbackState(sibling.state), sibling.outcome)
            for sibling in await fetch_rows(db, SIBLINGS, order_id, resolution)]


# Whom a resolution owes a callback: the reporters, and each party's latest outcome.
CALLBACK_PARTIES = f"""
    SELECT ARRAY(SELECT reporter_id FROM {S}.order_reporters WHERE order_id = $1
                  ORDER BY linked_at, reporter_id) AS reporters,
           ARRAY(SELECT ROW(reporter_id, outcome) FROM {S}.callbacks WHERE order_id = $1
                  ORDER BY resolution DESC) AS outcomes"""


async def callback_parties(db: Queries, order_id: str
                           ) -> tuple[list[str], dict[str | None, str | None]]:
    """The order's linked reporters (in the order they joined), and each party's latest
    callback outcome (key ``None``: the order's own caller)."""
    parties = await fetch_row(db, CALLBACK_PARTIES, order_id)
    assert parties is not None
    last_outcome: dict[str | None, str | None] = {}
    for reporter_id, outcome in parties.outcomes:
        last_outcome.setdefault(reporter_id, outcome)
    return list(parties.reporters), last_outcome


INSERT_CALLBACK = f"""
    INSERT INTO {S}.callbacks (callback_id, order_id, resolution, state, attempts,
                               max_attempts, due_at, created_at, reporter_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT ON CONSTRAINT uq_callbacks_order_resolution_party DO NOTHING
    RETURNING callback_id"""


async def insert_callback(tx: Transaction, callback: Callback, reporter_id: str | None) -> bool:
    """The new task for its resolution and party (``reporter_id`` None: the order's own
    caller); False when that party already has one."""
    inserted = await tx.fetchval(
        INSERT_CALLBACK, callback.callback_id, callback.order_id, callback.resolution,
        callback.state.value, callback.attempts, callback.max_attempts, callback.due_at,
        tx.now, reporter_id)
    return inserted is not None


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
    ordered = list(dict.fromkeys(numbers))  # a number given twice keeps its first place
    if not ordered:
        return
    rows = insert(db.customer_numbers).values([
        {"number": number, "account": account, "position": position}
        for position, number in enumerate(ordered)])
    await tx.session.execute(rows.on_conflict_do_update(
        index_elements=["number"],
        set_={"account": rows.excluded.account, "position": rows.excluded.position}))


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


RECORD_ACCESS = (f"INSERT INTO {S}.customer_access (account, action, subject, scopes, at,"
                 " order_id) VALUES ($1, $2, $3, $4, $5, $6)")
ACCESS_OF = (f"SELECT id, account, action, subject, scopes, at, order_id"
             f" FROM {S}.customer_access"
             " WHERE account = $1 ORDER BY id DESC LIMIT $2")


async def record_access(tx: Queries, account: str, action: str, subject: str, scopes: str,
                        at: datetime, order_id: str | None = None) -> None:
    await tx.execute(RECORD_ACCESS, account, action, subject, scopes, at, order_id)


async def access_of(db: Queries, account: str, limit: int) -> list[dict[str, Any]]:
    """Who was shown the account's personal data, newest first."""
    return [dict(found) for found in await db.fetch(ACCESS_OF, account, limit)]


LOOKUP = f"""
    SELECT c.account, c.name, c.area, c.tier, c.flags, c.balance, c.created_at, c.updated_at,
           (SELECT array_agg(m.number ORDER BY m.position) FROM {S}.customer_numbers m
             WHERE m.account = c.account) AS numbers,
           (SELECT coalesce(json_agg(json_build_object(
                    'outage_id', o.outage_id, 'area', o.area, 'type', o.type,
                    'start', o.start_at, 'restore_eta', o.restore_eta,
                    'created_at', o.created_at, 'active', true, 'order_id', o.order_id,
                    'restored_at', o.restored_at, 'restored_by', o.restored_by)
                    ORDER BY o.start_at, o.outage_id), '[]')
              FROM {S}.outages o
             WHERE o.area = c.area AND o.restored_at IS NULL AND o.start_at <= $2
               AND (o.restore_eta IS NULL OR o.restore_eta > $2)) AS active_outages
      FROM {S}.customer_numbers n JOIN {S}.customers c ON c.account = n.account
     WHERE n.number = $1"""


async def customer_with_outages(db: Queries, number: str, now: datetime
                                ) -> dict[str, Any] | None:
    """The customer behind a number, with their numbers and the outages active in their area
    at ``now``, in one statement; None if the number is unknown."""
    row = await db.fetchrow(LOOKUP, number, now)
    if row is None:
        return None
    found = dict(row)
    for key in ("flags", "active_outages"):
        if isinstance(found[key], str):
            found[key] = json.loads(found[key])
    found["numbers"] = list(found["numbers"] or [])
    return found


# The account behind an abandoned call (the IVR's, else the number's), if the directory
# knows it, with its area.
ABANDONED_CUSTOMER = f"""
    SELECT c.account, c.area FROM {S}.customers c
     WHERE c.account = coalesce($1::text, (SELECT n.account FROM {S}.customer_numbers n
                                            WHERE n.number = $2))"""


async def abandoned_call_customer(db: Queries, account: str | None,
                                  from_number: str | None) -> Row | None:
    """The customer (``account``, ``area``) an abandoned call came from, if known."""
    return await fetch_row(db, ABANDONED_CUSTOMER, account, from_number)


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


RESTORE_OUTAGE_OF_ORDER = f"""
    UPDATE {S}.outages SET restored_at = $2, restored_by = $3
     WHERE outage_id = $1 AND restored_at IS NULL"""


async def restore_outage_of_order(tx: Transaction, outage_id: str, actor: str) -> None:
    """The outage the resolved order was opened for is over (unless it already was)."""
    await tx.execute(RESTORE_OUTAGE_OF_ORDER, outage_id, tx.now, actor)


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


# -- calls: what the IVR and the queues said about them, their recordings -------------------

IVR_CONTEXT = f"""
    INSERT INTO {S}.call_contexts AS c (call_id, account, from_number, ivr_path, updated_at)
    VALUES ($1, $2, $3, $4::text::jsonb, $5)
    ON CONFLICT (call_id) DO UPDATE
       SET account = coalesce(excluded.account, c.account),
           from_number = coalesce(c.from_number, excluded.from_number),
           ivr_path = excluded.ivr_path, updated_at = excluded.updated_at
    RETURNING *"""


async def remember_ivr_context(tx: Transaction, call_id: str, *, account: str | None,
                               from_number: str | None, path: list[str]) -> Row:
    """The caller's account, number and the menu path the IVR reported; the call's context
    as it now stands."""
    context = await fetch_row(tx, IVR_CONTEXT, call_id, account, from_number,
                              json.dumps(path), tx.now)
    assert context is not None
    return context


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


async def remember_abandoned_call(tx: Transaction, call_id: str, *, from_number: str | None,
                                  reason: str) -> Row:
    """The call ended before an agent answered (the first word on it is kept); the call's
    context as it now stands."""
    context = await fetch_row(tx, ABANDONED_CONTEXT, call_id, from_number, tx.now, reason)
    assert context is not None
    return context


INSERT_RECORDING = f"""
    INSERT INTO {S}.recordings (recording_id, call_id, duration_seconds, stored_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"""


async def insert_recording(tx: Transaction, recording_id: str, call_id: str,
                           duration_seconds: float) -> None:
    await tx.execute(INSERT_RECORDING, recording_id, call_id, duration_seconds, tx.now)


# -- order listings ------------------------------------------------------------------------

def readable_orders(scope: DataScope) -> ColumnElement[bool]:
    """The orders ``scope`` reads, as SQL: :meth:`DataScope.may_read_order` over the table."""
    t = db.orders
    if scope.agent is not None:
        return or_(t.c.created_by == scope.agent, t.c.owner == scope.agent)
    if scope.overseer is None:
        return true()
    overseer = scope.overseer
    terms = []
    if overseer.team is not None:
        terms.append(t.c.team == overseer.team)
    if overseer.department is not None:
        terms += [t.c.agent_department == overseer.department,
                  t.c.department == overseer.department]
    return or_(*terms)


async def orders(session: AsyncSession, *, call_id: str | None, state: OrderState | None,
                 customer_account: str | None, order_type: OrderType | None,
                 open_only: bool | None, limit: int, department: str | None = None,
                 owner: str | None = None, abandoned_call_id: str | None = None,
                 scope: DataScope | None = None) -> list[Any]:
    """Orders newest first, by any of the filters given, of those ``scope`` reads."""
    t = db.orders
    query = select(t).order_by(t.c.created_at.desc(), t.c.order_id).limit(limit)
    if scope is not None:
        query = query.where(readable_orders(scope))
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
