"""The routing core the simulator drives, behind a small protocol of its own.

The simulator speaks :class:`Router`; ``engine_adapter.make_router`` gives it the ACD's real incremental
engine (``services.acd_router.domain.engine``: the same code the service runs, not a copy).
:class:`FifoRouter` is a deliberately small independent implementation of the default policy
(score = VIP credit + time waited, FIFO within equal scores, longest-idle agent) kept as a
test oracle: where both apply, they must agree.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Protocol

RESERVED, OVERFLOWED, CALLBACK, RELEASED = "reserved", "overflowed", "callback", "released"


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the router decided for a call: ``reserved`` (``agent_id`` rings; the call left
    the waiting line), ``overflowed`` (still waiting, in ``queue``), or ``callback`` /
    ``released`` (a queue limit turned the caller away)."""

    call_id: str
    agent_id: str | None
    kind: str = RESERVED
    queue: str | None = None


class Router(Protocol):
    name: str

    def agent_logged_in(self, agent_id: str, skills: dict[str, int], team: str | None,
                        department: str | None, now: float) -> None: ...

    def agent_logged_out(self, agent_id: str, now: float) -> None: ...

    def agent_ready(self, agent_id: str, now: float, since: float | None = None
                    ) -> list[Assignment]: ...

    def agent_busy(self, agent_id: str, now: float) -> None: ...

    def call_arrived(self, call_id: str, queue: str, vip: bool, customer: str | None,
                     now: float) -> list[Assignment]: ...

    def call_left(self, call_id: str, now: float) -> None: ...

    def call_answered(self, call_id: str, agent_id: str, now: float) -> None: ...

    def call_finished(self, agent_id: str, talk: float, now: float) -> None: ...

    def tick(self, now: float) -> list[Assignment]: ...

    def next_deadline(self) -> float | None: ...


class FifoRouter:
    """Single-level skills, one credit for VIPs, longest-idle agent; every queue is served by
    the agents holding the skill of the same name (as the ACD names its queues)."""

    name = "fifo-oracle"

    def __init__(self, vip_credit: float = 90.0) -> None:
        self.vip_credit = vip_credit
        self._seq = itertools.count()
        # Per queue: heap of (effective arrival, seq, call id); removed calls are skipped.
        self._waiting: dict[str, list[tuple[float, int, str]]] = {}
        self._live: dict[str, str] = {}            # waiting call id -> queue
        self._skills: dict[str, dict[str, int]] = {}
        # Ready agents in the order they became ready: dicts keep insertion order, and the
        # clock only moves forward, so the first one able to serve is the longest idle.
        self._ready: dict[str, None] = {}

    def agent_logged_in(self, agent_id: str, skills: dict[str, int], team: str | None,
                        department: str | None, now: float) -> None:
        self._skills[agent_id] = dict(skills)

    def agent_logged_out(self, agent_id: str, now: float) -> None:
        self._ready.pop(agent_id, None)
        self._skills.pop(agent_id, None)

    def agent_busy(self, agent_id: str, now: float) -> None:
        self._ready.pop(agent_id, None)

    def agent_ready(self, agent_id: str, now: float, since: float | None = None
                    ) -> list[Assignment]:
        # Idle order is arrival order in ``_ready``; ``since`` (a cancelled reservation
        # keeps its idle start) is approximated by the back of the line here.
        best: tuple[float, int, str] | None = None
        best_queue = ""
        for queue in self._skills[agent_id]:
            heap = self._waiting.get(queue)
            while heap and self._live.get(heap[0][2]) != queue:
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best):
                best, best_queue = heap[0], queue
        if best is None:
            self._ready[agent_id] = None
            return []
        heapq.heappop(self._waiting[best_queue])
        del self._live[best[2]]
        return [Assignment(best[2], agent_id)]

    def call_arrived(self, call_id: str, queue: str, vip: bool, customer: str | None,
                     now: float) -> list[Assignment]:
        for agent_id in self._ready:
            if self._skills[agent_id].get(queue, 0) >= 1:
                del self._ready[agent_id]
                return [Assignment(call_id, agent_id)]
        key = now - (self.vip_credit if vip else 0.0)
        heapq.heappush(self._waiting.setdefault(queue, []), (key, next(self._seq), call_id))
        self._live[call_id] = queue
        return []

    def call_left(self, call_id: str, now: float) -> None:
        self._live.pop(call_id, None)

    def call_answered(self, call_id: str, agent_id: str, now: float) -> None:
        return None

    def call_finished(self, agent_id: str, talk: float, now: float) -> None:
        return None

    def tick(self, now: float) -> list[Assignment]:
        return []

    def next_deadline(self) -> float | None:
        return None
