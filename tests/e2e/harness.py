"""End-to-end harness: start the suite (all-in-one or distributed) on private ports, database
and vhost; replay a trace through the `hotline` CLI; check the outcome from the services' own
APIs and database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from hotline.launcher import Processes, start_services, suite_environment, wait_ready
from shared.auth import Auth
from shared.lifeline import die_with_parent
from shared.settings import DEFAULT_PORTS
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TRACE = ROOT / "traces" / "sample-busy-hour.jsonl"
SCHEMAS = ("cti", "acd", "ivr", "workorder", "recording", "softswitch")


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def sample_trace(path: Path, *, calls: int, hours: float, name: str,
                 staff: int | None = None) -> Path:
    """The sample generator's traffic (seed 2026) for ``calls`` calls over ``hours``."""
    extra = ["--staff", str(staff)] if staff is not None else []
    subprocess.run([sys.executable, str(ROOT / "tools/make_sample_trace.py"), "--seed", "2026",
                    "--calls", str(calls), "--hours", str(hours), *extra, "--name", name,
                    "--out", str(path)], check=True, capture_output=True, cwd=ROOT)
    return path


def trace_start(trace: Path) -> str:
    """The trace's own start instant, so calendars and calling hours see the trace's day
    rather than whatever time of day the test runs at."""
    return str(json.loads(trace.read_text().splitlines()[0])["start"])


def base_environment(database_url: str, var_dir: Path, time_scale: float,
                     amqp_url: str | None = None,
                     start: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HOTLINE_", "CTI_", "ACD_", "IVR_", "WORKORDER_",
                                  "RECORDING_", "SOFTSWITCH_"))
           and key not in ("DATABASE_URL", "AMQP_URL")}
    env.update({"DATABASE_URL": database_url, "HOTLINE_JWT_SECRET": TEST_SECRET,
                "HOTLINE_VAR_DIR": str(var_dir), "HOTLINE_TIME_SCALE": str(time_scale),
                "HOTLINE_TIME_ORIGIN": repr(time.time()), "HOTLINE_LOG_LEVEL": "WARNING",
                "HOTLINE_TIME_START": start or trace_start(SAMPLE_TRACE)})
    if amqp_url:
        env["AMQP_URL"] = amqp_url
    return env


@dataclass
class RunningSuite:
    ports: dict[str, int]
    env: dict[str, str]
    processes: Processes | None = None
    all_in_one: subprocess.Popen[bytes] | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"


@contextlib.contextmanager
def all_in_one_suite(env: dict[str, str], log_dir: Path) -> Iterator[RunningSuite]:
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    full_env = suite_environment(env, ports)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "all-in-one.log", "ab") as log:
        # An interrupted test run must not leave the suite running (and loading the machine).
        proc = subprocess.Popen([sys.executable, "-m", "hotline.suite"], env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                preexec_fn=die_with_parent(signal.SIGTERM))
        try:
            started = time.monotonic()
            wait_ready(ports, timeout=60)
            suite = RunningSuite(ports, full_env, all_in_one=proc)
            suite.startup_seconds = time.monotonic() - started  # type: ignore[attr-defined]
            yield suite
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def distributed_suite(env: dict[str, str], log_dir: Path) -> Iterator[RunningSuite]:
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    processes = start_services(env, ports, log_dir=log_dir, timeout=90)
    try:
        yield RunningSuite(ports, suite_environment(env, ports), processes=processes)
    finally:
        processes.stop()


def admin_headers() -> dict[str, str]:
    return {"Authorization": "Bearer " + Auth(TEST_SECRET).mint("e2e", ["admin"])}


def start_replay_cli(suite: RunningSuite, trace: Path, speed: float, out: Path
                     ) -> subprocess.Popen[bytes]:
    """The CLI as an operator runs it; it prints the report as JSON when done."""
    with open(out, "wb") as sink:  # the child writes through its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "hotline.cli", "replay", str(trace), "--speed", str(speed),
             "--json", "--url", suite.url("softswitch")],
            env=suite.env, stdout=sink, stderr=subprocess.PIPE, cwd=ROOT)


async def replay_progress(suite: RunningSuite) -> dict[str, Any] | None:
    async with httpx.AsyncClient(headers=admin_headers(), timeout=10) as client:
        listing = (await client.get(suite.url("softswitch") + "/v1/replays")).json()
        replays = listing if isinstance(listing, list) else listing.get("replays", [])
        return replays[-1] if replays else None


async def wait_cli(proc: subprocess.Popen[bytes], out: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with contextlib.closing(proc.stderr) if proc.stderr else contextlib.nullcontext():
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError("replay did not finish in time")
            await asyncio.sleep(0.5)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, f"hotline replay failed ({proc.returncode}): {stderr[-2000:]}"
    return json.loads(out.read_text())


async def outbox_sequences_increase(database_url: str, settle_seconds: float = 15.0) -> int:
    """Per (service, subject), outbox sequences strictly increase in publish order, and every
    event committed before the check has been published (within ``settle_seconds``: the
    suite is still running, its timers still fire, and a publisher marks what the broker
    confirmed twice a second). Returns the number of events checked."""
    conn = await asyncpg.connect(database_url)
    checked = 0
    try:
        for schema in SCHEMAS:
            exists = await conn.fetchval(
                "SELECT 1 FROM information_schema.tables WHERE table_schema=$1 "
                "AND table_name='outbox'", schema)
            if not exists:
                continue
            table = f'"{schema}".outbox'
            newest = await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}")
            deadline = time.monotonic() + settle_seconds
            while await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id <= $1 AND "
                                      "published_at IS NULL", newest):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            rows = await conn.fetch(f"SELECT subject, sequence, published_at FROM {table} "
                                    "WHERE id <= $1 ORDER BY id", newest)
            last: dict[str, int] = {}
            for row in rows:
                assert row["published_at"] is not None, f"{schema}: unpublished {row['subject']}"
                previous = last.get(row["subject"], 0)
                assert row["sequence"] == previous + 1, (schema, row["subject"], previous,
                                                         row["sequence"])
                last[row["subject"]] = row["sequence"]
                checked += 1
    finally:
        await conn.close()
    return checked
