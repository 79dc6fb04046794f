"""The case (c) suite trace generator (tools/make_erlang_trace.py --case suite-c)."""

from __future__ import annotations

import json
from pathlib import Path

from hotline.simulate.traces import erlang_trace_lines, to_jsonl
from services.softswitch.trace import parse_trace
from tools.make_erlang_trace import SUITE_C, main, suite_c_trace


def test_suite_c_trace_parses_and_routes_to_one_queue() -> None:
    text = suite_c_trace(200)
    trace, errors = parse_trace(text)
    assert errors == []
    assert trace.header is not None and trace.header.start is not None
    assert len(trace.agents) == 64
    assert all(a.skills == {"billing": 5} and a.answer_after == 0 and a.wrapup == 0
               for a in trace.agents)
    assert len(trace.calls) == 200
    assert all(c.dtmf == ["0"] and c.think == 0 and c.patience is None
               and c.disposition is None for c in trace.calls)
    assert trace.calls[0].at > SUITE_C["lead_in"]


def test_suite_c_is_seeded_and_keeps_the_plain_streams() -> None:
    assert suite_c_trace(50) == suite_c_trace(50)
    assert suite_c_trace(50) != suite_c_trace(50, seed=8)
    plain = [json.loads(line) for line in to_jsonl(erlang_trace_lines(
        name="x", calls=50, rate_per_hour=3600, aht=60, agents=64, seed=SUITE_C["seed"],
        skill="billing", digit="0")).splitlines() if '"call"' in line]
    shifted = [json.loads(line) for line in suite_c_trace(50).splitlines()
               if '"kind":"call"' in line]
    assert [c["talk"] for c in plain] == [c["talk"] for c in shifted]
    assert all(abs(s["at"] - p["at"] - SUITE_C["lead_in"]) < 1e-5
               for p, s in zip(plain, shifted, strict=True))


def test_cli_without_case_is_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    main(["--calls", "30", "--rate-per-hour", "200", "--aht", "180", "--agents", "14",
          "--out", str(out)])
    assert out.read_text() == to_jsonl(erlang_trace_lines(
        name="erlang-200ph-180s-14a", calls=30, rate_per_hour=200, aht=180, agents=14,
        seed=1))
    main(["--case", "suite-c", "--calls", "10", "--out", str(out)])
    assert out.read_text().splitlines()[0].count('"start"') == 1
