"""Intake and settlement rules (domain/intake.py), one table each."""

from __future__ import annotations

from typing import Any

import pytest

from services.workorder.domain.callbacks import CallbackState
from services.workorder.domain.intake import (
    CustomerOnFile,
    intake_area,
    may_join,
    outage_of_new_order,
    owed_callback,
    settlement,
)
from services.workorder.domain.orders import OrderType
from shared.errors import Invalid

KNOWN = CustomerOnFile(area="A-017", first_number="+8613800000001")
NO_NUMBER = CustomerOnFile(area="A-017", first_number=None)


@pytest.mark.parametrize(("request_", "customer", "expected"), [
    # the request's area wins; the customer's fills in
    ({"area": "A-001", "account": "31", "contact_number": None}, KNOWN, "A-001"),
    ({"area": None, "account": "31", "contact_number": None}, KNOWN, "A-017"),
    # a number given is enough when the record has none
    ({"area": None, "account": "31", "contact_number": "+861"}, NO_NUMBER, "A-017"),
    # no account: only the number and the given area
    ({"area": None, "account": None, "contact_number": "+861"}, None, None),
    ({"area": "A-009", "account": None, "contact_number": "+861"}, None, "A-009"),
])
def test_intake_area(request_: dict[str, Any], customer: CustomerOnFile | None,
                     expected: str | None) -> None:
    assert intake_area(**request_, customer=customer) == expected


@pytest.mark.parametrize(("request_", "customer", "field"), [
    ({"area": None, "account": None, "contact_number": None}, None, "contact_number"),
    ({"area": None, "account": "99", "contact_number": None}, None, "customer_account"),
    ({"area": None, "account": "31", "contact_number": None}, NO_NUMBER, "contact_number"),
])
def test_intake_refuses(request_: dict[str, Any], customer: CustomerOnFile | None,
                        field: str) -> None:
    with pytest.raises(Invalid) as refused:
        intake_area(**request_, customer=customer)
    assert refused.value.field == field


@pytest.mark.parametrize(("order_type", "area", "standalone", "expected"), [
    (OrderType.REPAIR, "A-017", False, True),
    (OrderType.REPAIR, "A-017", True, False),
    (OrderType.REPAIR, None, False, False),
    (OrderType.COMPLAINT, "A-017", False, False),
])
def test_may_join(order_type: OrderType, area: str | None, standalone: bool,
                  expected: bool) -> None:
    assert may_join(order_type, area, standalone=standalone) is expected


def test_a_new_order_stands_for_the_oldest_active_outage() -> None:
    assert outage_of_new_order(["OUT1", "OUT2"]) == "OUT1"
    assert outage_of_new_order([]) is None


S = CallbackState


@pytest.mark.parametrize(("callbacks", "expected"), [
    ([(S.COMPLETED, "satisfied")], "satisfied"),
    ([(S.COMPLETED, "satisfied"), (S.COMPLETED, "neutral")], "neutral"),
    ([(S.COMPLETED, "satisfied"), (S.UNREACHABLE, "unreachable")], "unreachable"),
    ([(S.UNREACHABLE, "unreachable"), (S.COMPLETED, "dissatisfied")], "dissatisfied"),
    # another reporter still to be called back: not settled yet
    ([(S.COMPLETED, "satisfied"), (S.PENDING, None)], None),
    ([(S.COMPLETED, "dissatisfied"), (S.DIALING, None)], None),
])
def test_settlement(callbacks: list[tuple[CallbackState, str | None]],
                    expected: str | None) -> None:
    assert settlement(callbacks) == expected


@pytest.mark.parametrize(("cause", "state", "expected"), [
    ("caller_hangup", "queued", True),
    ("caller_hangup", "alerting", True),
    ("caller_hangup", "in_ivr", False),  # left the menu: self-service, not a wait
    ("caller_hangup", "connected", False),
    ("agent_release", "queued", False),
    # The switch died under the caller, wherever they were (R9).
    ("switch_lost", "in_ivr", True),
    ("switch_lost", "queued", True),
    ("switch_lost", "connected", True),
    ("switch_lost", "offered", False),  # not yet answered: the caller heard nothing of us
])
def test_who_is_owed_a_callback_when_a_call_ends(cause: str, state: str,
                                                  expected: bool) -> None:
    assert owed_callback(cause, state) is expected
