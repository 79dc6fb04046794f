"""A half-hour trace from the sample generator (150 calls, 20 agents: the busy hour's load,
with its outage, surge, VIPs and every disposition) through the whole suite, all-in-one and
distributed, at 24x.

Checks come from the services' own APIs and database: every call answered, abandoned or
self-served (none stuck); every answered call has a recording as long as its talk time
(within 1 s); every disposition exactly one work order (its own, or the one its report joined); every caller
of a resolved order its callbacks with the trace's satisfaction (or escalated when the customer
never answers); per-call event sequences strictly increase.

24x: the suite's timers have wall-clock floors (a ring lasts at least 4 wall seconds, a
reservation 5), so a lagging machine makes callers wait rather than losing its floor; half an
hour at 24x takes about 75 s of replay."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import close_broker_connections
from tests.e2e.checks import check_replay, personal_data_in_logs
from tests.e2e.harness import (
    RunningSuite,
    admin_headers,
    all_in_one_suite,
    base_environment,
    distributed_suite,
    outbox_sequences_increase,
    replay_progress,
    sample_trace,
    start_replay_cli,
    trace_start,
    wait_cli,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
SPEED = 24.0
CALLS, HOURS = 150, 0.5
REPLAY_TIMEOUT = HOURS * 3600 / SPEED + 240
ARTIFACTS = Path(tempfile.gettempdir()) / "hotline-e2e-reports"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_trace(tmp_path_factory.mktemp("trace") / "e2e-half-hour.jsonl",
                        calls=CALLS, hours=HOURS, name="e2e-half-hour")


def var_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="hotline-e2e-"))
    path.chmod(0o755)
    return path


def clean_up(path: Path) -> None:
    """Remove a run's files (recordings are large); HOTLINE_E2E_KEEP=1 keeps them to debug."""
    if os.environ.get("HOTLINE_E2E_KEEP") != "1":
        shutil.rmtree(path, ignore_errors=True)


async def replay_and_check(suite: RunningSuite, database_url: str, work: Path, mode: str,
                           trace: Path, during: Any = None) -> dict[str, Any]:
    out = work / "report.json"
    cli = start_replay_cli(suite, trace, SPEED, out)
    if during is not None:
        await during(suite)
    report = await wait_cli(cli, out, REPLAY_TIMEOUT)
    replay = await replay_progress(suite)
    assert replay is not None
    replay_id = replay.get("replay_id") or replay["id"]
    urls = {service: suite.url(service) for service in suite.ports}
    findings = await check_replay(urls, admin_headers(), trace, replay_id)
    events = await outbox_sequences_increase(database_url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{mode}.json").write_text(json.dumps(
        {"report": report, "counts": findings.counts, "events_checked": events}, indent=2))
    assert findings.problems == [], findings.problems[:20]
    assert report["offered"] == CALLS
    assert report["answered"] == findings.counts["outcome:answered"]
    assert report["callback_completion_rate"] == 1.0
    assert report["drained"] is True
    assert findings.counts["recordings_ok"] == report["answered"]
    assert events > 2_000
    return report


async def test_trace_all_in_one(database_url: str, trace: Path) -> None:
    work = var_dir()
    try:
        env = base_environment(database_url, work, SPEED, start=trace_start(trace))
        with all_in_one_suite(env, work / "logs") as suite:
            assert suite.startup_seconds < 30  # type: ignore[attr-defined]
            await replay_and_check(suite, database_url, work, "all-in-one", trace)
        # Every line the suite logged through the replay, libraries' included: no caller's
        # number or name (M1 of the security review).
        leaked = personal_data_in_logs(trace, work / "logs")
        assert leaked == [], leaked[:10]
    finally:
        clean_up(work)


async def test_trace_distributed_survives_broker_dropping_connections(
        database_url: str, amqp_url: str, trace: Path) -> None:
    work = var_dir()
    vhost = amqp_url.rsplit("/", 1)[1]
    dropped: list[int] = []

    async def drop_connections_mid_replay(suite: RunningSuite) -> None:
        # Once a third of the calls have been placed, the broker closes every connection.
        for _ in range(600):
            replay = await replay_progress(suite)
            progress = (replay or {}).get("progress", {})
            if progress.get("placed", 0) >= CALLS // 3:
                break
            await asyncio.sleep(0.5)
        dropped.append(close_broker_connections(vhost))

    try:
        env = base_environment(database_url, work, SPEED, amqp_url=amqp_url,
                               start=trace_start(trace))
        with distributed_suite(env, work / "logs") as suite:
            await replay_and_check(suite, database_url, work, "distributed", trace,
                                   during=drop_connections_mid_replay)
    finally:
        clean_up(work)
    # Every service's connection (six processes) was dropped and came back.
    assert dropped and dropped[0] >= 6
