"""Distributed mode without containers: every service in its own process
(``python -m services.<name>``), sharing RabbitMQ (``AMQP_URL``), PostgreSQL
(``DATABASE_URL``), the signing secret and one time origin.

``python -m hotline.launcher`` starts them all; SIGTERM or Ctrl-C stops them (SIGTERM, then
SIGKILL after ``HOTLINE_STOP_GRACE_SECONDS``, exiting non-zero if one had to be killed), and
a launcher that dies outright takes them with it (the kernel's parent-death signal). Tests
use :func:`start_services` to do the same with private ports, database and vhost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.lifeline import die_with_parent
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

    def stop(self, service: str | None = None, sig: int = signal.SIGTERM,
             grace: float = 15.0) -> list[str]:
        """Signal the services (all, or one), give them ``grace`` seconds in all to exit,
        then SIGKILL the rest; returns the names of those that had to be killed."""
        names = [service] if service else list(self.procs)
        for name in names:
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(sig)
        deadline = time.monotonic() + grace
        killed = []
        for name in names:
            proc = self.procs[name]
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                killed.append(name)
        return killed

    def start(self, service: str, env: Mapping[str, str]) -> None:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the log's descriptor: ours is closed once spawned.
        with (open(self.log_dir / f"{service}.log", "ab") if self.log_dir is not None
              else contextlib.nullcontext()) as log:
            # A launcher killed outright (no clean-up) takes its services with it.
            self.procs[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"], env=dict(env),
                stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGTERM))


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
    grace = float(env.get("HOTLINE_STOP_GRACE_SECONDS", "10"))
    stopping = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        stopping.set()

    # Both stop the suite the same way (systemd, a container runtime and Ctrl-C alike).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ports = {service: int(env.get(f"{ENV_PREFIX[service]}_PORT", port))
             for service, port in DEFAULT_PORTS.items()}
    processes = start_services(env, ports, log_dir=Path(env.get("HOTLINE_VAR_DIR",
                                                                 ".hotline")) / "logs")
    print("Hotline services running:", ", ".join(f"{s}:{p}" for s, p in ports.items()),
          flush=True)
    killed: list[str] = []
    try:
        while not stopping.wait(1.0):
            exited = [name for name, proc in processes.procs.items() if proc.poll() is not None]
            if exited:
                print(f"Hotline: {', '.join(exited)} exited; stopping the others", flush=True)
                break
    finally:
        killed = processes.stop(grace=grace)
    if killed:
        print(f"Hotline: {', '.join(killed)} did not stop within {grace:g} s and were killed",
              file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
