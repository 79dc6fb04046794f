"""Queue entries and the matcher: VIP first, FIFO, longest idle, skill filter."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.acd_router.domain import (
    Agent,
    AgentState,
    Decision,
    EntryState,
    QueueEntry,
    estimate_wait,
    match,
    position,
)
from services.acd_router.domain.queue import ENTRY_TRANSITIONS, EntryAction
from shared.errors import IllegalTransition

T0 = datetime(2026, 7, 15, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def call(call_id: str, *, queue: str = "repair", priority: int = 0, enqueued: float = 0,
         state: EntryState = EntryState.WAITING) -> QueueEntry:
    return QueueEntry(call_id=call_id, queue=queue, enqueued_at=at(enqueued), priority=priority,
                      state=state)


def agent(agent_id: str, *, idle_since: float = 0, skills: dict[str, int] | None = None,
          state: AgentState = AgentState.READY) -> Agent:
    return Agent(agent_id=agent_id, state=state, skills=skills or {"repair": 5},
                 ready_since=at(idle_since) if state is AgentState.READY else None)


def test_vip_first() -> None:
    calls = [call("C1", enqueued=0), call("C2", priority=10, enqueued=30)]
    assert match(calls, [agent("A1")]) == [Decision("C2", "A1", "repair")]


def test_fifo_within_equal_priority() -> None:
    calls = [call("C2", enqueued=5), call("C1", enqueued=1), call("C3", enqueued=9)]
    decisions = match(calls, [agent("A1"), agent("A2", idle_since=1)])
    assert [d.call_id for d in decisions] == ["C1", "C2"]


def test_longest_idle_agent_wins() -> None:
    agents = [agent("A1", idle_since=50), agent("A2", idle_since=10), agent("A3", idle_since=30)]
    assert match([call("C1")], agents) == [Decision("C1", "A2", "repair")]
    decisions = match([call("C1"), call("C2", enqueued=1), call("C3", enqueued=2)], agents)
    assert [(d.call_id, d.agent_id) for d in decisions] == [("C1", "A2"), ("C2", "A3"),
                                                            ("C3", "A1")]


def test_skill_filter() -> None:
    agents = [agent("A1", idle_since=0, skills={"billing": 9}),
              agent("A2", idle_since=20, skills={"repair": 1, "billing": 3})]
    assert match([call("C1")], agents) == [Decision("C1", "A2", "repair")]
    assert match([call("C1", queue="complaint")], agents) == []


def test_only_ready_agents_and_waiting_calls() -> None:
    agents = [agent("A1", state=s) for s in AgentState if s is not AgentState.READY]
    assert match([call("C1")], agents) == []
    calls = [call("C1", state=s) for s in EntryState if s is not EntryState.WAITING]
    assert match(calls, [agent("A1")]) == []


def test_each_agent_gets_one_call_and_queues_share_agents_in_global_order() -> None:
    agents = [agent("A1", skills={"repair": 5, "billing": 5})]
    calls = [call("B1", queue="billing", enqueued=0), call("R1", queue="repair", enqueued=3)]
    assert match(calls, agents) == [Decision("B1", "A1", "billing")]


def test_skipped_call_does_not_block_a_later_one() -> None:
    agents = [agent("A1", skills={"billing": 5})]
    calls = [call("R1", queue="repair", enqueued=0), call("B1", queue="billing", enqueued=3)]
    assert match(calls, agents) == [Decision("B1", "A1", "billing")]


def test_position_and_estimate() -> None:
    waiting = [call("C1", enqueued=0), call("C2", enqueued=5), call("V1", priority=9, enqueued=9),
               call("X1", queue="billing", enqueued=0)]
    assert [position(c, waiting) for c in waiting] == [2, 3, 1, 1]
    assert estimate_wait(3, ready_agents=0, staffed_agents=2, handle_seconds=180) == 270.0
    assert estimate_wait(1, ready_agents=1, staffed_agents=2, handle_seconds=180) == 0.0
    assert estimate_wait(1, ready_agents=0, staffed_agents=0, handle_seconds=180) is None


ENTRY_EXPECTED = {
    (EntryState.WAITING, EntryAction.RESERVE): EntryState.RESERVED,
    (EntryState.WAITING, EntryAction.ABANDON): EntryState.ABANDONED,
    (EntryState.RESERVED, EntryAction.REQUEUE): EntryState.WAITING,
    (EntryState.RESERVED, EntryAction.ANSWER): EntryState.ANSWERED,
    (EntryState.RESERVED, EntryAction.ABANDON): EntryState.ABANDONED,
    (EntryState.WAITING, EntryAction.REJECT): EntryState.REJECTED,
}


def test_entry_table() -> None:
    assert ENTRY_EXPECTED == ENTRY_TRANSITIONS


@pytest.mark.parametrize(("state", "action"), list(itertools.product(EntryState, EntryAction)),
                         ids=lambda v: v.value)
def test_every_entry_state_and_action(state: EntryState, action: EntryAction) -> None:
    entry = call("C1", state=state)
    if state is EntryState.RESERVED:
        entry.agent_id, entry.reservation_id = "A1", "R1"
        entry.reservation_expires_at = at(30)
    run = {
        EntryAction.RESERVE: lambda: entry.reserve(at(10), agent_id="A1", reservation_id="R2",
                                                   timeout_seconds=30),
        EntryAction.REQUEUE: entry.requeue,
        EntryAction.ANSWER: lambda: entry.answer(at(10)),
        EntryAction.ABANDON: lambda: entry.abandon(at(10)),
        EntryAction.REJECT: lambda: entry.reject(at(10), "closed"),
    }[action]
    expected = ENTRY_EXPECTED.get((state, action))
    if expected is None:
        with pytest.raises(IllegalTransition):
            run()
        assert entry.state is state
    else:
        run()
        assert entry.state is expected
        assert entry.enqueued_at == T0  # a requeued call keeps its place


def test_entry_reservation_bookkeeping() -> None:
    entry = call("C1")
    entry.reserve(at(10), agent_id="A1", reservation_id="R1", timeout_seconds=30)
    assert entry.reservation_expires_at == at(40)
    assert not entry.reservation_due(at(39)) and entry.reservation_due(at(40))
    assert entry.holds("R1") and not entry.holds("R0") and entry.holds(None, "A1")
    entry.requeue()
    assert (entry.agent_id, entry.reservation_id, entry.ring_failures) == (None, None, 1)
    assert not entry.holds("R1")
    assert entry.abandon(at(75)) == 75.0
