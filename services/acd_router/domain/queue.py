"""Queue entries: a routed call waiting for (or reserved to, or answered by) an agent.

One queue per skill, named like it. An entry's ``enqueued_at`` never changes, so a call whose
reservation falls through goes back to its original place in line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.errors import IllegalTransition
from shared.transitions import Transitions


class EntryState(StrEnum):
    WAITING = "waiting"
    RESERVED = "reserved"
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    # Turned away by a queue limit (closed, nobody staffed, full, waited too long).
    REJECTED = "rejected"


class EntryAction(StrEnum):
    RESERVE = "reserve"
    REQUEUE = "requeue"
    ANSWER = "answer"
    ABANDON = "abandon"
    REJECT = "reject"


E, X = EntryState, EntryAction

ENTRY_TRANSITIONS: Transitions[EntryState, EntryAction, EntryState] = Transitions("call", {
    (E.WAITING, X.RESERVE): E.RESERVED,
    (E.WAITING, X.ABANDON): E.ABANDONED,
    (E.RESERVED, X.REQUEUE): E.WAITING,
    (E.RESERVED, X.ANSWER): E.ANSWERED,
    (E.RESERVED, X.ABANDON): E.ABANDONED,
    (E.WAITING, X.REJECT): E.REJECTED,
})

# Queue and skill names appear in URLs (/v1/queues/{queue}) and in the 64-character columns.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


# Entries still in a queue (the rest are history kept for GET /calls).
LIVE_STATES = frozenset({EntryState.WAITING, EntryState.RESERVED})


def allowed_entry_actions(state: EntryState) -> list[str]:
    return ENTRY_TRANSITIONS.allowed(state)


@dataclass
class QueueEntry:
    call_id: str
    queue: str
    enqueued_at: datetime
    priority: int = 0
    state: EntryState = EntryState.WAITING
    skills: list[str] = field(default_factory=list)
    customer: dict[str, Any] | None = None
    from_number: str | None = None
    agent_id: str | None = None
    reservation_id: str | None = None
    reservation_expires_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    ring_failures: int = 0
    outcome_reason: str | None = None
    # Virtual hold: the number to call back (the caller has hung up; the entry keeps its
    # place), and the outbound call of the current agent-first dial.
    callback_number: str | None = None
    callback_call_id: str | None = None
    callback_dials: int = 0

    @property
    def waiting(self) -> bool:
        """In the queue for an agent (not reserved, answered or ended)."""
        return self.state is EntryState.WAITING

    @property
    def on_virtual_hold(self) -> bool:
        return self.callback_number is not None

    def hold_virtually(self, number: str) -> None:
        """The caller leaves a callback request and keeps their place: only while waiting,
        and only once."""
        if self.state is not EntryState.WAITING or self.on_virtual_hold:
            raise IllegalTransition(f"call {self.call_id}", self.state.value,
                                    "be put on virtual hold" + (" again" if self.on_virtual_hold
                                                                 else ""),
                                    allowed_entry_actions(self.state))
        self.callback_number = number

    def next_dial(self) -> str:
        """The id of the outbound call for the next agent-first dial of a held caller."""
        self.callback_dials += 1
        self.callback_call_id = f"{self.call_id}.vh{self.callback_dials}"
        return self.callback_call_id

    @property
    def live_call_id(self) -> str | None:
        """The call this entry is about now: the inbound call, or on virtual hold the current
        agent-first dial (None before the first; the inbound caller has gone)."""
        return self.callback_call_id if self.on_virtual_hold else self.call_id

    def routing_order(self) -> tuple[int, datetime, str]:
        """VIP (higher priority) first, then first come first served."""
        return (-self.priority, self.enqueued_at, self.call_id)

    def reserve(self, now: datetime, *, agent_id: str, reservation_id: str,
                timeout_seconds: float) -> None:
        self._apply(EntryAction.RESERVE)
        self.agent_id = agent_id
        self.reservation_id = reservation_id
        self.reservation_expires_at = now + timedelta(seconds=timeout_seconds)

    def requeue(self, *, ring_failed: bool = True) -> None:
        self._apply(EntryAction.REQUEUE)
        self.agent_id = self.reservation_id = self.reservation_expires_at = None
        if ring_failed:
            self.ring_failures += 1

    def answer(self, now: datetime) -> None:
        self._apply(EntryAction.ANSWER)
        self.answered_at = now
        self.reservation_expires_at = None

    def abandon(self, now: datetime) -> float:
        """Returns how long the caller waited, in seconds."""
        self._apply(EntryAction.ABANDON)
        self.ended_at = now
        self.reservation_expires_at = None
        return self.waited_seconds(now)

    def withdraw(self, now: datetime, reason: str) -> None:
        """An operator takes a waiting call out of the queue (a replay's leftovers, a held
        caller's callback nobody should make any more): it ends as abandoned, with why."""
        if self.state is not EntryState.WAITING:
            raise IllegalTransition(f"call {self.call_id}", self.state.value, "be withdrawn",
                                    allowed_entry_actions(self.state))
        self.abandon(now)
        self.outcome_reason = f"withdrawn: {reason}"

    def reject(self, now: datetime, reason: str) -> None:
        self._apply(EntryAction.REJECT)
        self.ended_at = now
        self.outcome_reason = reason

    def finish(self, now: datetime) -> None:
        """The answered call was released; the entry stays ``answered`` as history."""
        if self.state is not EntryState.ANSWERED:
            raise IllegalTransition(f"call {self.call_id}", self.state.value, "finish", [])
        self.ended_at = now

    def waited_seconds(self, now: datetime) -> float:
        until = self.answered_at or self.ended_at or now
        return max(0.0, (until - self.enqueued_at).total_seconds())

    def reservation_due(self, now: datetime) -> bool:
        return (self.state is EntryState.RESERVED and self.reservation_expires_at is not None
                and self.reservation_expires_at <= now)

    def holds(self, reservation_id: str | None, agent_id: str | None = None) -> bool:
        """Whether this entry is currently reserved under that reservation (events naming an
        older one are stale). Without a reservation id, the agent must match."""
        if self.state is not EntryState.RESERVED:
            return False
        if reservation_id is not None:
            return reservation_id == self.reservation_id
        return agent_id is not None and agent_id == self.agent_id

    def _apply(self, action: EntryAction) -> None:
        self.state = ENTRY_TRANSITIONS.target(self.state, action, entity=f"call {self.call_id}")


def position(entry: QueueEntry, entries: Iterable[QueueEntry]) -> int:
    """1-based place among the calls waiting in the entry's queue."""
    mine = entry.routing_order()
    return 1 + sum(1 for other in entries
                   if other.queue == entry.queue and other.state is EntryState.WAITING
                   and other.call_id != entry.call_id and other.routing_order() < mine)


def estimate_wait(position: int, *, ready_agents: int, staffed_agents: int,
                  handle_seconds: float) -> float | None:
    """A deliberately simple estimate: calls ahead beyond the free agents, each taking one
    average handle time shared across the staffed agents. None when nobody is staffed."""
    if staffed_agents <= 0:
        return None
    ahead = max(0, position - ready_agents)
    return round(ahead * handle_seconds / staffed_agents, 1)
