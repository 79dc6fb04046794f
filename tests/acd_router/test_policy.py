"""The ACD's rules around routing (domain/policy.py), one table each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.acd_router.domain.config import VirtualHold
from services.acd_router.domain.policy import (
    ReleaseMeans,
    call_spec,
    green_channel,
    offers_virtual_hold,
    release_means,
    reservation_timeout,
    takes_virtual_hold_key,
    virtual_hold_number,
)
from services.acd_router.domain.queue import EntryState, QueueEntry
from shared.dialing import NumberPolicy
from shared.errors import Invalid

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OFFERED = VirtualHold(enabled=True, min_estimated_wait_seconds=120, digit="1")


def entry(state: EntryState = EntryState.WAITING, *, held: bool = False,
          dial: str | None = None, ended: bool = False, **fields: Any) -> QueueEntry:
    return QueueEntry(call_id="C1", queue="billing", enqueued_at=NOW, state=state,
                      callback_number="+8613800000001" if held else None,
                      callback_call_id=dial, ended_at=NOW if ended else None, **fields)


@pytest.mark.parametrize(("customer", "queue", "expected"), [
    ({"tier": "vip"}, "complaint", True),
    ({"tier": "vip"}, "billing", False),
    ({"tier": "regular"}, "complaint", False),
    ({"tier": "regular", "flags": ["green_channel"]}, "billing", True),
    ({}, "complaint", False),
])
def test_green_channel(customer: dict[str, Any], queue: str, expected: bool) -> None:
    assert green_channel(customer, queue) is expected


def test_call_spec_carries_the_rules_and_the_place() -> None:
    spec = call_spec(entry(customer={"tier": "vip", "account": "31",
                                     "flags": ["order_near_breach"]}, priority=3))
    assert (spec.vip, spec.green_channel, spec.near_breach, spec.customer, spec.priority) == (
        True, False, True, "31", 3)
    assert spec.arrived_at == NOW.timestamp()
    assert call_spec(entry(), restore=False).arrived_at is None


@pytest.mark.parametrize(("policy", "number", "reserved", "estimate", "expected"), [
    (OFFERED, "+861", False, 300.0, True),
    (OFFERED, "+861", False, None, True),  # nobody staffed: as long as it gets
    (OFFERED, "+861", False, 60.0, False),  # short wait
    (OFFERED, "+861", True, 300.0, False),  # an agent is ringing already
    (OFFERED, None, False, 300.0, False),  # no number to call back
    (VirtualHold(enabled=False), "+861", False, 300.0, False),
    (OFFERED, "+14155550100", False, 300.0, False),  # international: never dialled back
    (OFFERED, "+8619001234567", False, 300.0, False),  # premium rate
])
def test_virtual_hold_offer(policy: VirtualHold, number: str | None, reserved: bool,
                            estimate: float | None, expected: bool) -> None:
    assert offers_virtual_hold(policy, from_number=number, reserved=reserved,
                               estimate=estimate, numbers=NumberPolicy()) is expected


@pytest.mark.parametrize(("requested", "caller", "dialled"), [
    (None, "+8613800000001", "+8613800000001"),
    ("138 0000 0002", "+8613800000001", "+8613800000002"),
    ("\uff11\uff13\uff18\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff13", None,
     "+8613800000003"),  # full-width digits
    ("+86(1900)1234567", None, None),  # premium, however spelled (H4 of the review)
    ("+86.1900.1234567", "+8613800000001", None),
    ("+14155550100", None, None),
    ("not a number", None, None),
    (None, None, None),
])
def test_the_number_a_held_caller_is_called_back_on(requested: str | None, caller: str | None,
                                                    dialled: str | None) -> None:
    if dialled is None:
        with pytest.raises(Invalid):
            virtual_hold_number(requested, caller, NumberPolicy())
    else:
        assert virtual_hold_number(requested, caller, NumberPolicy()) == dialled


@pytest.mark.parametrize(("queued", "policy", "digits", "pressed", "expected"), [
    (entry(), OFFERED, "1", 5, True),
    (entry(), OFFERED, "1", 0, True),
    (entry(), OFFERED, "2", 5, False),
    (entry(held=True), OFFERED, "1", 5, False),
    (entry(EntryState.RESERVED), OFFERED, "1", 5, False),
    (None, OFFERED, "1", 5, False),
    (entry(), VirtualHold(enabled=False), "1", 5, False),
    # The menu's "1", pressed before the call was queued and heard late (R1: the router
    # was restarting), answers no offer.
    (entry(), OFFERED, "1", -2, False),
])
def test_virtual_hold_key(queued: QueueEntry | None, policy: VirtualHold, digits: str,
                          pressed: float, expected: bool) -> None:
    pressed_at = NOW + timedelta(seconds=pressed)
    assert takes_virtual_hold_key(queued, policy, digits, pressed_at) is expected


@pytest.mark.parametrize(("queued", "expected"), [
    (entry(), 30.0),
    (entry(held=True), 75.0),
])
def test_reservation_timeout(queued: QueueEntry, expected: float) -> None:
    assert reservation_timeout(queued, ring_seconds=30.0, dial_seconds=45.0) == expected


@pytest.mark.parametrize(("queued", "released", "expected"), [
    (entry(), "C1", ReleaseMeans.ABANDONED),
    (entry(EntryState.RESERVED), "C1", ReleaseMeans.ABANDONED_RINGING),
    (entry(EntryState.ANSWERED), "C1", ReleaseMeans.CALL_ENDED),
    (entry(EntryState.ANSWERED, ended=True), "C1", ReleaseMeans.STALE),
    (entry(EntryState.ABANDONED), "C1", ReleaseMeans.STALE),
    (entry(), "C2", ReleaseMeans.OTHER_CALL),
    # Virtual hold: the inbound caller hanging up is not the entry's call any more ...
    (entry(held=True, dial="D1"), "C1", ReleaseMeans.OTHER_CALL),
    # ... the agent-first dial is: unanswered by the agent, the caller keeps the place;
    (entry(held=True, dial="D1"), "D1", ReleaseMeans.STILL_HELD),
    # the customer not answering the dial while reserved is an abandonment.
    (entry(EntryState.RESERVED, held=True, dial="D1"), "D1", ReleaseMeans.ABANDONED_RINGING),
])
def test_what_a_release_means_for_the_entry(queued: QueueEntry, released: str,
                                            expected: ReleaseMeans) -> None:
    assert release_means(queued, released) is expected
