"""The service measures (DESIGN §8): one definition for the real-time stream, the historical
reports, the replay report and the what-if simulator.

Pure code, no I/O. Two ways in that must agree (``tests/shared/test_measures.py`` checks it):
per-call records (:func:`measures_of`), or running :class:`Counters` a stream updates one call
at a time and can merge across queues or intervals (:func:`measures`).

Definitions, over calls *offered to a queue* (the IVR or a transfer handed them to the ACD):

- answered / abandoned: an agent answered / the caller hung up while waiting or ringing.
  Other offered calls (turned away by a queue limit, still waiting) count only as offered.
- wait: from joining the queue to the answer (answered) or the hang-up (abandoned).
- short abandon: abandoned after waiting less than ``short_abandon`` (5 s): the caller
  changed their mind, not the hotline's fault, so it is left out of the service level.
- service level: answered within ``threshold`` (inclusive, 20 s) / (offered - short abandons).
- answer rate: answered / offered. Abandon rate: abandoned / offered (short ones included).
- ASA: mean wait of answered calls. Mean wait: over answered and abandoned calls alike.
- longest wait: over answered and abandoned calls.
- AHT: mean talk + hold + wrap-up over answered calls whose handling is known (a call still
  talking or in wrap-up has no handle time yet).
- occupancy: agent time reserved, talking or in wrap-up / agent time logged in.

Ratios with an empty denominator are ``None``, never 0: "no calls" is not "0 % served".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

SHORT_ABANDON_SECONDS = 5.0
SERVICE_LEVEL_SECONDS = 20.0

Outcome = Literal["answered", "abandoned", "other"]


@dataclass(frozen=True)
class CallFacts:
    """One call offered to a queue, as the measures need it."""

    outcome: Outcome
    # Seconds from queueing to answer / hang-up; ignored for "other".
    wait: float = 0.0
    # Talk + hold + wrap-up of an answered call, once known.
    handle: float | None = None


@dataclass(frozen=True)
class ServiceMeasures:
    offered: int
    answered: int
    abandoned: int
    short_abandons: int
    answered_within: int
    service_level: float | None
    answer_rate: float | None
    abandon_rate: float | None
    asa: float | None
    mean_wait: float | None
    longest_wait: float | None
    aht: float | None
    occupancy: float | None
    threshold: float
    short_abandon: float

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {key: (round(value, digits) if isinstance(value, float) else value)
                for key, value in asdict(self).items()}


@dataclass
class Counters:
    """Running sums from which every measure follows; add calls as they settle, merge
    intervals or queues with :meth:`merge` (the threshold must be the same)."""

    threshold: float = SERVICE_LEVEL_SECONDS
    short_abandon: float = SHORT_ABANDON_SECONDS
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandons: int = 0
    answered_within: int = 0
    answered_wait: float = 0.0
    abandoned_wait: float = 0.0
    longest_wait: float | None = None
    handled: int = 0
    handle_seconds: float = 0.0
    busy_seconds: float = 0.0
    staffed_seconds: float = 0.0

    def add(self, call: CallFacts) -> None:
        self.offered += 1
        if call.outcome == "answered":
            self.answered += 1
            self.answered_wait += call.wait
            if call.wait <= self.threshold:
                self.answered_within += 1
            if call.handle is not None:
                self.handled += 1
                self.handle_seconds += call.handle
        elif call.outcome == "abandoned":
            self.abandoned += 1
            self.abandoned_wait += call.wait
            if call.wait < self.short_abandon:
                self.short_abandons += 1
        else:
            return
        if self.longest_wait is None or call.wait > self.longest_wait:
            self.longest_wait = call.wait

    def add_agent_time(self, *, busy: float, staffed: float) -> None:
        self.busy_seconds += busy
        self.staffed_seconds += staffed

    def merge(self, other: Counters) -> Counters:
        if (other.threshold, other.short_abandon) != (self.threshold, self.short_abandon):
            raise ValueError("cannot merge counters kept at different thresholds")
        longest = [w for w in (self.longest_wait, other.longest_wait) if w is not None]
        return Counters(
            threshold=self.threshold, short_abandon=self.short_abandon,
            offered=self.offered + other.offered, answered=self.answered + other.answered,
            abandoned=self.abandoned + other.abandoned,
            short_abandons=self.short_abandons + other.short_abandons,
            answered_within=self.answered_within + other.answered_within,
            answered_wait=self.answered_wait + other.answered_wait,
            abandoned_wait=self.abandoned_wait + other.abandoned_wait,
            longest_wait=max(longest) if longest else None,
            handled=self.handled + other.handled,
            handle_seconds=self.handle_seconds + other.handle_seconds,
            busy_seconds=self.busy_seconds + other.busy_seconds,
            staffed_seconds=self.staffed_seconds + other.staffed_seconds)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def measures(counters: Counters) -> ServiceMeasures:
    c = counters
    return ServiceMeasures(
        offered=c.offered, answered=c.answered, abandoned=c.abandoned,
        short_abandons=c.short_abandons, answered_within=c.answered_within,
        service_level=ratio(c.answered_within, c.offered - c.short_abandons),
        answer_rate=ratio(c.answered, c.offered), abandon_rate=ratio(c.abandoned, c.offered),
        asa=ratio(c.answered_wait, c.answered),
        mean_wait=ratio(c.answered_wait + c.abandoned_wait, c.answered + c.abandoned),
        longest_wait=c.longest_wait, aht=ratio(c.handle_seconds, c.handled),
        occupancy=ratio(c.busy_seconds, c.staffed_seconds),
        threshold=c.threshold, short_abandon=c.short_abandon)


def count(calls: Iterable[CallFacts], *, busy_seconds: float = 0.0,
          staffed_seconds: float = 0.0, threshold: float = SERVICE_LEVEL_SECONDS,
          short_abandon: float = SHORT_ABANDON_SECONDS) -> Counters:
    counters = Counters(threshold=threshold, short_abandon=short_abandon)
    for call in calls:
        counters.add(call)
    counters.add_agent_time(busy=busy_seconds, staffed=staffed_seconds)
    return counters


def measures_of(calls: Iterable[CallFacts], *, busy_seconds: float = 0.0,
                staffed_seconds: float = 0.0, threshold: float = SERVICE_LEVEL_SECONDS,
                short_abandon: float = SHORT_ABANDON_SECONDS) -> ServiceMeasures:
    """The measures straight from per-call records (the historical definition); computed
    independently of :class:`Counters` so the two can be checked against each other."""
    calls = list(calls)
    answered = [c.wait for c in calls if c.outcome == "answered"]
    abandoned = [c.wait for c in calls if c.outcome == "abandoned"]
    short = sum(1 for w in abandoned if w < short_abandon)
    within = sum(1 for w in answered if w <= threshold)
    handles = [c.handle for c in calls if c.outcome == "answered" and c.handle is not None]
    settled = answered + abandoned
    return ServiceMeasures(
        offered=len(calls), answered=len(answered), abandoned=len(abandoned),
        short_abandons=short, answered_within=within,
        service_level=ratio(within, len(calls) - short),
        answer_rate=ratio(len(answered), len(calls)),
        abandon_rate=ratio(len(abandoned), len(calls)),
        asa=ratio(sum(answered), len(answered)),
        mean_wait=ratio(sum(settled), len(settled)),
        longest_wait=max(settled) if settled else None,
        aht=ratio(sum(handles), len(handles)),
        occupancy=ratio(busy_seconds, staffed_seconds),
        threshold=threshold, short_abandon=short_abandon)
