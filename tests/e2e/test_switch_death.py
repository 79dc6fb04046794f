"""R9: the softswitch dies mid-call. Through the distributed suite, the bundled busy hour's
customers and agents take a first wave of calls; once several callers are talking and
others wait or are in the menu, the softswitch (the switch and every simulated party) is
SIGKILLed. Afterwards every call it carried is released with a cause, no agent is left
reserved or on a call, no caller is left in a queue, and every identified caller it cut off
is owed exactly one callback case."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.e2e.harness import (
    ROOT,
    admin_headers,
    base_environment,
    distributed_suite,
    replay_progress,
    start_replay_cli,
    trace_start,
)
from tests.e2e.test_replay import ARTIFACTS, clean_up, var_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
SPEED = 10.0
CALLS = 40
TALK_SECONDS = 300.0  # long enough that the first callers are still talking at the kill


def first_wave(path: Path) -> Path:
    lines = [json.loads(line) for line in
             (ROOT / "traces/sample-busy-hour.jsonl").read_text().splitlines() if line.strip()]
    kept = [line for line in lines if line["kind"] in ("header", "customer", "agent")]
    calls = [line for line in lines if line["kind"] == "call"][:CALLS]
    for index, call in enumerate(calls):
        call["at"] = round(index * 2.0, 3)  # one every 2 trace seconds
        call["talk"] = TALK_SECONDS
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n"
                            for line in [*kept, *calls]))
    return path


async def test_when_the_switch_dies_every_call_ends_and_its_callers_are_owed_callbacks(
        database_url: str, amqp_url: str) -> None:
    work = var_dir()
    try:
        trace = first_wave(work / "first-wave.jsonl")
        env = base_environment(database_url, work, SPEED, amqp_url=amqp_url,
                               start=trace_start(trace))
        with distributed_suite(env, work / "logs") as suite:
            assert suite.processes is not None
            cli = start_replay_cli(suite, trace, SPEED, work / "report.json")
            try:
                async def talking_and_waiting() -> bool:
                    progress = ((await replay_progress(suite)) or {}).get("progress", {})
                    return (progress.get("talking", 0) >= 5
                            and progress.get("in_queue", 0) + progress.get("in_ivr", 0) >= 1)

                await eventually(talking_and_waiting, timeout=120, interval=0.2)
                async with httpx.AsyncClient(headers=admin_headers(), timeout=30) as http:
                    cti, acd, wo = (suite.url(s) for s in
                                    ("cti_gateway", "acd_router", "workorder"))
                    live = await http.get(f"{cti}/v1/calls", params={"live": "true"})
                    suite.processes.stop("softswitch", sig=signal.SIGKILL)
                    # (CTI sees the link close at once: read what it carried just before.)
                    cut_off = [c["call_id"] for c in live.json()]
                    assert cut_off, "the kill came when no call was live"

                    async def nothing_live() -> bool:
                        calls = await http.get(f"{cti}/v1/calls", params={"live": "true"})
                        return calls.json() == []

                    await eventually(nothing_live, timeout=60)
                    ended = {c: (await http.get(f"{cti}/v1/calls/{c}")).json()
                             for c in cut_off}
                    assert {c["cause"] for c in ended.values()} == {"switch_lost"}
                    talking = [c for c, call in ended.items()
                               if call["connected_at"] is not None]
                    assert len(talking) >= 5

                    async def floor_free() -> list[dict[str, Any]] | None:
                        agents = (await http.get(f"{acd}/v1/agents")).json()
                        queues = (await http.get(f"{acd}/v1/queues")).json()
                        busy = [a for a in agents if a["state"] in ("reserved", "on_call")]
                        waiting = sum(q["waiting"] + q["reserved"] for q in queues)
                        return agents if not busy and waiting == 0 else None

                    await eventually(floor_free, timeout=60)

                    # The callers the IVR identified are each owed one callback case.
                    identified = []
                    for call_id in cut_off:
                        routed = await http.get(f"{acd}/v1/calls/{call_id}")
                        customer = (routed.json()["entry"].get("customer") or {}
                                    if routed.status_code == 200 else {})
                        if customer.get("account"):
                            identified.append(call_id)
                    assert identified, "nobody identified was cut off"

                    async def owed() -> dict[str, int] | None:
                        cases = (await http.get(f"{wo}/v1/orders", params={
                            "type": "callback_request", "limit": 1000})).json()
                        counts: dict[str, int] = {}
                        for case in cases:
                            counts[case["abandoned_call_id"]] = \
                                counts.get(case["abandoned_call_id"], 0) + 1
                        return counts if set(identified) <= set(counts) else None

                    counts = await eventually(owed, timeout=60)
                    assert all(counts[call_id] == 1 for call_id in identified), counts
                    ARTIFACTS.mkdir(exist_ok=True)
                    (ARTIFACTS / "switch-death.json").write_text(json.dumps(
                        {"cut_off": len(cut_off), "talking": len(talking),
                         "identified": len(identified)}))
            finally:
                # The CLI follows a replay whose switch is gone: it has nothing more to say.
                cli.kill()
                cli.wait()
                if cli.stderr is not None:
                    cli.stderr.close()
    finally:
        clean_up(work)
