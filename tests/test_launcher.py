"""The distributed launcher stops as an operator's supervisor expects: SIGTERM stops every
service and frees every port within the grace period; a launcher killed outright (SIGKILL)
takes its services with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hotline.launcher import ENV_PREFIX, wait_ready
from tests.conftest import AMQP_BASE, create_database, drop_database, private_vhost
from tests.e2e.harness import ROOT, base_environment, free_ports

pytestmark = pytest.mark.integration

GRACE = 8.0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"  # a zombie has already exited


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_launcher(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], list[int]]:
    launcher = subprocess.Popen([sys.executable, "-m", "hotline.launcher"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    ports = {s: int(env[f"{p}_PORT"]) for s, p in ENV_PREFIX.items()}
    wait_ready(ports, timeout=90)
    services = children_of(launcher.pid)
    assert len(services) == len(ports), services
    return launcher, services


def gone_within(pids: list[int], ports: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids) and all(port_free(p) for p in ports):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_launcher_leaves_no_service_behind(how: str, tmp_path: Path) -> None:
    database_url = await create_database()
    try:
        with private_vhost() as vhost:
            env = base_environment(database_url, tmp_path, 1.0,
                                   amqp_url=f"{AMQP_BASE}/{vhost}")
            ports = free_ports(len(ENV_PREFIX))
            for prefix, port in zip(ENV_PREFIX.values(), ports, strict=True):
                env[f"{prefix}_PORT"] = str(port)
            env["HOTLINE_STOP_GRACE_SECONDS"] = str(GRACE)
            launcher, services = start_launcher(env)
            try:
                if how == "sigterm":
                    launcher.send_signal(signal.SIGTERM)
                    assert launcher.wait(timeout=GRACE + 5) == 0
                else:
                    launcher.kill()
                    launcher.wait(timeout=5)
                assert gone_within(services, ports, GRACE), (
                    [p for p in services if alive(p)], [p for p in ports if not port_free(p)])
            finally:
                for pid in services:
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
    finally:
        await drop_database(database_url)
