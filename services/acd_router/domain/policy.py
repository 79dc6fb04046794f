"""The ACD's rules around routing, each a pure function of the facts a handler gathers: who
gets the green channel, when virtual hold is offered and when a key press takes it, how long
a reservation holds, and what a call's release means for its queue entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.dialing import NumberPolicy, denied, normalized
from shared.errors import Invalid

from .config import VirtualHold
from .engine import CallSpec
from .queue import EntryState, QueueEntry


def ts(moment: datetime) -> float:
    """The engine's clock: seconds since the epoch."""
    return moment.timestamp()


def green_channel(customer: Mapping[str, Any], queue: str) -> bool:
    """DESIGN 8: a VIP's complaint takes the green channel, and so does a caller the IVR or
    the directory flagged for it."""
    flags = set(customer.get("flags") or [])
    return "green_channel" in flags or (customer.get("tier") == "vip" and queue == "complaint")


def call_spec(entry: QueueEntry, *, restore: bool = True) -> CallSpec:
    """What routing needs of a queue entry. An open order near breach arrives as a customer
    flag. A new call (``restore`` false) goes through the arrival limits; a restored one
    keeps its place."""
    customer = entry.customer or {}
    flags = set(customer.get("flags") or [])
    return CallSpec(
        id=entry.call_id, queue=entry.queue, vip=customer.get("tier") == "vip",
        green_channel=green_channel(customer, entry.queue),
        near_breach="near_breach" in flags or "order_near_breach" in flags,
        priority=entry.priority, customer=customer.get("account"),
        arrived_at=ts(entry.enqueued_at) if restore else None)


def long_wait(policy: VirtualHold, estimate: float | None) -> bool:
    """Whether the wait is long enough to offer virtual hold (unknown counts as long: nobody
    is staffed)."""
    return estimate is None or estimate >= policy.min_estimated_wait_seconds


def offers_virtual_hold(policy: VirtualHold, *, from_number: str | None, reserved: bool,
                        estimate: float | None, numbers: NumberPolicy) -> bool:
    """Announce the virtual-hold digit to a caller just queued: the queue offers it, there
    is a number the suite may call back, no agent was reserved at once, and the wait is
    long."""
    return (policy.enabled and from_number is not None and denied(from_number, numbers) is None
            and not reserved and long_wait(policy, estimate))


def virtual_hold_number(requested: str | None, caller: str | None,
                        numbers: NumberPolicy) -> str:
    """The number a held caller is called back on, as it is dialled (E.164): the one given,
    else the caller's. The suite's number policy applies as to every outbound dial: an
    international, premium-rate or malformed number is refused, however it is spelled."""
    number = requested or caller
    if not number:
        raise Invalid("number", "the caller's number is unknown: give one to call back")
    reason = denied(number, numbers)
    dialled = normalized(number, numbers)
    if reason is not None or dialled is None:
        raise Invalid("number", f"this number may not be dialled back ({reason})")
    return dialled


def takes_virtual_hold_key(entry: QueueEntry | None, policy: VirtualHold, digits: str,
                           pressed_at: datetime) -> bool:
    """A key pressed in the queue asks for virtual hold: the call is waiting (not already
    held), it is the queue's digit, and it was pressed once the call was in the queue (a
    menu digit pressed before, and heard late, answers no offer). Whether the wait is still
    long is checked by the request itself."""
    return (entry is not None and entry.state is EntryState.WAITING
            and not entry.on_virtual_hold and policy.enabled and digits == policy.digit
            and pressed_at >= entry.enqueued_at)


def reservation_timeout(entry: QueueEntry, *, ring_seconds: float,
                        dial_seconds: float) -> float:
    """How long a reservation holds: the agent's ring, and for a caller on virtual hold the
    customer's dial after it (the agent is rung first on a new outbound call)."""
    return ring_seconds + (dial_seconds if entry.on_virtual_hold else 0.0)


class ReleaseMeans(StrEnum):
    """What a call's release means for its queue entry."""

    OTHER_CALL = "other_call"  # a call the entry no longer waits on (a held caller, an old dial)
    STILL_HELD = "still_held"  # the dial's agent did not answer: the caller keeps their place
    ABANDONED = "abandoned"  # the caller gave up waiting
    ABANDONED_RINGING = "abandoned_ringing"  # gone while an agent rang (or the dial failed)
    CALL_ENDED = "call_ended"  # the conversation is over: the agent goes to wrap-up
    STALE = "stale"  # the entry already ended


def release_means(entry: QueueEntry, released_call_id: str) -> ReleaseMeans:
    if released_call_id != entry.live_call_id:
        return ReleaseMeans.OTHER_CALL
    if entry.state is EntryState.WAITING:
        return ReleaseMeans.STILL_HELD if entry.on_virtual_hold else ReleaseMeans.ABANDONED
    if entry.state is EntryState.RESERVED:
        return ReleaseMeans.ABANDONED_RINGING
    if entry.state is EntryState.ANSWERED and entry.ended_at is None:
        return ReleaseMeans.CALL_ENDED
    return ReleaseMeans.STALE
