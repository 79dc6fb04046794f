"""Distributed mode without containers: every service in its own process
(``python -m services.<name>``), sharing RabbitMQ (``AMQP_URL``), PostgreSQL
(``DATABASE_URL``), the signing secret and one time origin.

``python -m hotline.launcher`` starts them all and stops them on Ctrl-C; tests use
:func:`start_services` to do the same with private ports, database and vhost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import DEFAULT_PORTS

ENV_PREFIX = {"cti_gateway": "CTI", "acd_router": "ACD", "ivr_engine": "IVR",
              "workorder": "WORKORDER", "recording": "RECORDING", "softswitch": "SOFTSWITCH"}
URL_SETTING = {"cti_gateway": "HOTLINE_CTI_URL", "acd_router": "HOTLINE_ACD_URL",
               "ivr_engine": "HOTLINE_IVR_URL", "workorder": "HOTLINE_WORKORDER_URL",
               "recording": "HOTLINE_RECORDING_URL", "softswitch": "HOTLINE_SOFTSWITCH_URL"}


def suite_environment(base: Mapping[str, str], ports: Mapping[str, int],
                      host: str = "127.0.0.1") -> dict[str, str]:
    """Environment that points every service at its port and its peers at theirs."""
    env = dict(base)
    for service, port in ports.items():
        env[f"{ENV_PREFIX[service]}_PORT"] = str(port)
        env[f"{ENV_PREFIX[service]}_HOST"] = host
        env[URL_SETTING[service]] = f"http://{host}:{port}"
    return env


@dataclass
class Processes:
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    log_dir: Path | None = None

    def stop(self, service: str | None = None, sig: int = signal.SIGTERM) -> None:
        names = [service] if service else list(self.procs)
        for name in names:
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(sig)
        for name in names:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.procs[name].wait(timeout=15)
            if self.procs[name].poll() is None:
                self.procs[name].kill()
                self.procs[name].wait()

    def start(self, service: str, env: Mapping[str, str]) -> None:
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"{service}.log", "ab")
        self.procs[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], env=dict(env),
            stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def wait_ready(ports: Mapping[str, int], procs: Processes | None = None, timeout: float = 60.0,
               host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    while pending:
        for service, port in list(pending.items()):
            if procs and procs.procs[service].poll() is not None:
                raise RuntimeError(f"{service} exited with {procs.procs[service].returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{host}:{port}/ready", timeout=1).status_code == 200:
                    del pending[service]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout}s: {sorted(pending)}")
        time.sleep(0.2)


def start_services(env: Mapping[str, str], ports: Mapping[str, int],
                   services: Iterable[str] = DEFAULT_PORTS, log_dir: Path | None = None,
                   timeout: float = 60.0) -> Processes:
    full_env = suite_environment(env, ports)
    full_env.setdefault("HOTLINE_TIME_ORIGIN", repr(time.time()))
    processes = Processes(ports=dict(ports), log_dir=log_dir)
    for service in services:
        processes.start(service, full_env)
    try:
        wait_ready({s: ports[s] for s in services}, processes, timeout)
    except BaseException:
        processes.stop()
        raise
    return processes


def main() -> None:
    env = dict(os.environ)
    if not env.get("AMQP_URL") or not env.get("DATABASE_URL"):
        sys.exit("distributed mode needs AMQP_URL and DATABASE_URL")
    processes = start_services(env, DEFAULT_PORTS, log_dir=Path(env.get("HOTLINE_VAR_DIR",
                                                                        ".hotline")) / "logs")
    print("Hotline services running:", ", ".join(f"{s}:{p}" for s, p in DEFAULT_PORTS.items()),
          flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        processes.stop()


if __name__ == "__main__":
    main()
