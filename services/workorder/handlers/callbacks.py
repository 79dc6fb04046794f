"""Callbacks: due ones dialled (deny list, daily cap, calling hours), attempts settled, the
order closed or reopened by the survey."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from services.workorder import repository
from services.workorder.domain import callbacks as cbd
from services.workorder.domain import dialing
from services.workorder.domain import orders as od
from services.workorder.domain.callbacks import Callback, CallbackAction, CallbackState
from services.workorder.domain.intake import settlement
from services.workorder.handlers import Runtime
from services.workorder.handlers.clocks import stop_clocks
from services.workorder.handlers.common import SYSTEM_ACTOR, emit_ticket, start_work_round
from services.workorder.repository import (
    end_attempt,
    lock_callback,
    lock_order,
    order_of,
    save_callback,
    save_order,
)
from shared.db import Queries, Row
from shared.errors import IllegalTransition
from shared.events.workorder import (
    CallbackCompleted,
    CallbackRequested,
    TicketClosed,
    TicketReopened,
)
from shared.messaging import Transaction

log = structlog.get_logger(__name__)


async def list_callbacks(db_: Queries, *, order_id: str | None, state: CallbackState | None,
                         limit: int = 1000, order_ids: list[str] | None = None
                         ) -> list[dict[str, Any]]:
    return await repository.callbacks_with_attempts(db_, order_id=order_id,
                                                    order_ids=order_ids, state=state,
                                                    limit=limit)


async def fire_one_callback(tx: Transaction, rt: Runtime) -> bool:
    """Take the earliest due callback task nobody else holds; dial it, defer it, or time its
    attempt out. False when none is due."""
    due = await repository.lock_due_callback(tx, tx.now)
    if due is None:
        return False
    await _fire_callback(tx, due, rt)
    return True


async def _fire_callback(tx: Transaction, before: Callback, rt: Runtime) -> None:
    now = tx.now
    if cbd.to_dial(before):
        allowed = dialing.next_allowed(now, rt.rules, rt.calendar)
        if allowed > now:
            # Outside calling hours or on a statutory holiday: wait, using no attempt.
            await save_callback(tx, cbd.defer(before, allowed))
            await rt.wake_after_commit(tx, allowed)
            return
        await _dial(tx, before, rt)
        return
    after, action = cbd.on_timer(before, now=now, policy=rt.callback_policy)
    await end_attempt(tx, before.callback_id, before.attempts, "timeout")
    await settle(tx, after, action, rt)


async def _attempts_today(tx: Transaction, number: str, rt: Runtime) -> int:
    start, end = dialing.local_day_bounds(tx.now, rt.calendar)
    return await repository.attempts_to_number(tx, number, start, end)


async def _dial(tx: Transaction, pending: Callback, rt: Runtime) -> None:
    order_row = await lock_order(tx, pending.order_id)
    now = tx.now
    on_file, reported_call_id = await repository.callback_party(tx, pending.callback_id)
    order = order_of(order_row)
    if od.awaits_callback(order):
        order, step = od.start_callback(order, now=now, actor=SYSTEM_ACTOR,
                                        reason=f"callback {pending.callback_id}")
        await save_order(tx, order, step)
    refusal = "no_number" if on_file is None else dialing.denied(on_file, rt.rules)
    to_number = None if on_file is None else dialing.normalized(on_file, rt.rules)
    if refusal is not None or to_number is None:
        # No attempt can reach the customer: hand the case back to people at once.
        reason = refusal or "no_number"
        await settle(tx, cbd.give_up(pending, f"denied:{reason}" if on_file else reason,
                                      now=now), CallbackAction.GIVE_UP, rt)
        return
    # Counted and dialled as normalised: each spelling of a number no longer gets a cap of
    # its own (security review H4).
    if await _attempts_today(tx, to_number, rt) >= rt.rules.daily_cap:
        until = dialing.next_day_window(now, rt.rules, rt.calendar)
        await save_callback(tx, cbd.defer(pending, until))
        await rt.wake_after_commit(tx, until)
        return
    callback = cbd.dial(pending, now=now, policy=rt.callback_policy)
    request_id = str(uuid.uuid4())
    await repository.insert_attempt(tx, callback, request_id, to_number, now)
    await save_callback(tx, callback)
    await rt.wake_after_commit(tx, callback.due_at)
    context = {"purpose": "survey", "order_id": callback.order_id,
               "callback_id": callback.callback_id, "attempt": callback.attempts,
               "request_id": request_id, "reported_call_id": reported_call_id}
    await tx.emit(CallbackRequested(
        request_id=request_id, callback_id=callback.callback_id,
        order_id=callback.order_id, attempt=callback.attempts, to_number=to_number,
        context=context,
    ), subject=f"callback/{callback.callback_id}", correlationid=order_row.call_id)


async def settle(tx: Transaction, callback: Callback, action: CallbackAction,
                  rt: Runtime) -> None:
    """Save a callback after an outcome; a final outcome closes or reopens its order."""
    await save_callback(tx, callback)
    if action is CallbackAction.RETRY or callback.outcome is None:
        await rt.wake_after_commit(tx, callback.due_at)
        return
    order_row = await lock_order(tx, callback.order_id)
    await tx.emit(CallbackCompleted(
        callback_id=callback.callback_id, order_id=callback.order_id,
        outcome=callback.outcome, attempts=callback.attempts,
    ), subject=f"callback/{callback.callback_id}", correlationid=order_row.call_id)
    await stop_clocks(tx, rt, callback.order_id, ("callback",), actor=SYSTEM_ACTOR,
                       reason=f"callback {callback.outcome}", callback_id=callback.callback_id)
    outcome = settlement(await repository.resolution_callbacks(tx, callback.order_id,
                                                               callback.resolution))
    if outcome is None:
        return  # other reporters of this resolution are still to be called back
    await stop_clocks(tx, rt, callback.order_id, ("reply",), actor=SYSTEM_ACTOR,
                       reason=f"callback {outcome}")
    try:
        order, step = od.apply_callback_outcome(order_of(order_row), outcome,
                                                now=tx.now, actor=SYSTEM_ACTOR)
    except IllegalTransition as error:
        # The callback's result stands on its own; the order moved on by another path.
        log.warning("callback outcome does not apply to the order", order_id=callback.order_id,
                    callback_id=callback.callback_id, error=str(error))
        return
    saved = await save_order(tx, order, step)
    if not od.is_open(order.state):
        await stop_clocks(tx, rt, order.order_id, None, actor=SYSTEM_ACTOR, reason="closed")
        await emit_ticket(tx, TicketClosed(
            order_id=order.order_id, satisfaction=order.satisfaction,
        ), order_id=order.order_id, call_id=order_row.call_id)
    else:
        await emit_ticket(tx, TicketReopened(
            order_id=order.order_id, reason=step.reason,
        ), order_id=order.order_id, call_id=order_row.call_id)
        # Reopened work is dispatched again (二次派单): a new round of work clocks.
        await start_work_round(tx, rt, saved, SYSTEM_ACTOR)


def ignored(event_type: str, why: str, **fields: Any) -> None:
    log.info("event ignored", ignored_type=event_type, why=why, **fields)


async def on_attempt_failed(tx: Transaction, event: str, attempt: Row | None, reason: str,
                            rt: Runtime) -> None:
    if attempt is None:
        ignored(event, "not a callback attempt we know")
        return
    callback = await lock_callback(tx, attempt.callback_id)
    try:
        after, action = cbd.fail_attempt(callback, attempt.attempt, reason, now=tx.now,
                                          policy=rt.callback_policy)
    except (IllegalTransition, cbd.StaleAttempt) as error:
        ignored(event, str(error), callback_id=attempt.callback_id, attempt=attempt.attempt)
        return
    await end_attempt(tx, attempt.callback_id, attempt.attempt, reason)
    await settle(tx, after, action, rt)
