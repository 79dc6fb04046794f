"""`make run`'s default: no DATABASE_URL, so the suite starts a private PostgreSQL in its
data directory; every service answers /ready on its port within 30 s, and the CLI finds
the development signing key the suite created."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from hotline.launcher import ENV_PREFIX, suite_environment, wait_ready
from shared.auth import Auth
from shared.settings import DEFAULT_PORTS
from tests.e2e.harness import ROOT, base_environment, free_ports

pytestmark = pytest.mark.e2e


def test_suite_starts_on_its_embedded_database_within_30_seconds() -> None:
    work = Path(tempfile.mkdtemp(prefix="hotline-run-"))
    work.chmod(0o755)  # the private server runs as the postgres user when we are root
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    env = base_environment("unused", work, 1.0)
    del env["DATABASE_URL"], env["HOTLINE_JWT_SECRET"]
    env = suite_environment(env, ports)
    log = open(work / "suite.log", "wb")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "hotline.suite"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(ports, timeout=30)
        elapsed = time.monotonic() - started
        assert elapsed < 30
        assert (work / "pgdata" / "PG_VERSION").exists()
        # The CLI's way of finding the key: the var dir's development key signs valid tokens.
        token = subprocess.run(
            [sys.executable, "-m", "hotline.cli", "token", "--scope", "supervisor"],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        secret = (work / "dev-signing-key").read_text().strip()
        assert Auth(secret).verify(token).scopes == {"supervisor"}
        agents = httpx.get(f"http://127.0.0.1:{ports['acd_router']}/v1/agents",
                           headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert agents.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        # The suite stops its private server on the way out (a clean stop removes the pid file).
        still_running = (work / "pgdata" / "postmaster.pid").exists()
        shutil.rmtree(work, ignore_errors=True)
    assert not still_running, "embedded PostgreSQL still running after the suite stopped"


def _start_all_in_one(work: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[bytes],
                                                                  dict[str, str]]:
    """`make run` as a new user runs it: no DATABASE_URL, no peer URLs, only other ports."""
    env = base_environment("unused", work, 1.0)
    del env["DATABASE_URL"], env["HOTLINE_JWT_SECRET"]
    for service, port in ports.items():
        env[f"{ENV_PREFIX[service]}_PORT"] = str(port)
    log = open(work / "suite.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hotline.suite"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_ready(ports, timeout=30)
    return proc, env


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if state[state.rindex(")") + 2] == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user question arises as root")
def test_a_private_clone_as_root_gets_a_durable_server_and_the_suite_dies_whole() -> None:
    """A clone under a mode-700 directory: the postgres user cannot reach `.hotline/pgdata`,
    so the data goes where it can and the suite says where. The server is durable. Only the
    ports are given: the services still find each other, and `hotline replay` finds the suite
    without --url. Killed outright (SIGKILL), the suite takes its server with it."""
    private = Path(tempfile.mkdtemp(prefix="hotline-private-"))
    private.chmod(0o700)
    work = private / "clone" / ".hotline"
    work.mkdir(parents=True)
    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    proc, env = _start_all_in_one(work, ports)
    data_dir: Path | None = None
    try:
        announced = (work / "suite.log").read_text()
        assert "cannot reach" in announced, announced
        data_dir = Path(next(line.split("data in ", 1)[1].rstrip(")")
                             for line in announced.splitlines() if "data in " in line))
        assert not str(data_dir).startswith(str(private))
        durable = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", (data_dir / "postmaster.pid").read_text()
             .splitlines()[3], "-U", "hotline", "-d", "hotline", "-tAc",
             "SELECT current_setting('fsync') || current_setting('synchronous_commit')"],
            capture_output=True, text=True, check=True).stdout.strip()
        assert durable == "onon"
        trace = work / "tiny.jsonl"
        trace.write_text(TINY)
        replay = subprocess.run(
            [sys.executable, "-m", "hotline.cli", "replay", str(trace), "--json",
             "--timeout", "60"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert replay.returncode == 0, replay.stderr[-2000:]
        assert json.loads(replay.stdout)["answered"] == 1
        postmaster = _postmaster_pid(data_dir)
        proc.kill()
        proc.wait(timeout=10)
        assert _gone(postmaster, 15), "the embedded server outlived a killed suite"
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(private, ignore_errors=True)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


TINY = "\n".join(json.dumps(line) for line in [
    {"kind": "header", "format": "hotline-trace/1", "name": "tiny"},
    {"kind": "agent", "id": "T1", "skills": {"billing": 5}, "login": 0, "logout": 120,
     "answer_after": 0.5, "wrapup": 1},
    {"kind": "call", "id": "C1", "at": 1.0, "from": "+8613900000001", "dtmf": ["0"],
     "think": 0.3, "talk": 2}]) + "\n"
