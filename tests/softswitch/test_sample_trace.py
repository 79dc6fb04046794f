"""The bundled sample trace parses cleanly, matches its specification, and is exactly what
its seeded generator writes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from statistics import fmean

from services.softswitch.trace import WORKORDER_TYPES, parse_trace

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "traces" / "sample-busy-hour.jsonl"
AGENT_DIGITS = {("1",), ("2", "0"), ("3",), ("9",), ("0",)}


def _load():
    trace, errors = parse_trace(SAMPLE.read_text(encoding="utf-8"))
    assert errors == []
    return trace


def test_sample_trace_matches_its_spec() -> None:
    trace = _load()
    assert trace.header is not None and trace.header.name == "sample-busy-hour"
    assert 280 <= len(trace.calls) <= 320
    assert 0 <= trace.calls[0].at and trace.calls[-1].at <= 3600
    assert 100 <= len(trace.customers) <= 140
    assert any(c.tier == "vip" for c in trace.customers)
    assert any(c.flags for c in trace.customers)
    assert 1 <= len(trace.outages) <= 2

    assert len(trace.agents) == 20
    skills = Counter(skill for a in trace.agents for skill in a.skills)
    assert set(skills) == {"repair", "billing", "complaint"}
    assert sum(1 for a in trace.agents if len(a.skills) == 2) >= 3
    last_call = trace.calls[-1].at
    for agent in trace.agents:
        assert 1 <= agent.answer_after <= 3 and 5 <= agent.wrapup <= 15
        assert agent.login == 0 and agent.logout is not None and agent.logout > last_call + 600

    for call in trace.calls:
        assert 0.5 <= call.think <= 3
        digits = tuple(d for d in call.dtmf if d)
        meaningful = digits[1:] if digits and digits[0] not in "01239" else digits
        if call.disposition is None:
            assert meaningful == ("2",), call  # self-served balance
        else:
            assert meaningful in AGENT_DIGITS, call
            assert call.disposition.workorder is not None
            assert call.disposition.callback is not None
    assert any(d and d[0] and d[0] not in "01239" for d in (c.dtmf for c in trace.calls))
    assert 120 <= fmean(c.talk for c in trace.calls) <= 180
    patience = [c.patience for c in trace.calls]
    assert sum(p is None for p in patience) < len(patience) / 2
    assert any(p is not None and p < 5 for p in patience)

    dispositions = [c.disposition for c in trace.calls if c.disposition]
    kinds = Counter(d.workorder.type for d in dispositions if d.workorder)
    assert set(kinds) == set(WORKORDER_TYPES)
    attempts = Counter(d.callback.answer_on_attempt for d in dispositions if d.callback)
    assert attempts[1] > attempts[2] > 0 and 0 < attempts[None] < attempts[2]
    satisfaction = Counter(d.callback.satisfaction for d in dispositions if d.callback)
    assert satisfaction["satisfied"] > satisfaction["neutral"] > satisfaction["dissatisfied"] > 0


def test_generator_is_deterministic_and_wrote_the_bundled_file(tmp_path) -> None:
    out = tmp_path / "trace.jsonl"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_sample_trace.py"),
                    "--out", str(out)], check=True, capture_output=True, timeout=60)
    assert out.read_bytes() == SAMPLE.read_bytes()
    other = tmp_path / "other.jsonl"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_sample_trace.py"),
                    "--seed", "7", "--calls", "40", "--out", str(other)],
                   check=True, capture_output=True, timeout=60)
    trace, errors = parse_trace(other.read_text(encoding="utf-8"))
    assert errors == [] and len(trace.calls) == 40
