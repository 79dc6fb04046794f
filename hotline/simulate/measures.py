"""The service measures (DESIGN §8) over simulated calls.

The definitions are ``shared.measures`` (the same ones the ACD's real-time statistics and the
replay report use); this module only maps simulator records onto them and adds what only a
simulation has (self-served and turned-away counts, P(wait)).

- offered: calls that arrived; offered_to_queue: those the IVR handed to a queue.
- answered / abandoned: queued calls an agent answered / whose caller hung up in queue
  (or while the agent's phone rang). Short abandons: hung up within 5 s of queueing.
- wait: from joining the queue to the agent answering (answered) or hanging up (abandoned).
- service level (20 s): answered within 20 s / (offered to queue - short abandons).
- ASA: mean wait of answered calls. Mean wait: over answered and abandoned calls alike
  (what Erlang A calls E[W]). Longest wait: over both.
- P(wait): share of queued calls not given an agent at the instant they queued (the
  Erlang C quantity; ring time is not counted as waiting for an agent here).
- turned away: a queue limit (closed, no agents, full, maximum wait) offered a callback or
  released the call; unserved: still waiting when nothing else was left to happen.
- abandon rate: abandoned / offered to queue. Answer rate: answered / offered to queue.
- AHT: mean talk + wrap-up of answered calls (the simulator has no hold).
- occupancy: agent time reserved, talking or wrapping up / agent time logged in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from shared.measures import (
    SERVICE_LEVEL_SECONDS,
    SHORT_ABANDON_SECONDS,
    CallFacts,
    Counters,
    measures,
    ratio,
)

from .model import CallRecord

__all__ = ["SERVICE_LEVEL_SECONDS", "SHORT_ABANDON_SECONDS", "Measures", "compute_measures"]


@dataclass(frozen=True)
class Measures:
    offered: int
    offered_to_queue: int
    answered: int
    abandoned: int
    short_abandons: int
    self_served: int
    turned_away: int             # a queue limit offered a callback or released the call
    unserved: int                # still waiting when the simulation ran out of events
    service_level: float | None
    asa: float | None
    mean_wait: float | None
    longest_wait: float | None
    p_wait: float | None
    answer_rate: float | None
    abandon_rate: float | None
    aht: float | None
    occupancy: float | None
    service_level_threshold: float = SERVICE_LEVEL_SECONDS

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {key: (round(value, digits) if isinstance(value, float) else value)
                for key, value in asdict(self).items()}


def compute_measures(records: Iterable[CallRecord], *, busy_seconds: float | None = None,
                     staffed_seconds: float | None = None,
                     threshold: float = SERVICE_LEVEL_SECONDS,
                     short_abandon: float = SHORT_ABANDON_SECONDS) -> Measures:
    offered = self_served = unserved = turned_away = waited = 0
    counters = Counters(threshold=threshold, short_abandon=short_abandon)
    for r in records:
        offered += 1
        if r.outcome == "self_served":
            self_served += 1
            continue
        if r.queued is None:
            continue
        if r.routed is None or r.routed > r.queued:
            waited += 1
        if r.outcome == "answered" and r.answered is not None:
            counters.add(CallFacts("answered", r.answered - r.queued, r.talk + r.wrapup))
        elif r.outcome == "abandoned" and r.ended is not None:
            counters.add(CallFacts("abandoned", r.ended - r.queued))
        else:
            counters.add(CallFacts("other"))
            if r.outcome in ("callback", "released"):
                turned_away += 1
            else:
                unserved += 1
    if busy_seconds is not None and staffed_seconds is not None:
        counters.add_agent_time(busy=busy_seconds, staffed=staffed_seconds)
    m = measures(counters)
    return Measures(
        offered=offered, offered_to_queue=m.offered, answered=m.answered,
        abandoned=m.abandoned, short_abandons=m.short_abandons, self_served=self_served,
        turned_away=turned_away, unserved=unserved, service_level=m.service_level,
        asa=m.asa, mean_wait=m.mean_wait, longest_wait=m.longest_wait,
        p_wait=ratio(waited, m.offered), answer_rate=m.answer_rate,
        abandon_rate=m.abandon_rate, aht=m.aht,
        occupancy=(m.occupancy if busy_seconds is not None and staffed_seconds is not None
                   else None),
        service_level_threshold=threshold)
