"""Batch means: a confidence interval for a steady-state measure from one long run.

Consecutive calls' waits are correlated, so the naive standard error is far too small.
Cutting the run (after a warm-up) into a few large batches makes the batch averages nearly
independent and normal; their spread gives the interval (Student t, batches - 1 df)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean, stdev

from .model import CallRecord

# Two-sided 95% Student t quantiles by degrees of freedom (no scipy: pure Python).
_T975 = {1: 12.706, 2: 4.303, 4: 2.776, 9: 2.262, 14: 2.145, 19: 2.093, 24: 2.064,
         29: 2.045, 39: 2.023, 49: 2.010, 99: 1.984}


def t975(df: int) -> float:
    if df in _T975:
        return _T975[df]
    known = sorted(_T975)
    above = [k for k in known if k >= df]
    return _T975[above[0]] if above else 1.96


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    batches: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def batch_means(values: Sequence[float]) -> Interval:
    n = len(values)
    if n < 2:
        raise ValueError("need at least two batches")
    mean = fmean(values)
    half = t975(n - 1) * stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def batches(records: Sequence[CallRecord], count: int, warmup: int
            ) -> list[list[CallRecord]]:
    """Records in queue order, the first ``warmup`` dropped, cut into ``count`` equal runs."""
    ordered = sorted((r for r in records if r.queued is not None),
                     key=lambda r: r.queued or 0.0)[warmup:]
    size = len(ordered) // count
    return [ordered[k * size:(k + 1) * size] for k in range(count)]


def interval_of(groups: Sequence[Sequence[CallRecord]],
                measure: Callable[[Sequence[CallRecord]], float]) -> Interval:
    return batch_means([measure(group) for group in groups])
