"""R1, the servers' part: the half-hour e2e trace (150 calls) through the distributed suite
while RabbitMQ (the server, not its connections) is restarted twice and PostgreSQL once.
Both are private servers of this test. Afterwards the replay passes the same checks as the
undisturbed one: every call ended answered, abandoned or self-served, every recording
stored, every disposition one order with all its callbacks, every outbox published in
order; each recovery time is written to the test's report."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import eventually
from tests.e2e.harness import (
    RunningSuite,
    base_environment,
    distributed_suite,
    replay_progress,
    sample_trace,
    trace_start,
)
from tests.e2e.servers import PrivatePostgres, PrivateRabbit
from tests.e2e.test_replay import (
    ARTIFACTS,
    CALLS,
    HOURS,
    SPEED,
    clean_up,
    replay_and_check,
    var_dir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.soak, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_trace(tmp_path_factory.mktemp("trace") / "e2e-half-hour.jsonl",
                        calls=CALLS, hours=HOURS, name="e2e-half-hour")


async def test_the_suite_rides_out_broker_and_database_restarts(trace: Path) -> None:
    work = var_dir()
    rabbit, postgres = PrivateRabbit(work), PrivatePostgres(work)
    recoveries: list[dict[str, Any]] = []

    async def restart_servers(suite: RunningSuite) -> None:
        plan = [(30, "rabbitmq", rabbit.restart), (65, "postgresql", postgres.restart),
                (100, "rabbitmq", rabbit.restart)]
        for threshold, server, restart in plan:
            async def reached(placed: int = threshold) -> bool:
                progress = ((await replay_progress(suite)) or {}).get("progress", {})
                return bool(progress.get("placed", 0) >= placed)

            await eventually(reached, timeout=600, interval=0.3)
            began = time.monotonic()
            down = await asyncio.to_thread(restart)
            recoveries.append({"server": server, "at_placed": threshold,
                               "restart_seconds": round(down, 1),
                               "wall": round(time.monotonic() - began, 1)})

    try:
        await asyncio.to_thread(rabbit.start)
        database_url = await asyncio.to_thread(postgres.start)
        env = base_environment(database_url, work, SPEED, amqp_url=rabbit.url,
                               start=trace_start(trace))
        with distributed_suite(env, work / "logs") as suite:
            report = await replay_and_check(suite, database_url, work, "restarts", trace,
                                            during=restart_servers)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "restarts-recoveries.json").write_text(json.dumps(
            {"recoveries": recoveries, "answered": report["answered"]}, indent=2))
        assert [r["server"] for r in recoveries] == ["rabbitmq", "postgresql", "rabbitmq"]
    finally:
        await asyncio.to_thread(postgres.stop)
        await asyncio.to_thread(rabbit.remove)
        clean_up(work)
