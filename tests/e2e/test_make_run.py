"""`make run`'s default: no DATABASE_URL, so the suite starts a private PostgreSQL in its
data directory; every service answers /ready on its port within 30 s, and the CLI finds
the development signing key the suite created."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from hotline.launcher import suite_environment, wait_ready
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
