"""Routing cost: time per routing event in the ACD's incremental engine at scale.

Two floor states per size (100 ... 2,000 agents, 50 skills, 5,000 waiting calls):

- *agents freeing up*: every agent is busy and 5,000 calls wait in 50 single-skill queues;
  timed: an agent becoming ready (it takes the best call it qualifies for), and a call
  arriving with nobody free (it is indexed). The taken call is replaced so 5,000 keep
  waiting.
- *agents waiting*: every agent is ready and 5,000 calls wait in 50 expert queues (skill
  level 10, which no agent has, so they stay waiting and sit in every agent's way); timed: a
  call arriving for a regular queue (the best ready agent is found and reserved) and that
  agent becoming ready again (it scans the expert calls it cannot take).

Agents hold 3 of the 50 skills at levels 1-9, seeded. Times are wall clock per call into
the engine (``time.perf_counter_ns``), explanation building included.
"""

from __future__ import annotations

import argparse
import random
import time
from statistics import quantiles

from services.acd_router.domain.config import QueueConfig, RoutingConfig
from services.acd_router.domain.engine import AgentSpec, CallSpec, RoutingEngine

SKILLS = [f"s{n:02d}" for n in range(50)]
WAITING = 5_000
SIZES = (100, 250, 500, 1_000, 2_000)


def _config() -> RoutingConfig:
    queues = {f"q{n:02d}": QueueConfig(skills={s: 1}) for n, s in enumerate(SKILLS)}
    queues |= {f"x{n:02d}": QueueConfig(skills={s: 10}) for n, s in enumerate(SKILLS)}
    return RoutingConfig(queues=queues, auto_queues=False)


def _agents(count: int, rng: random.Random) -> list[AgentSpec]:
    return [AgentSpec(f"A{n:05d}", {s: rng.randint(1, 9) for s in rng.sample(SKILLS, 3)},
                      team=f"T{n % 20}") for n in range(count)]


def _pct(samples: list[int]) -> tuple[float, float, float]:
    cuts = quantiles(samples, n=100, method="inclusive")
    return cuts[49] / 1e6, cuts[98] / 1e6, max(samples) / 1e6


def freeing_up(count: int, events: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    engine = RoutingEngine(_config())
    agents = _agents(count, rng)
    now = 0.0
    for agent in agents:
        engine.agent_logged_in(agent, now)
    serial = 0
    for _ in range(WAITING):
        serial += 1
        now += 0.01
        engine.call_arrived(CallSpec(f"C{serial}", f"q{rng.randrange(50):02d}",
                                     vip=rng.random() < 0.1), now)
    ready: list[int] = []
    arrive: list[int] = []
    for _ in range(events):
        agent = rng.choice(agents)
        now += 0.01
        t0 = time.perf_counter_ns()
        decisions = engine.agent_ready(agent.id, now)
        ready.append(time.perf_counter_ns() - t0)
        for d in decisions:
            engine.call_left(d.call_id, now)
        engine.agent_busy(agent.id, now)
        serial += 1
        # Replace it with a call the agent could also have taken, so queues stay mixed.
        queue = f"q{SKILLS.index(next(iter(agent.skills))):02d}"
        t0 = time.perf_counter_ns()
        engine.call_arrived(CallSpec(f"C{serial}", queue, vip=rng.random() < 0.1), now)
        arrive.append(time.perf_counter_ns() - t0)
    return {"agent ready (takes a call)": ready, "call arrives (nobody free)": arrive}


def agents_waiting(count: int, events: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    engine = RoutingEngine(_config())
    agents = _agents(count, rng)
    now = 0.0
    for agent in agents:
        engine.agent_logged_in(agent, now)
        now += 0.01
        engine.agent_ready(agent.id, now)
    serial = 0
    for _ in range(WAITING):
        serial += 1
        now += 0.01
        engine.call_arrived(CallSpec(f"X{serial}", f"x{rng.randrange(50):02d}"), now)
    arrive: list[int] = []
    ready: list[int] = []
    for _ in range(events):
        serial += 1
        now += 0.01
        agent = rng.choice(agents)
        queue = f"q{SKILLS.index(next(iter(agent.skills))):02d}"
        t0 = time.perf_counter_ns()
        decisions = engine.call_arrived(CallSpec(f"C{serial}", queue,
                                                 vip=rng.random() < 0.1), now)
        arrive.append(time.perf_counter_ns() - t0)
        for d in decisions:
            engine.call_left(d.call_id, now)
            if d.agent_id is not None:
                t0 = time.perf_counter_ns()
                engine.agent_ready(d.agent_id, now)
                ready.append(time.perf_counter_ns() - t0)
    return {"call arrives (agent reserved)": arrive, "agent ready (no call it can take)": ready}


def _described() -> str:
    # The docstring's bullet list reads as one paragraph in the results table's preamble.
    return " ".join((__doc__ or "").split("\n\n", 1)[1].split())


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = ["| agents | event | p50 (ms) | p99 (ms) | max (ms) | p99 < 5 ms |",
            "|---:|---|---:|---:|---:|---|"]
    worst = 0.0
    for size in SIZES:
        results = freeing_up(size, args.events, args.seed) | agents_waiting(
            size, args.events, args.seed)
        for label, samples in results.items():
            p50, p99, high = _pct(samples)
            worst = max(worst, p99) if size == SIZES[-1] else worst
            rows.append(f"| {size:,} | {label} | {p50:.3f} | {p99:.3f} | {high:.2f} | "
                        f"{'yes' if p99 < 5 else '**no**'} |")
    elapsed = time.perf_counter() - started
    return "\n".join([
        "## ACD routing cost (incremental engine)\n",
        "`python -m bench.run_all acd_routing_cost`. " + _described() + f" {args.events:,} timed events of each kind per size,"
        f" seed {args.seed}.\n",
        *rows,
        "",
        f"Worst p99 at 2,000 agents: {worst:.3f} ms (target < 5 ms). Run time {elapsed:.0f} s."
        "\n",
    ])


if __name__ == "__main__":
    print(main())
