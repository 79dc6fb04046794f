#!/usr/bin/env python3
"""Write the bundled sample trace: one busy hour of a 95598 hotline (``hotline-trace/1``).

Seeded and deterministic: the same ``--seed`` and ``--calls`` give the same file byte for
byte. The menu digits follow the IVR's default 95598 menu (1 outage/repair -> repair,
2 billing (then 0 for an agent; nothing = self-served balance), 3 new connection -> billing,
9 complaint, 0 agent -> billing); a few callers press an invalid digit first.

It also prints what the trace should produce, from a small queue simulation of the same
callers and agents (an estimate: the real IVR's prompt lengths and ACD's choices differ).

    python tools/make_sample_trace.py --seed 95598 --calls 300 --out traces/sample-busy-hour.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOUR = 3600.0
AREAS = [f"A-{n:03d}" for n in range(1, 25)]
OUTAGE_AREA = "A-017"
SURGE_SHARE = 0.2
SURGE_WINDOW = (620.0, 1100.0)
FLAGS = ["elderly_alone", "medical_device", "sensitive", "repeat_caller"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"

# (intent, dtmf, queue or None for self-service, weight)
INTENTS: list[tuple[str, list[str], str | None, float]] = [
    ("repair", ["1"], "repair", 0.40),
    ("billing_agent", ["2", "0"], "billing", 0.14),
    ("billing_self", ["2"], None, 0.12),
    ("new_connection", ["3"], "billing", 0.07),
    ("complaint", ["9"], "complaint", 0.13),
    ("agent", ["0"], "billing", 0.06),
    # The caller reads the menu and presses nothing at all (the IVR falls back).
    ("repair_twice", ["1"], "repair", 0.08),
]
INVALID_DIGITS = ["4", "5", "6", "7", "8"]
KINDS_BY_QUEUE: dict[str, list[tuple[str, float]]] = {
    "repair": [("repair", 0.82), ("consultation", 0.10), ("report", 0.05), ("praise", 0.03)],
    "billing": [("consultation", 0.55), ("opinion", 0.12), ("suggestion", 0.12),
                ("praise", 0.09), ("complaint", 0.12)],
    "complaint": [("complaint", 0.60), ("report", 0.15), ("opinion", 0.13),
                  ("suggestion", 0.07), ("praise", 0.05)],
}
REPLIES = {
    "repair": "抢修人员已到达现场，故障已排除，供电恢复。",  # noqa: RUF001 (Chinese text)
    "complaint": "已核实情况并向客户致歉，相关问题已整改。",  # noqa: RUF001 (Chinese text)
    "report": "举报线索已转交稽查部门核实处理。",
    "opinion": "已记录客户意见并反馈至相关部门。",
    "suggestion": "感谢建议，已提交业务部门评估。",  # noqa: RUF001 (Chinese text)
    "consultation": "已向客户解答电费及业务办理相关问题。",
    "praise": "已将表扬转达至相关班组。",
}
# Agents: (skills with levels, how many). Several agents carry two skills.
AGENT_PLAN: list[tuple[dict[str, int], int]] = [
    ({"repair": 8}, 5),
    ({"repair": 7, "billing": 5}, 3),
    ({"billing": 8}, 5),
    ({"billing": 7, "complaint": 5}, 2),
    ({"complaint": 8}, 3),
    ({"complaint": 7, "repair": 5}, 2),
]


def pick(rng: random.Random, weighted: list[tuple[Any, float]]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


def make(seed: int, calls: int, hours: float = 1.0, staff: int = 1,
         name: str = "sample-busy-hour") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``hours`` stretches the arrivals (the surge stays in the first hour); ``staff``
    multiplies every agent group, so a longer or busier trace keeps the same service."""
    rng = random.Random(seed)
    duration = HOUR * hours
    lines: list[dict[str, Any]] = [{
        "kind": "header", "format": "hotline-trace/1", "name": name,
        "start": "2026-07-15T09:00:00+08:00", "seed": seed,
        "description": "One busy hour of a 95598 power-utility hotline"}]

    customers: list[dict[str, Any]] = []
    # About five calls per customer at most, so a long trace stays under the daily callback cap.
    for n in range(max(120, calls // 5)):
        tier = "vip" if rng.random() < 0.1 else "regular"
        flags = sorted(rng.sample(FLAGS, rng.choice([1, 1, 2]))) if rng.random() < 0.2 else []
        # A cluster of customers lives in the area of the fault outage.
        area = OUTAGE_AREA if rng.random() < 0.15 else rng.choice(AREAS)
        customers.append({"kind": "customer", "ani": f"+86138{10000000 + n * 7919 % 9000000:08d}",
                          "account": f"31{n + 1:08d}",
                          "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                          "tier": tier, "area": area, "flags": flags})
    lines += customers

    # Both end inside the trace: the replay then reports power back, which resolves the
    # fault's shared repair order and calls back everybody who reported it.
    outages = [
        {"kind": "outage", "at": 0, "area": "A-005", "type": "planned",
         "restore_eta": round(duration * 0.75), "description": "计划检修"},
        {"kind": "outage", "at": 600, "area": OUTAGE_AREA, "type": "fault",
         "restore_eta": round(duration - 600), "description": "10kV线路故障"},
    ]

    # A Poisson hour (uniform order statistics) plus a surge of repair calls once the fault
    # outage hits: the surge is what makes the floor queue and some callers give up.
    surge = round(calls * SURGE_SHARE)
    arrivals = sorted([(round(rng.uniform(0, duration), 1), False) for _ in range(calls - surge)]
                      + [(round(rng.uniform(*SURGE_WINDOW), 1), True) for _ in range(surge)])
    call_lines = []
    for index, (at, surging) in enumerate(arrivals, start=1):
        intent, dtmf, queue, _ = pick(rng, [(i, i[3]) for i in INTENTS])
        if surging and rng.random() < 0.85:
            intent, dtmf, queue = "repair", ["1"], "repair"
        dtmf = list(dtmf)
        if intent == "repair_twice":
            dtmf = [None, "1"]  # no digit the first time: the IVR re-prompts
        elif rng.random() < 0.07:
            dtmf.insert(0, rng.choice(INVALID_DIGITS))
        known = rng.random() < 0.65
        customer = rng.choice(customers) if known else None
        if customer is None:
            number = f"+86139{rng.randrange(10**8):08d}" if rng.random() < 0.7 \
                else f"+8610{rng.randrange(10**8):08d}"
            area = rng.choice(AREAS)
        else:
            number = customer["ani"]
            area = customer["area"]
        if surging and queue == "repair" and customer is None:
            area = OUTAGE_AREA
        roll = rng.random()
        patience: float | None
        if roll < 0.18:
            patience = None
        elif roll < 0.28:
            patience = round(rng.uniform(2, 8), 1)
        else:
            patience = float(rng.randrange(30, 301))
        talk = min(900.0, max(30.0, round(rng.lognormvariate(math.log(150) - 0.125, 0.5), 0)))
        call: dict[str, Any] = {"kind": "call", "id": f"C{index:06d}", "at": at,
                                "from": number, "to": "95598", "dtmf": dtmf,
                                "think": round(rng.uniform(0.5, 3.0), 1),
                                "patience": patience, "talk": talk}
        if queue is not None:
            kind = pick(rng, KINDS_BY_QUEUE[queue])
            answer_on = pick(rng, [(1, 0.80), (2, 0.14), (None, 0.06)])
            satisfaction = pick(rng, [("satisfied", 0.80), ("neutral", 0.14),
                                      ("dissatisfied", 0.06)])
            call["disposition"] = {
                "workorder": {"type": kind, "area": area, "reply": REPLIES[kind]},
                "callback": {"answer_on_attempt": answer_on, "satisfaction": satisfaction}}
        call["_queue"] = queue
        call["_vip"] = bool(customer and customer["tier"] == "vip")
        call_lines.append(call)

    last_end = max(c["at"] + 60 + (c["patience"] or 600) + c["talk"] for c in call_lines)
    logout = float(math.ceil((last_end + 120) / 300) * 300)
    agents = []
    serial = 0
    for skills, count in AGENT_PLAN:
        for _ in range(count * staff):
            serial += 1
            agents.append({"kind": "agent", "id": f"A{serial:03d}", "team": f"T{(serial - 1) % 3 + 1}",
                           "skills": dict(skills), "login": 0, "logout": logout,
                           "answer_after": round(rng.uniform(1.0, 3.0), 1),
                           "wrapup": float(rng.randrange(5, 16))})
    lines += agents
    lines += outages
    expected = simulate(call_lines, agents)
    for call in call_lines:
        call.pop("_queue")
        call.pop("_vip")
    lines += call_lines
    return lines, expected


@dataclass
class _Agent:
    id: str
    skills: set[str]
    answer_after: float
    wrapup: float
    free_at: float = 0.0


def simulate(calls: list[dict[str, Any]], agents: list[dict[str, Any]]) -> dict[str, Any]:
    """A 0.1 s time-stepped queue: longest-idle agent with the skill, VIPs first, callers
    leave at their patience (ringing or not). Prompt playback is taken as 2 s each."""
    pool = [_Agent(a["id"], set(a["skills"]), a["answer_after"], a["wrapup"]) for a in agents]
    pending = []
    for spec in calls:
        if spec["_queue"] is None:
            continue
        ivr = sum(2.0 + (spec["think"] if d else 5.0) for d in spec["dtmf"])
        pending.append({"id": spec["id"], "queue": spec["_queue"], "vip": spec["_vip"],
                        "queued": spec["at"] + ivr, "patience": spec["patience"],
                        "talk": spec["talk"]})
    pending.sort(key=lambda c: c["queued"])
    waiting: list[dict[str, Any]] = []
    answered, abandoned, short, waits = 0, 0, 0, []
    t, i = 0.0, 0
    while i < len(pending) or waiting:
        while i < len(pending) and pending[i]["queued"] <= t:
            waiting.append(pending[i])
            i += 1
        for call in list(waiting):
            if call["patience"] is not None and call["queued"] + call["patience"] <= t:
                waiting.remove(call)
                abandoned += 1
                short += call["patience"] < 5
        waiting.sort(key=lambda c: (not c["vip"], c["queued"]))
        for agent in sorted((a for a in pool if a.free_at <= t), key=lambda a: a.free_at):
            chosen = next((c for c in waiting if c["queue"] in agent.skills), None)
            if chosen is None:
                continue
            call = chosen
            waiting.remove(call)
            connect = t + agent.answer_after
            deadline = math.inf if call["patience"] is None else call["queued"] + call["patience"]
            if connect > deadline:
                abandoned += 1
                short += call["patience"] < 5
                agent.free_at = deadline
                continue
            answered += 1
            waits.append(connect - call["queued"])
            agent.free_at = connect + call["talk"] + agent.wrapup
        t = round(t + 0.1, 1)
    queued = len(pending)
    return {"offered_to_queue": queued, "answered": answered, "abandoned": abandoned,
            "short_abandons": short,
            "service_level": round(sum(w <= 20 for w in waits) / max(1, queued - short), 3),
            "asa_seconds": round(sum(waits) / len(waits), 1) if waits else None}


def summary(lines: list[dict[str, Any]], expected: dict[str, Any]) -> dict[str, Any]:
    calls = [x for x in lines if x["kind"] == "call"]
    dispositions = [c["disposition"] for c in calls if "disposition" in c]
    return {
        "calls": len(calls),
        "customers": sum(1 for x in lines if x["kind"] == "customer"),
        "vip_customers": sum(1 for x in lines if x["kind"] == "customer" and x["tier"] == "vip"),
        "agents": sum(1 for x in lines if x["kind"] == "agent"),
        "outages": sum(1 for x in lines if x["kind"] == "outage"),
        "self_service_intended": len(calls) - len(dispositions),
        "invalid_digit_callers": sum(1 for c in calls if c["dtmf"] and c["dtmf"][0] in
                                     INVALID_DIGITS),
        "patience": {"forever": sum(c["patience"] is None for c in calls),
                     "under_10s": sum(c["patience"] is not None and c["patience"] < 10
                                      for c in calls)},
        "dispositions_by_kind": dict(sorted(Counter(d["workorder"]["type"]
                                                    for d in dispositions).items())),
        "callbacks_by_answer_attempt": {str(k): v for k, v in sorted(
            Counter(d["callback"]["answer_on_attempt"] for d in dispositions).items(),
            key=lambda kv: (kv[0] is None, kv[0] or 0))},
        "satisfaction": dict(Counter(d["callback"]["satisfaction"] for d in dispositions)),
        "expected (queue simulation)": expected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=95598)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--staff", type=int, default=1, help="multiply every agent group")
    parser.add_argument("--name", default="sample-busy-hour")
    parser.add_argument("--out", type=Path, default=Path("traces/sample-busy-hour.jsonl"))
    args = parser.parse_args()
    lines, expected = make(args.seed, args.calls, args.hours, args.staff, args.name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(json.dumps(summary(lines, expected), ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
