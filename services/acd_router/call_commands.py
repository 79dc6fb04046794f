"""Commands on a waiting call: virtual hold (the caller keeps their place and is called
back), and an operator's withdrawal."""

from __future__ import annotations

import uuid

import structlog

from shared.errors import Conflict, NotFound
from shared.events.acd import (
    RoutingDecided,
    VirtualHoldStarted,
)
from shared.messaging import Transaction

from .domain import (
    QueueEntry,
)
from .domain.policy import (
    long_wait,
    ts,
    virtual_hold_number,
)
from .mirror import Acd

log = structlog.get_logger(__name__)


async def virtual_hold(acd: Acd, tx: Transaction, call_id: str, number: str | None
                       ) -> VirtualHoldStarted:
    """The caller leaves a callback request and keeps their place (REST, or the queue's
    digit pressed while waiting). Refused unless the call waits in a queue that offers
    virtual hold and its estimated wait has reached the queue's threshold."""
    await acd.lock(tx)
    now = tx.now
    entry = await acd.floor.entry(tx, call_id)
    if entry is None:
        raise NotFound("call", call_id)
    policy = acd.virtual_hold_policy(entry.queue)
    if not policy.enabled:
        raise Conflict(f"queue {entry.queue} does not offer virtual hold")
    number = virtual_hold_number(number, entry.from_number, acd.numbers)
    entry.hold_virtually(number)
    estimate = acd.engine.estimated_wait(call_id, ts(now))
    if not long_wait(policy, estimate):
        raise Conflict(f"estimated wait {estimate} s is below queue {entry.queue}'s "
                       f"virtual hold threshold of {policy.min_estimated_wait_seconds} s")
    acd.floor.save_entry(tx, entry)
    held = VirtualHoldStarted(
        call_id=call_id, queue=entry.queue, number=number,
        position=acd.engine.position(call_id, ts(now)), estimated_wait_seconds=estimate,
        announcement=policy.announcement)
    await tx.emit(held, subject=f"call/{call_id}", correlationid=call_id)
    await acd.apply_decisions(tx)
    return held


async def withdraw(acd: Acd, tx: Transaction, call_id: str, reason: str) -> QueueEntry:
    """Take a waiting call out of routing for good (an operator's clean-up). Recorded as a
    routing outcome; no abandonment event, so nobody is owed a callback for it."""
    await acd.lock(tx)
    entry = await acd.floor.entry(tx, call_id)
    if entry is None:
        raise NotFound("call", call_id)
    entry.withdraw(tx.now, reason)
    acd.floor.save_entry(tx, entry)
    acd.engine.call_left(call_id, ts(tx.now))
    acd.floor.record_outcome(
        tx, decision_id=f"withdrawn:{uuid.uuid4()}", call_id=call_id,
        queue=entry.queue, kind="withdrawn", rule="operator", step=0, reason=reason,
        explanation={"reason": reason}, now=tx.now)
    await tx.emit(RoutingDecided(call_id=call_id, queue=entry.queue, kind="withdrawn",
                                 explanation={"reason": reason}),
                  subject=f"call/{call_id}", correlationid=call_id)
    await acd.apply_decisions(tx)
    return entry
