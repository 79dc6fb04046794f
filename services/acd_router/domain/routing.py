"""The routing core: waiting calls and agents in, decisions out.

Pure and deterministic so that later strategies (skill-level scoring, team affinity,
overflow) slot in as another :class:`Strategy` and can be tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .agents import Agent, AgentState
from .queue import EntryState, QueueEntry

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Decision:
    call_id: str
    agent_id: str
    queue: str


class Strategy(Protocol):
    name: str

    def pick(self, entry: QueueEntry, candidates: Sequence[Agent]) -> Agent | None: ...


class LongestIdle:
    name = "longest_idle"

    def pick(self, entry: QueueEntry, candidates: Sequence[Agent]) -> Agent | None:
        if not candidates:
            return None
        return min(candidates, key=lambda agent: (agent.ready_since or _NEVER, agent.agent_id))


LONGEST_IDLE = LongestIdle()


def can_serve(agent: Agent, entry: QueueEntry) -> bool:
    """A ready agent holding the queue's skill (queues are named like their skill)."""
    return agent.state is AgentState.READY and agent.skills.get(entry.queue, 0) >= 1


def match(entries: Iterable[QueueEntry], agents: Iterable[Agent],
          strategy: Strategy = LONGEST_IDLE) -> list[Decision]:
    """Assign ready agents to waiting calls.

    Calls are served across all queues in one order (priority, then arrival), which keeps
    each queue's own order and stops a busy queue starving a quieter one that shares agents.
    Each agent gets at most one call per round.
    """
    waiting = sorted((e for e in entries if e.state is EntryState.WAITING),
                     key=QueueEntry.routing_order)
    free = {agent.agent_id: agent for agent in agents if agent.state is AgentState.READY}
    decisions: list[Decision] = []
    for entry in waiting:
        if not free:
            break
        chosen = strategy.pick(entry, [a for a in free.values() if can_serve(a, entry)])
        if chosen is not None:
            decisions.append(Decision(entry.call_id, chosen.agent_id, entry.queue))
            del free[chosen.agent_id]
    return decisions
