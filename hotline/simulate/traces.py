"""``hotline-trace/1`` in and out: a parsed trace to a :class:`Scenario`, and the seeded
generators of the Erlang test traces (Poisson arrivals, exponential talk and patience)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from services.softswitch.trace import Call, LineError, Trace, parse_trace

from .config import SimulationConfig
from .model import Scenario, SimAgent, SimCall


def route_digits(dtmf: list[str | None], config: SimulationConfig) -> str | None:
    """The queue a caller's digits lead to (None: the IVR served them).

    Digits that lead nowhere are dropped as the IVR would (it replays the menu), so a
    caller pressing 7 then 1 reaches repair after two prompts."""
    path: list[str] = []
    prefixes = {" ".join(key.split()[:n]) for key in config.menu
                for n in range(1, len(key.split()) + 1)}
    for digit in dtmf:
        if not digit:
            continue
        candidate = " ".join([*path, digit])
        if candidate in prefixes:
            path.append(digit)
    key = " ".join(path)
    if key in config.menu:
        return config.menu[key]
    return config.fallback_queue


def scenario_from_trace(trace: Trace, config: SimulationConfig | None = None,
                        name: str | None = None) -> Scenario:
    config = config or SimulationConfig()
    customers = trace.customers_by_number()
    vip_tiers = set(config.vip_tiers)
    agents = [SimAgent(id=a.id, skills=dict(a.skills), login=a.login, logout=a.logout,
                       answer_after=a.answer_after, wrapup=a.wrapup, team=a.team)
              for a in trace.agents]
    calls = [_call(call, customers, vip_tiers, config) for call in trace.calls]
    title = name or (trace.header.name if trace.header and trace.header.name else "trace")
    return Scenario(title, agents, calls)


def _call(call: Call, customers: dict[str, Any], vip_tiers: set[str],
          config: SimulationConfig) -> SimCall:
    queue = route_digits(list(call.dtmf), config)
    ivr = sum(config.prompt_seconds + (call.think if digit else 0.0) for digit in call.dtmf)
    if not call.dtmf:
        ivr = 0.0
    customer = customers.get(call.from_)
    return SimCall(id=call.id, at=call.at, queue=queue, talk=call.talk, ivr=ivr,
                   patience=call.patience, vip=customer is not None
                   and customer.tier in vip_tiers, customer=call.from_)


def load_trace(text: str, config: SimulationConfig | None = None
               ) -> tuple[Scenario, list[LineError]]:
    trace, errors = parse_trace(text)
    return scenario_from_trace(trace, config), errors


# -- generators ------------------------------------------------------------------------------

def erlang_trace_lines(*, name: str, calls: int, rate_per_hour: float, aht: float,
                       agents: int, patience: float | None = None, seed: int = 1,
                       vip_share: float = 0.0, skill: str = "repair",
                       digit: str = "1") -> Iterator[dict[str, Any]]:
    """A one-skill trace for the Erlang models: Poisson arrivals, exponential talk, and
    (optionally) exponential patience; agents answer at once and have no wrap-up, and the
    IVR takes no time, so the queue sees exactly the M/M/n(+M) input.

    Each random stream has its own generator so that changing one parameter (say, patience)
    leaves the arrival and talk sequences of the same seed unchanged."""
    arrivals = random.Random(f"{seed}:arrivals")
    talks = random.Random(f"{seed}:talk")
    patiences = random.Random(f"{seed}:patience")
    tiers = random.Random(f"{seed}:tier")
    yield {"kind": "header", "format": "hotline-trace/1", "name": name}
    if vip_share > 0:
        yield {"kind": "customer", "ani": "+10000000001", "account": "VIP-1", "tier": "vip"}
        yield {"kind": "customer", "ani": "+10000000002", "account": "REG-1",
               "tier": "regular"}
    for n in range(agents):
        yield {"kind": "agent", "id": f"A{n + 1:04d}", "skills": {skill: 5}, "login": 0,
               "answer_after": 0, "wrapup": 0}
    rate = rate_per_hour / 3600.0
    at = 0.0
    for n in range(calls):
        at += arrivals.expovariate(rate)
        line: dict[str, Any] = {
            "kind": "call", "id": f"C{n + 1:07d}", "at": round(at, 6),
            "from": "+10000000002", "dtmf": [digit], "think": 0.0,
            "patience": (round(patiences.expovariate(1.0 / patience), 6)
                         if patience is not None else None),
            "talk": round(talks.expovariate(1.0 / aht), 6),
        }
        if vip_share > 0 and tiers.random() < vip_share:
            line["from"] = "+10000000001"
        yield line


def to_jsonl(lines: Iterator[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
