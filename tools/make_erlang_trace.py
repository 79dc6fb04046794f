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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotline.simulate.traces import erlang_trace_lines, to_jsonl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=210_000)
    parser.add_argument("--rate-per-hour", type=float, required=True)
    parser.add_argument("--aht", type=float, required=True, help="mean talk seconds")
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--patience", type=float, default=None,
                        help="mean patience seconds (default: callers never hang up)")
    parser.add_argument("--vip-share", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    name = args.name or (f"erlang-{args.rate_per_hour:g}ph-{args.aht:g}s-{args.agents}a"
                         + (f"-p{args.patience:g}" if args.patience else ""))
    args.out.write_text(to_jsonl(erlang_trace_lines(
        name=name, calls=args.calls, rate_per_hour=args.rate_per_hour, aht=args.aht,
        agents=args.agents, patience=args.patience, seed=args.seed,
        vip_share=args.vip_share)))
    print(f"wrote {args.out} ({args.calls} calls)", file=sys.stderr)


if __name__ == "__main__":
    main()
