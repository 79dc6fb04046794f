"""ACD fidelity: the simulator (driving the ACD's own routing engine) against queueing theory.

One skill, FIFO, Poisson arrivals, exponential talk; agents answer at once, no wrap-up.
Each case: 210,000 calls from a seeded ``hotline-trace/1`` (tools/make_erlang_trace.py's
generator), parsed by the softswitch's trace parser, simulated, the first 10,000 calls
dropped as warm-up and the remaining 200,000 cut into 30 batches; batch means give 95%
intervals (Student t, 29 df) that should contain the Erlang C / Erlang A values.
Seeds are fixed in advance (one per case) and not tuned.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hotline.simulate.erlang import erlang_a, erlang_c
from hotline.simulate.model import CallRecord
from hotline.simulate.router import make_router
from hotline.simulate.simulator import simulate
from hotline.simulate.stats import batches, interval_of
from hotline.simulate.traces import erlang_trace_lines, load_trace, to_jsonl

SL_SECONDS = 20.0


@dataclass(frozen=True)
class Case:
    name: str
    rate_per_hour: float
    aht: float
    agents: int
    patience: float | None
    seed: int


CASES = [
    Case("(a) 100/30 min, AHT 180 s, 14 agents", 200, 180, 14, None, 1),
    Case("(b) 360/30 min, AHT 240 s, 55 agents", 720, 240, 55, None, 2),
    Case("(A11) 200/h, AHT 180 s, patience 300 s, 11 agents", 200, 180, 11, 300, 3),
    Case("(A12) 200/h, AHT 180 s, patience 300 s, 12 agents", 200, 180, 12, 300, 4),
]


def p_wait(group: Sequence[CallRecord]) -> float:
    return sum(1 for r in group if r.routed is None or r.routed > (r.queued or 0)) / len(group)


def asa(group: Sequence[CallRecord]) -> float:
    waits = [r.answered - r.queued for r in group
             if r.answered is not None and r.queued is not None]
    return sum(waits) / len(waits)


def service_level(group: Sequence[CallRecord]) -> float:
    # No abandons in the Erlang C cases, so no short-abandon correction applies.
    return sum(1 for r in group if r.answered is not None and r.queued is not None
               and r.answered - r.queued <= SL_SECONDS) / len(group)


def p_abandon(group: Sequence[CallRecord]) -> float:
    return sum(1 for r in group if r.outcome == "abandoned") / len(group)


def mean_wait(group: Sequence[CallRecord]) -> float:
    waits = [r.wait for r in group]
    return sum(w for w in waits if w is not None) / len(group)


def run_case(case: Case, calls: int, warmup: int, batch_count: int) -> tuple[list[str], float]:
    started = time.perf_counter()
    text = to_jsonl(erlang_trace_lines(name=case.name, calls=calls,
                                       rate_per_hour=case.rate_per_hour, aht=case.aht,
                                       agents=case.agents, patience=case.patience,
                                       seed=case.seed))
    scenario, errors = load_trace(text)
    assert not errors, errors[:3]
    router = make_router("engine", queues={"repair"})
    result = simulate(scenario, router)
    groups = batches(result.records, batch_count, warmup)
    rate = case.rate_per_hour / 3600.0
    checks: list[tuple[str, float, object]] = []
    if case.patience is None:
        theory_c = erlang_c(rate, case.aht, case.agents)
        checks = [("P(wait)", theory_c.p_wait, p_wait), ("ASA (s)", theory_c.asa, asa),
                  ("SL (20 s)", theory_c.service_level(SL_SECONDS), service_level)]
    else:
        theory_a = erlang_a(rate, case.aht, case.agents, case.patience)
        checks = [("P(abandon)", theory_a.p_abandon, p_abandon),
                  ("mean wait (s)", theory_a.mean_wait, mean_wait),
                  ("P(wait) (extra)", theory_a.p_wait, p_wait)]
    lines = []
    measured = sum(len(g) for g in groups)
    for label, theory, measure in checks:
        interval = interval_of(groups, measure)  # type: ignore[arg-type]
        digits = 4 if theory < 1.5 else 2
        lines.append(
            f"| {case.name} | {label} | {theory:.{digits}f} | {interval.mean:.{digits}f} | "
            f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}] | "
            f"{'yes' if interval.contains(theory) else '**no**'} |")
    elapsed = time.perf_counter() - started
    lines.append(f"| {case.name} | calls measured / run time | | {measured:,} | "
                 f"{elapsed:.1f} s (simulation {result.wall_seconds:.1f} s, "
                 f"{result.events:,} events) | |")
    return lines, elapsed


def _described() -> str:
    return " ".join((__doc__ or "").split("\n\n", 1)[1].split())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=210_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    table = ["| case | measure | theory | batch mean | 95% interval | contains theory |",
             "|---|---|---:|---:|---|---|"]
    for case in CASES:
        lines, _ = run_case(case, args.calls, args.warmup, args.batches)
        table.extend(lines)
    total = time.perf_counter() - started
    return "\n".join([
        "## ACD fidelity against queueing theory (simulator + ACD routing engine)\n",
        "`python -m bench.run_all acd_fidelity`. " + _described(),
        "Erlang C and Erlang A (Palm/Garnett, M/M/n+M) come from `hotline/simulate/erlang.py`;"
        " P(wait) is the share of calls not given an agent on arrival, ASA the mean wait of"
        " answered calls, SL the share answered within 20 s, mean wait in the Erlang A cases"
        " averages answered and abandoned calls (time to hang up). With about a dozen"
        " intervals at 95% each, one miss in a run is expected about half the time.\n",
        *table,
        f"\nTotal run time {total:.0f} s ({args.calls:,} calls per case, first "
        f"{args.warmup:,} dropped, {args.batches} batches).\n",
    ])


if __name__ == "__main__":
    print(main())
