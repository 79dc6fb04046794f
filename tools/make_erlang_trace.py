#!/usr/bin/env python3
"""Write a one-skill ``hotline-trace/1`` for the Erlang models (seeded, deterministic):
Poisson arrivals, exponential talk, optional exponential patience, agents that answer at
once with no wrap-up, no IVR time. The fidelity benchmark (bench/acd_fidelity.py) builds its
traces with the same generator.

    python tools/make_erlang_trace.py --calls 210000 --rate-per-hour 200 --aht 180 \\
        --agents 14 --seed 1 --out /tmp/erlang-c-a.jsonl
    python tools/make_erlang_trace.py --calls 210000 --rate-per-hour 200 --aht 180 \\
        --agents 11 --patience 300 --seed 3 --out /tmp/erlang-a-11.jsonl
    hotline simulate /tmp/erlang-c-a.jsonl

``--case suite-c`` is the trace the real suite replays (bench/acd_suite_erlang.py): case (c),
1 call/s, AHT 60 s, 64 agents, callers pressing 0 (the 95598 menu's "speak to an agent",
straight to the ``billing`` queue) with ``think`` 0, a header ``start`` for
``HOTLINE_TIME_START`` and a lead-in so the agents are logged in before the first call:

    python tools/make_erlang_trace.py --case suite-c --calls 6000 --out /tmp/suite-c.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotline.simulate.traces import erlang_trace_lines, to_jsonl

# Case (c) through the real suite (issue 3, "Through the real suite").
SUITE_C: dict[str, Any] = {
    "rate_per_hour": 3600.0, "aht": 60.0, "agents": 64, "skill": "billing", "digit": "0",
    "seed": 7, "start": "2026-07-15T09:00:00+08:00", "lead_in": 20.0,
}


def suite_trace_lines(*, name: str, calls: int, rate_per_hour: float, aht: float,
                      agents: int, seed: int, skill: str, digit: str, start: str | None,
                      lead_in: float = 0.0, patience: float | None = None
                      ) -> Iterator[dict[str, Any]]:
    """``erlang_trace_lines`` (same streams, same seed → same arrivals and talks) with the
    header's ``start`` set and every call shifted ``lead_in`` seconds later."""
    for line in erlang_trace_lines(name=name, calls=calls, rate_per_hour=rate_per_hour,
                                   aht=aht, agents=agents, patience=patience, seed=seed,
                                   skill=skill, digit=digit):
        if line["kind"] == "header" and start:
            line = {**line, "start": start}
        elif line["kind"] == "call" and lead_in:
            line = {**line, "at": round(line["at"] + lead_in, 6)}
        yield line


def suite_c_trace(calls: int, seed: int | None = None) -> str:
    """The case (c) suite trace as JSON Lines."""
    spec = dict(SUITE_C)
    if seed is not None:
        spec["seed"] = seed
    return to_jsonl(suite_trace_lines(name=f"erlang-c-suite-{calls}", calls=calls, **spec))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["suite-c"], default=None,
                        help="preset: suite-c = case (c) for the real suite (defaults below "
                             "are then taken from the preset unless given)")
    parser.add_argument("--calls", type=int, default=210_000)
    parser.add_argument("--rate-per-hour", type=float, default=None)
    parser.add_argument("--aht", type=float, default=None, help="mean talk seconds")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--patience", type=float, default=None,
                        help="mean patience seconds (default: callers never hang up)")
    parser.add_argument("--vip-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None, help="default 1 (suite-c: 7)")
    parser.add_argument("--skill", default=None, help="agents' skill (default repair; "
                        "suite-c: billing)")
    parser.add_argument("--digit", default=None, help="the caller's one IVR entry (default "
                        "1; suite-c: 0)")
    parser.add_argument("--start", default=None,
                        help="header start instant, ISO 8601 (for HOTLINE_TIME_START)")
    parser.add_argument("--lead-in", type=float, default=None,
                        help="shift every call this many seconds later (default 0)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    preset = SUITE_C if args.case == "suite-c" else {}
    for option in ("rate_per_hour", "aht", "agents"):
        if getattr(args, option) is None:
            if option not in preset:
                parser.error(f"--{option.replace('_', '-')} is required (or --case)")
            setattr(args, option, preset[option])
    seed = args.seed if args.seed is not None else preset.get("seed", 1)
    skill = args.skill or preset.get("skill", "repair")
    digit = args.digit or preset.get("digit", "1")
    start = args.start or preset.get("start")
    lead_in = args.lead_in if args.lead_in is not None else preset.get("lead_in", 0.0)
    name = args.name or (f"erlang-{args.rate_per_hour:g}ph-{args.aht:g}s-{args.agents}a"
                         + (f"-p{args.patience:g}" if args.patience else ""))
    if start is None and not lead_in:
        lines = erlang_trace_lines(
            name=name, calls=args.calls, rate_per_hour=args.rate_per_hour, aht=args.aht,
            agents=args.agents, patience=args.patience, seed=seed,
            vip_share=args.vip_share, skill=skill, digit=digit)
    else:
        if args.vip_share > 0:
            parser.error("--vip-share is not supported with --start / --lead-in / --case")
        lines = suite_trace_lines(
            name=name, calls=args.calls, rate_per_hour=args.rate_per_hour, aht=args.aht,
            agents=args.agents, seed=seed, skill=skill, digit=digit, start=start,
            lead_in=lead_in, patience=args.patience)
    args.out.write_text(to_jsonl(lines))
    print(f"wrote {args.out} ({args.calls} calls)", file=sys.stderr)


if __name__ == "__main__":
    main()
