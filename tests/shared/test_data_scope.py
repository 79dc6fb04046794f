"""What each token reads of the floor's records."""

from __future__ import annotations

import pytest

from shared.auth import Principal
from shared.data_scope import data_scope, hide_personal, mask
from shared.errors import Forbidden


@pytest.mark.parametrize(("scopes", "grants", "agent", "personal", "audio"), [
    ({"admin"}, (), None, True, True),
    ({"service"}, (), None, True, True),
    ({"supervisor"}, (), None, True, True),
    ({"agent"}, (), "A001", True, True),
    ({"agent", "integrator"}, (), "A001", True, True),
    ({"integrator"}, (), None, False, False),
    ({"integrator"}, ("personal",), None, True, False),
    ({"integrator"}, ("audio", "personal"), None, True, True),
])
def test_the_scope_of_each_token(scopes: set[str], grants: tuple[str, ...], agent: str | None,
                                 personal: bool, audio: bool) -> None:
    scope = data_scope(Principal("A001", frozenset(scopes), frozenset(grants)))
    assert (scope.agent, scope.personal, scope.audio) == (agent, personal, audio)


def test_an_agent_reads_and_searches_its_own_records_only() -> None:
    scope = data_scope(Principal("A001", frozenset({"agent"})))
    scope.check_agent("A001", "calls")
    assert scope.agent_filter(None) == scope.agent_filter("A001") == "A001"
    for refused in (lambda: scope.check_agent("A002", "calls"),
                    lambda: scope.check_agent(None, "calls"),
                    lambda: scope.agent_filter("A002")):
        with pytest.raises(Forbidden):
            refused()


@pytest.mark.parametrize(("value", "masked"), [
    ("+8613800000001", "+*********0001"), ("138-1005-5433", "***-****-5433"), ("95598", "*5598"),
    ("12", "12"),
])
def test_mask_keeps_the_last_four_digits(value: str, masked: str) -> None:
    assert mask(value) == masked


def test_personal_fields_are_masked_wherever_they_are() -> None:
    record = {"name": "Zhang San", "numbers": ["+8613800000001"], "tier": "vip",
              "callbacks": [{"to_number": "+8613800000002", "state": "pending"}],
              "entry": {"from_number": "+8613800000003", "caller": None}}
    assert hide_personal(record) == {
        "name": "Z***", "numbers": ["+*********0001"], "tier": "vip",
        "callbacks": [{"to_number": "+*********0002", "state": "pending"}],
        "entry": {"from_number": "+*********0003", "caller": None}}
