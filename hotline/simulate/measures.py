"""The service measures (DESIGN §8) over simulated calls.

Defined here because ``shared/measures.py`` does not exist yet; the definitions follow the
replay report (``services/softswitch/report.py``) so a simulated and a replayed day read the
same way. Move them to ``shared`` when the real-time statistics land, and import from there.

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

from .model import CallRecord

SHORT_ABANDON_SECONDS = 5.0
SERVICE_LEVEL_SECONDS = 20.0


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


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def compute_measures(records: Iterable[CallRecord], *, busy_seconds: float | None = None,
                     staffed_seconds: float | None = None,
                     threshold: float = SERVICE_LEVEL_SECONDS,
                     short_abandon: float = SHORT_ABANDON_SECONDS) -> Measures:
    offered = queued = answered = abandoned = short = self_served = unserved = turned_away = 0
    within = waited = 0
    answered_wait = all_wait = handle = 0.0
    longest: float | None = None
    for r in records:
        offered += 1
        if r.outcome == "self_served":
            self_served += 1
            continue
        if r.queued is None:
            continue
        queued += 1
        if r.routed is None or r.routed > r.queued:
            waited += 1
        if r.outcome == "answered" and r.answered is not None:
            answered += 1
            w = r.answered - r.queued
            answered_wait += w
            all_wait += w
            handle += r.talk + r.wrapup
            if w <= threshold:
                within += 1
        elif r.outcome == "abandoned" and r.ended is not None:
            abandoned += 1
            w = r.ended - r.queued
            all_wait += w
            if w < short_abandon:
                short += 1
        elif r.outcome in ("callback", "released"):
            turned_away += 1
            continue
        else:
            unserved += 1
            continue
        if longest is None or w > longest:
            longest = w
    settled = answered + abandoned
    return Measures(
        offered=offered, offered_to_queue=queued, answered=answered, abandoned=abandoned,
        short_abandons=short, self_served=self_served, turned_away=turned_away,
        unserved=unserved,
        service_level=_ratio(within, queued - short), asa=_ratio(answered_wait, answered),
        mean_wait=_ratio(all_wait, settled), longest_wait=longest,
        p_wait=_ratio(waited, queued), answer_rate=_ratio(answered, queued),
        abandon_rate=_ratio(abandoned, queued), aht=_ratio(handle, answered),
        occupancy=(_ratio(busy_seconds, staffed_seconds)
                   if busy_seconds is not None and staffed_seconds is not None else None),
        service_level_threshold=threshold)
