"""The shared transition table: a dict of legal (state, action) -> target, raising on the rest."""

from __future__ import annotations

from enum import StrEnum

import pytest

from shared.errors import IllegalTransition
from shared.transitions import Transitions


class Door(StrEnum):
    OPEN = "open"
    SHUT = "shut"
    LOCKED = "locked"


class Act(StrEnum):
    CLOSE = "close"
    LOCK = "lock"
    UNLOCK = "unlock"
    OPEN = "open"


TABLE = Transitions("door", {
    (Door.OPEN, Act.CLOSE): Door.SHUT,
    (Door.SHUT, Act.OPEN): Door.OPEN,
    (Door.SHUT, Act.LOCK): Door.LOCKED,
    (Door.LOCKED, Act.UNLOCK): Door.SHUT,
})


@pytest.mark.parametrize(("state", "action", "target"), [
    (Door.OPEN, Act.CLOSE, Door.SHUT),
    (Door.SHUT, Act.LOCK, Door.LOCKED),
    (Door.LOCKED, Act.UNLOCK, Door.SHUT),
])
def test_legal_actions_lead_to_their_target(state: Door, action: Act, target: Door) -> None:
    assert TABLE.target(state, action) is target


def test_an_illegal_action_names_what_is_allowed() -> None:
    with pytest.raises(IllegalTransition) as raised:
        TABLE.target(Door.OPEN, Act.LOCK, entity="door 7")
    assert str(raised.value) == "door 7 in state 'open' cannot lock"
    assert raised.value.allowed == ["close"]
    assert TABLE.allowed(Door.SHUT) == ["lock", "open"]
    assert TABLE.allowed(Door.SHUT, lambda action: action is not Act.LOCK) == ["open"]


def test_it_compares_as_the_plain_table_written_by_hand() -> None:
    assert {(Door.OPEN, Act.CLOSE): Door.SHUT, (Door.SHUT, Act.OPEN): Door.OPEN,
            (Door.SHUT, Act.LOCK): Door.LOCKED, (Door.LOCKED, Act.UNLOCK): Door.SHUT} == TABLE
