"""The events workorder consumes: callback attempts' outcomes, abandoned calls owed a callback,
the IVR's identification of the caller, recordings to attach."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from services.workorder import repository
from services.workorder.domain import callbacks as cbd
from services.workorder.domain import orders as od
from services.workorder.domain.callbacks import CallbackAction
from services.workorder.domain.intake import abandoned_call_description, owed_callback
from services.workorder.domain.orders import OrderType
from services.workorder.handlers import Runtime
from services.workorder.handlers.callbacks import ignored, on_attempt_failed, settle
from services.workorder.handlers.common import SYSTEM_ACTOR, emit_ticket, new_id, start_work_round
from services.workorder.handlers.orders import dispatch_order
from services.workorder.repository import (
    audit,
    end_attempt,
    find_attempt,
    insert_order,
    lock_callback,
)
from services.workorder.schemas import DispatchIn
from shared.consumers import Consumes
from shared.db import Row
from shared.errors import IllegalTransition
from shared.events import EventData
from shared.events.acd import CallAbandoned, CallRejected
from shared.events.cti import CallOriginated, CallReleased, OriginationFailed
from shared.events.ivr import SessionCompleted, SurveyCompleted
from shared.events.recording import FileStored
from shared.events.workorder import (
    TicketCreated,
)
from shared.messaging import Transaction


async def on_call_originated(tx: Transaction, event: CallOriginated) -> None:
    attempt = await find_attempt(tx, request_id=event.request_id, context=event.context)
    if attempt is None:
        ignored("cti.call.originated", "unknown request", request_id=event.request_id)
        return
    # Recorded even for a superseded attempt: the call's release will still need matching.
    await repository.record_attempt_call(tx, attempt.callback_id, attempt.attempt,
                                         event.call_id)


async def on_origination_failed(rt: Runtime, tx: Transaction, event: OriginationFailed) -> None:
    attempt = await find_attempt(tx, request_id=event.request_id, context=event.context)
    await on_attempt_failed(tx, "cti.call.origination_failed", attempt,
                            f"origination_failed:{event.reason}"[:64], rt)


async def on_call_released(rt: Runtime, tx: Transaction, event: CallReleased) -> None:
    if event.direction != "outbound" and not event.context.get("callback_id"):
        if owed_callback(event.cause, event.state):
            await _call_abandoned(tx, rt, event.call_id, event.cause,
                                  from_number=event.from_number)
        return  # otherwise an ordinary inbound call: not ours to track
    attempt = await find_attempt(tx, context=event.context, call_id=event.call_id)
    # After a survey answer the attempt is settled and the domain refuses the failure.
    await on_attempt_failed(tx, "cti.call.released", attempt,
                            (event.cause or "released")[:64], rt)


async def on_survey_completed(rt: Runtime, tx: Transaction, event: SurveyCompleted) -> None:
    attempt = await find_attempt(tx, context=event.context, call_id=event.call_id)
    if attempt is None:
        ignored("ivr.survey.completed", "not a callback attempt we know",
                 call_id=event.call_id)
        return
    callback = await lock_callback(tx, attempt.callback_id)
    try:
        after, action = cbd.survey_result(callback, attempt.attempt, event.satisfaction,
                                          now=tx.now,
                                          policy=rt.callback_policy)
    except (IllegalTransition, cbd.StaleAttempt) as error:
        ignored("ivr.survey.completed", str(error), callback_id=attempt.callback_id,
                 attempt=attempt.attempt)
        return
    await end_attempt(tx, attempt.callback_id, attempt.attempt,
                       "answered" if action is CallbackAction.ANSWER else "no_answer_given")
    await settle(tx, after, action, rt)


async def on_recording_stored(tx: Transaction, event: FileStored) -> None:
    await repository.insert_recording(tx, event.recording_id, event.call_id,
                                      event.duration_seconds)


async def on_ivr_session_completed(rt: Runtime, tx: Transaction, event: SessionCompleted) -> None:
    """Remember who the caller is (the IVR identified them) and the menu path taken."""
    route = event.route
    account = None if route is None or route.customer is None else route.customer.account
    context = await repository.remember_ivr_context(
        tx, event.call_id, account=account,
        from_number=None if route is None else route.from_number, path=event.path)
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
    context = await repository.remember_abandoned_call(tx, call_id, from_number=from_number,
                                                       reason=reason)
    await _callback_request(tx, rt, context)


async def _callback_request(tx: Transaction, rt: Runtime, context: Row) -> None:
    """Exactly one callback_request case per abandoned call of an identified customer, and per
    call a queue limit promised a callback (then the caller's number will do)."""
    promised = str(context.abandon_reason or "").startswith("callback_offer")
    customer = None
    if context.account is not None or context.from_number:
        customer = await repository.abandoned_call_customer(tx, context.account,
                                                            context.from_number)
    account = None if customer is None else customer.account
    area = None if customer is None else customer.area
    if account is None and not (promised and context.from_number):
        return  # unidentified: nobody to owe a case to (the caller's number alone is no account)
    order, step = od.create(new_id("WO"), OrderType.CALLBACK_REQUEST, now=tx.now,
                            actor=SYSTEM_ACTOR, reason=f"abandoned call {context.call_id}")
    inserted = await insert_order(
        tx, order, actor=SYSTEM_ACTOR, call_id=None, account=account,
        contact_number=context.from_number, area=area,
        description=abandoned_call_description(context.call_id,
                                               str(context.abandon_reason or "")),
        category="abandoned_call",
        ivr_path=None if context.ivr_path is None else json.dumps(context.ivr_path),
        abandoned_call_id=context.call_id)
    if inserted is None:
        return  # already owed (the abandonment was heard twice, by ACD and CTI)
    audit(tx, step)
    await emit_ticket(tx, TicketCreated(
        order_id=order.order_id, type=order.type.value, call_id=None,
        customer_account=account, area=area,
    ), order_id=order.order_id, call_id=context.call_id)
    await start_work_round(tx, rt, inserted, SYSTEM_ACTOR)
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
