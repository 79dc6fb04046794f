"""The one definition of the service measures: exact numbers, and records == counters."""

from __future__ import annotations

import random

import pytest

from shared.measures import CallFacts, Counters, count, measures, measures_of

CALLS = [
    CallFacts("answered", 15.0, 200.0),   # within 20 s
    CallFacts("answered", 20.0, 100.0),   # exactly 20 s: within (inclusive)
    CallFacts("answered", 30.0),          # still in wrap-up: no handle time yet
    CallFacts("abandoned", 3.0),          # short: out of the SL denominator
    CallFacts("abandoned", 5.0),          # 5 s is not short (< 5 s is)
    CallFacts("abandoned", 60.0),
    CallFacts("other"),                   # turned away by a limit
]


def test_exact_numbers() -> None:
    m = measures_of(CALLS, busy_seconds=450, staffed_seconds=600)
    assert (m.offered, m.answered, m.abandoned, m.short_abandons, m.answered_within) == (
        7, 3, 3, 1, 2)
    assert m.service_level == pytest.approx(2 / 6)
    assert m.answer_rate == pytest.approx(3 / 7)
    assert m.abandon_rate == pytest.approx(3 / 7)
    assert m.asa == pytest.approx(65 / 3)
    assert m.mean_wait == pytest.approx(133 / 6)
    assert m.longest_wait == 60.0
    assert m.aht == 150.0
    assert m.occupancy == 0.75
    assert (m.threshold, m.short_abandon) == (20.0, 5.0)


def test_empty_denominators_are_none_not_zero() -> None:
    m = measures_of([])
    assert m.offered == 0
    assert (m.service_level, m.answer_rate, m.asa, m.aht, m.occupancy, m.longest_wait) == (
        None, None, None, None, None, None)
    only_short = measures_of([CallFacts("abandoned", 1.0)])
    assert only_short.service_level is None and only_short.abandon_rate == 1.0


def test_threshold_is_configurable() -> None:
    assert measures_of(CALLS, threshold=10).answered_within == 0
    assert measures_of(CALLS, threshold=30).answered_within == 3
    assert measures_of(CALLS, short_abandon=10).short_abandons == 2


@pytest.mark.parametrize("seed", range(20))
def test_counters_and_records_agree(seed: int) -> None:
    rng = random.Random(seed)
    calls = [CallFacts(rng.choice(["answered", "abandoned", "other"]),
                       round(rng.uniform(0, 90), 1),
                       rng.choice([None, round(rng.uniform(30, 600), 1)]))
             for _ in range(rng.randint(0, 200))]
    threshold = rng.choice([10.0, 20.0, 30.0])
    busy, staffed = rng.uniform(0, 3600), rng.uniform(0, 7200)
    from_records = measures_of(calls, busy_seconds=busy, staffed_seconds=staffed,
                               threshold=threshold)
    running = Counters(threshold=threshold)
    for call in calls:
        running.add(call)
    running.add_agent_time(busy=busy, staffed=staffed)
    assert measures(running).as_dict(9) == from_records.as_dict(9)
    # Merging split counters (two intervals, two queues) gives the same numbers.
    half = len(calls) // 2
    merged = count(calls[:half], threshold=threshold).merge(
        count(calls[half:], busy_seconds=busy, staffed_seconds=staffed, threshold=threshold))
    assert measures(merged).as_dict(9) == from_records.as_dict(9)


def test_counters_kept_at_different_thresholds_do_not_merge() -> None:
    with pytest.raises(ValueError):
        Counters(threshold=20).merge(Counters(threshold=30))
