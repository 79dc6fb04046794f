"""Overload on purpose, then recovery: a bounded burst far above what the suite sustains.

The bundled busy hour's customers and 20 agents, with 200 of its calls arriving within 20
trace seconds, replayed at 10x through the distributed suite: 100 calls per wall second for
two seconds, against the ten or so a second this machine carries. Callers queue, some give
up (their own patience, in trace time), the suite falls behind and catches up. Afterwards
every call has ended answered, abandoned or self-served, every disposition has its order and
its callbacks (``check_replay``), the outboxes were all published in order, and no agent is
left outside routing by the suite's own lateness: with nobody calling, no agent is not
ready, reserved or on a call.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.checks import check_replay
from tests.e2e.harness import (
    ROOT,
    admin_headers,
    base_environment,
    distributed_suite,
    outbox_sequences_increase,
    replay_progress,
    start_replay_cli,
    trace_start,
    wait_cli,
)
from tests.e2e.test_replay import ARTIFACTS, clean_up, var_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
SPEED = 10.0
CALLS = 200
BURST_TRACE_SECONDS = 20.0
TALK_SECONDS = 40.0  # short calls: the queue the burst builds drains within minutes


def burst_trace(path: Path) -> Path:
    """The sample busy hour with its first calls squeezed into a burst (their menus,
    patience and dispositions kept; no outage: nothing else is going on)."""
    lines = [json.loads(line) for line in
             (ROOT / "traces/sample-busy-hour.jsonl").read_text().splitlines() if line.strip()]
    kept = [line for line in lines if line["kind"] in ("header", "customer", "agent")]
    calls = [line for line in lines if line["kind"] == "call"][:CALLS]
    for index, call in enumerate(calls):
        call["at"] = round(index * BURST_TRACE_SECONDS / CALLS, 3)
        call["talk"] = min(call["talk"], TALK_SECONDS)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n"
                            for line in [*kept, *calls]))
    return path


async def test_a_burst_far_above_capacity_degrades_and_recovers(database_url: str,
                                                                amqp_url: str) -> None:
    work = var_dir()
    try:
        trace = burst_trace(work / "burst.jsonl")
        env = base_environment(database_url, work, SPEED, amqp_url=amqp_url,
                               start=trace_start(trace))
        with distributed_suite(env, work / "logs") as suite:
            out = work / "report.json"
            report = await wait_cli(start_replay_cli(suite, trace, SPEED, out), out, 480)
            replay = await replay_progress(suite)
            assert replay is not None
            urls = {service: suite.url(service) for service in suite.ports}
            findings = await check_replay(urls, admin_headers(), trace,
                                          replay.get("replay_id") or replay["id"])
            async with httpx.AsyncClient(headers=admin_headers(), timeout=10) as client:
                agents = (await client.get(urls["acd_router"] + "/v1/agents")).json()
            events = await outbox_sequences_increase(database_url)
    finally:
        clean_up(work)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "overload.json").write_text(json.dumps(
        {"report": report, "counts": findings.counts, "agents": agents}, indent=2))
    assert findings.problems == [], findings.problems[:20]
    assert report["offered"] == CALLS and report["drained"] is True
    ended = sum(findings.counts.get(f"outcome:{outcome}", 0)
                for outcome in ("answered", "abandoned", "self_served"))
    assert ended == CALLS
    # The burst was real: the queue overflowed what 20 agents could take at once.
    assert findings.counts.get("outcome:abandoned", 0) > 0
    assert findings.counts.get("outcome:answered", 0) > 20
    assert report["callback_completion_rate"] == 1.0
    assert len(agents) == 20
    stuck = [(a["agent_id"], a["state"], a["reason"]) for a in agents
             if a["state"] in ("not_ready", "reserved", "on_call")]
    assert stuck == [], stuck
    assert events > 1_000
