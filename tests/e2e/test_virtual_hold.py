"""Virtual hold through the whole suite (all-in-one, RabbitMQ, PostgreSQL) with a scripted
switch: the caller goes through the IVR into the repair queue, is offered virtual hold,
presses the digit and hangs up; when an agent is free the agent's phone rings first on a new
call, then the customer is dialled and the two are connected."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from shared.auth import Auth
from tests.conftest import TEST_SECRET, eventually
from tests.cti_gateway.harness import Switch
from tests.e2e.harness import (
    admin_headers,
    all_in_one_suite,
    base_environment,
    replay_progress,
    start_replay_cli,
    wait_cli,
)

pytestmark = pytest.mark.e2e

CALLER = "+8613800000077"
# One agent staffed and not ready: the first caller's estimate is one handle time (180 s).
CONFIG = """
queues:
  repair:
    skills: {repair: 1}
    handle_seconds: 180
    virtual_hold: {enabled: true, min_estimated_wait_seconds: 60, digit: "1",
                   announcement: "You keep your place; we will call you back."}
"""


async def next_request(switch: Switch, method: str, leg: str) -> dict[str, Any]:
    """The next request of that kind; prompts and notices before it are acknowledged."""
    while True:
        frame = await switch.recv(within=20)
        if frame["type"] != "request":
            continue
        if (frame["method"], frame["leg"]) == (method, leg):
            return frame
        if frame["method"] == "INFO":
            await switch.respond(frame, 200)
            continue
        raise AssertionError(f"expected {method} on {leg}, got {frame}")


async def test_a_caller_on_virtual_hold_is_called_back_agent_first(database_url: str,
                                                                  amqp_url: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="hotline-e2e-"))
    (work / "acd.yaml").write_text(CONFIG)
    env = base_environment(database_url, work, 1.0, amqp_url=amqp_url)
    env["ACD_CONFIG_FILE"] = str(work / "acd.yaml")
    try:
        with all_in_one_suite(env, work / "logs") as suite:
            async with httpx.AsyncClient(headers=admin_headers(), timeout=10) as http:
                acd = suite.url("acd_router")
                login = await http.post(f"{acd}/v1/agents/A1/login",
                                        json={"skills": {"repair": 5}})
                assert login.status_code == 200, login.text
                token = Auth(TEST_SECRET).mint("scripted-switch", ["switch"])
                ws_url = suite.url("cti_gateway").replace("http", "ws") + "/v1/switch"
                async with connect(ws_url, additional_headers={
                        "Authorization": f"Bearer {token}"}) as ws:
                    switch = Switch(ws)
                    await switch.invite("VH-1", from_number=CALLER)
                    menu = await next_request(switch, "INFO", "caller")
                    assert "press 1" in menu["play"]["text"]
                    await switch.respond(menu, 200)
                    await switch.request("INFO", "VH-1", "caller", dtmf="1")
                    while True:
                        frame = await next_request(switch, "INFO", "caller")
                        await switch.respond(frame, 200)
                        if "notify" in frame:
                            break
                    assert frame["notify"]["queue"] == "repair"
                    assert frame["notify"]["virtual_hold"] == {"digit": "1"}

                    # The caller takes the offer: confirmation, then the switch hangs up.
                    await switch.request("INFO", "VH-1", "caller", dtmf="1")
                    confirmation = await next_request(switch, "INFO", "caller")
                    assert confirmation["play"]["text"].startswith("You keep your place")
                    bye = await next_request(switch, "BYE", "caller")
                    await switch.respond(bye, 200)

                    async def entry() -> dict[str, Any]:
                        body: dict[str, Any] = (await http.get(
                            f"{acd}/v1/calls/VH-1")).json()["entry"]
                        return body

                    await eventually(lambda: _held(entry), timeout=10)
                    held = await entry()
                    assert (held["state"], held["position"]) == ("waiting", 1)

                    # The agent becomes free: their phone rings first, on a new call.
                    ready = await http.post(f"{acd}/v1/agents/A1/state",
                                            json={"state": "ready"})
                    assert ready.status_code == 200, ready.text
                    ring = await next_request(switch, "INVITE", "agent")
                    assert (ring["call_id"], ring["from"]) == ("VH-1.vh1", CALLER)
                    await switch.respond(ring, 180)
                    await switch.respond(ring, 200)
                    await next_request(switch, "ACK", "agent")
                    dial = await next_request(switch, "INVITE", "customer")
                    assert (dial["call_id"], dial["to"]) == ("VH-1.vh1", CALLER)
                    await switch.respond(dial, 180)
                    await switch.respond(dial, 200)
                    await next_request(switch, "ACK", "customer")

                    async def agent_state() -> str:
                        return str((await http.get(f"{acd}/v1/agents/A1")).json()["state"])

                    await eventually(lambda: _is(agent_state, "on_call"), timeout=10)
                    assert (await entry())["state"] == "answered"
                    # The customer hangs up after talking; the agent's phone is hung up.
                    cseq = await switch.request("BYE", "VH-1.vh1", "customer")
                    await switch.expect_response(cseq)
                    bye = await next_request(switch, "BYE", "agent")
                    await switch.respond(bye, 200)
                    await eventually(lambda: _is(agent_state, "wrap_up"), timeout=10)
                    assert (await entry())["ended_at"] is not None
                decisions = (await http.get(f"{acd}/v1/calls/VH-1/routing")).json()
                assert [d["outcome"] for d in decisions["decisions"]] == ["connected"]
                calls = (await http.get(f"{suite.url('cti_gateway')}/v1/calls/VH-1.vh1")).json()
                assert (calls["state"], calls["cause"]) == ("released", "customer_hangup")
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _held(entry: Any) -> bool:
    body = await entry()
    return bool(body["callback_number"] == CALLER)


async def _is(read: Any, state: str) -> bool:
    return bool(await read() == state)


TRACE = [
    {"kind": "header", "format": "hotline-trace/1", "name": "virtual-hold",
     "start": "2026-07-15T10:00:00+08:00"},
    {"kind": "agent", "id": "A001", "skills": {"repair": 8}, "login": 0, "answer_after": 1,
     "wrapup": 2},
    # C1 takes the only agent; C2 waits (it would be offered virtual hold, and does not take
    # it); C3 takes it, hangs up, and is called back after C2 has been served.
    {"kind": "call", "id": "C1", "at": 5, "from": "+8613800000071", "dtmf": ["1"], "think": 1,
     "talk": 60},
    {"kind": "call", "id": "C2", "at": 10, "from": "+8613800000072", "dtmf": ["1"],
     "think": 1, "talk": 30},
    {"kind": "call", "id": "C3", "at": 15, "from": "+8613800000073", "dtmf": ["1"],
     "think": 2, "talk": 40, "virtual_hold": True},
]


async def test_a_replayed_caller_takes_virtual_hold_and_is_served_in_turn(
        database_url: str, amqp_url: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="hotline-e2e-"))
    (work / "acd.yaml").write_text(CONFIG)
    trace = work / "virtual-hold.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in TRACE))
    speed = 10.0
    env = base_environment(database_url, work, speed, amqp_url=amqp_url,
                           start=TRACE[0]["start"])  # type: ignore[arg-type]
    env["ACD_CONFIG_FILE"] = str(work / "acd.yaml")
    try:
        with all_in_one_suite(env, work / "logs") as suite:
            cli = start_replay_cli(suite, trace, speed, work / "report.json")
            report = await wait_cli(cli, work / "report.json", 300)
            replay = await replay_progress(suite)
            assert replay is not None
            async with httpx.AsyncClient(headers=admin_headers(), timeout=10) as http:
                calls = {c["trace_call_id"]: c for c in (await http.get(
                    f"{suite.url('softswitch')}/v1/replays/{replay['replay_id']}/calls")).json()}
                entries = {name: (await http.get(
                    f"{suite.url('acd_router')}/v1/calls/{call['call_id']}")).json()["entry"]
                    for name, call in calls.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert report["answered"] == 3, report
    assert {name: call["outcome"] for name, call in calls.items()} == {
        "C1": "answered", "C2": "answered", "C3": "answered"}
    assert entries["C3"]["callback_number"] == "+8613800000073"
    assert entries["C3"]["callback_call_id"] == f"{calls['C3']['call_id']}.vh1"
    assert entries["C2"]["callback_number"] is None
    # C3 kept its place behind C2: answered after it, by the agent-first callback.
    answered = sorted(entries, key=lambda name: entries[name]["answered_at"])
    assert answered == ["C1", "C2", "C3"]
