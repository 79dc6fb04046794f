"""A state machine's transition table, in the format cti_gateway's call set: one entry per
legal (state, action), mapped to the target state; anything else is illegal.

    TRANSITIONS = Transitions("call", {
        (CallState.OFFERED, Action.ANSWER): CallState.IN_IVR,
        ...
    })
    call.state = TRANSITIONS.target(call.state, Action.ANSWER)   # raises if not legal

It is a dict, so tests compare it with a table written out by hand. Plain code (domain cores
use it): no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Generic, TypeVar

from shared.errors import IllegalTransition

S = TypeVar("S", bound=Enum)
A = TypeVar("A", bound=Enum)
T = TypeVar("T")


class Transitions(dict[tuple[S, A], T], Generic[S, A, T]):
    def __init__(self, entity: str, edges: Mapping[tuple[S, A], T]) -> None:
        super().__init__(edges)
        self.entity = entity

    def allowed(self, state: S, permitted: Callable[[A], bool] | None = None) -> list[str]:
        """The actions legal from ``state`` (those ``permitted`` keeps), sorted by value."""
        return sorted(str(action.value) for (source, action) in self
                      if source is state and (permitted is None or permitted(action)))

    def target(self, state: S, action: A, *, entity: str | None = None) -> T:
        """Where ``action`` leads from ``state``; :class:`IllegalTransition` (naming the
        actions that are legal) if the table has no such entry."""
        if (state, action) not in self:
            raise IllegalTransition(entity or self.entity, str(state.value), str(action.value),
                                    self.allowed(state))
        return self[(state, action)]
