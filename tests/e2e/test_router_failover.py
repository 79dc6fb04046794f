"""Issue 3's failover through the whole suite: two acd_router replicas behind one
comma-separated HOTLINE_ACD_URL; the active one is killed (SIGKILL) mid-replay. The standby
must take over within 5 s, and the replay must end with every call answered, abandoned or
self-served and no agent stuck reserved or on a call."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
from typing import Any

import httpx
import pytest

from hotline.launcher import Processes, suite_environment, wait_ready
from shared.settings import DEFAULT_PORTS
from tests.e2e.checks import check_replay
from tests.e2e.harness import (
    SAMPLE_TRACE,
    RunningSuite,
    admin_headers,
    base_environment,
    free_ports,
    replay_progress,
    start_replay_cli,
    wait_cli,
)
from tests.e2e.test_replay import ARTIFACTS, REPLAY_TIMEOUT, SPEED, var_dir

pytestmark = [pytest.mark.e2e, pytest.mark.soak, pytest.mark.timeout(900)]


async def instance(port: int) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(headers=admin_headers(), timeout=2) as client:
            response = await client.get(f"http://127.0.0.1:{port}/v1/instance")
            return response.json() if response.status_code == 200 else None
    except httpx.HTTPError:
        return None


async def test_standby_router_takes_over_mid_replay(database_url: str, amqp_url: str) -> None:
    work = var_dir()
    *service_ports, spare = free_ports(len(DEFAULT_PORTS) + 1)
    ports = dict(zip(DEFAULT_PORTS, service_ports, strict=True))
    env = suite_environment(base_environment(database_url, work, SPEED, amqp_url=amqp_url),
                            ports)
    replicas = {"acd_a": ports["acd_router"], "acd_b": spare}
    env["HOTLINE_ACD_URL"] = ",".join(f"http://127.0.0.1:{p}" for p in replicas.values())
    processes = Processes(ports=dict(ports), log_dir=work / "logs")
    observed: dict[str, Any] = {}
    try:
        for service in DEFAULT_PORTS:
            processes.start(service, {**env, "ACD_INSTANCE_ID": "acd_a"})
        wait_ready(ports, processes, timeout=90)
        # The first replica holds the lease; a second one joins as the standby.
        processes.procs["acd_a"] = processes.procs.pop("acd_router")
        processes.start("acd_router", {**env, "ACD_PORT": str(spare), "ACD_INSTANCE_ID": "acd_b"})
        processes.procs["acd_b"] = processes.procs.pop("acd_router")
        wait_ready({"acd_router": spare}, timeout=60)
        suite = RunningSuite(ports, env, processes=processes)
        out = work / "report.json"
        cli = start_replay_cli(suite, SAMPLE_TRACE, SPEED, out)

        for _ in range(1200):
            progress = ((await replay_progress(suite)) or {}).get("progress", {})
            if progress.get("placed", 0) >= 100:
                break
            await asyncio.sleep(0.25)
        roles = {name: await instance(port) for name, port in replicas.items()}
        active = next(name for name, info in roles.items() if info and info["role"] == "active")
        standby = "acd_b" if active == "acd_a" else "acd_a"
        processes.stop(active, sig=signal.SIGKILL)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 15:
            info = await instance(replicas[standby])
            if info and info["role"] == "active":
                observed["takeover_seconds"] = time.monotonic() - killed_at
                break
            await asyncio.sleep(0.1)
        observed.update(active_killed=active, placed_at_kill=progress.get("placed"))

        report = await wait_cli(cli, out, REPLAY_TIMEOUT)
        replay = await replay_progress(suite)
        assert replay is not None
        urls = {service: suite.url(service) for service in ports}
        urls["acd_router"] = f"http://127.0.0.1:{replicas[standby]}"
        findings = await check_replay(urls, admin_headers(), SAMPLE_TRACE, replay["replay_id"])
    finally:
        processes.stop()
        shutil.rmtree(work, ignore_errors=True)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "router-failover.json").write_text(json.dumps(
        {"observed": observed, "report": report, "counts": findings.counts}, indent=2))
    assert observed.get("takeover_seconds", 99) < 5.0, observed
    assert findings.problems == [], findings.problems[:20]
    assert report["offered"] == 300 and report["callback_completion_rate"] == 1.0
