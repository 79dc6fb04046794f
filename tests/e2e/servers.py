"""Private RabbitMQ and PostgreSQL servers for tests that restart them: the machine's own
servers are shared with every other run and are never stopped by a test."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from shared.embedded_pg import EmbeddedPostgres

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PrivateRabbit:
    """A RabbitMQ node of its own (its own name, ports, data and cookie), started, stopped
    and started again on the same data, as a broker restart is."""

    def __init__(self, work: Path) -> None:
        self.work = work / "rabbitmq"
        self.work.mkdir(parents=True, exist_ok=True)
        # Erlang's distribution port is the AMQP port + 20000 unless set: both must be free.
        self.port = next(p for p in range(5700, 6000) if _free(p) and _free(p + 20000))
        self.node = f"hotline-test-{self.port}@localhost"
        (self.work / "enabled_plugins").write_text("[].\n")
        # Its own configuration: the machine's (/etc/rabbitmq) names the shared server's
        # listener and node.
        (self.work / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        # The node and rabbitmqctl read one cookie; written first, so that neither races
        # the other to create it.
        cookie = self.work / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self.env = {**os.environ, "HOME": str(self.work), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(self.port + 20000),
                    "RABBITMQ_MNESIA_BASE": str(self.work / "mnesia"),
                    "RABBITMQ_LOG_BASE": str(self.work / "log"),
                    "RABBITMQ_PID_FILE": str(self.work / "pid"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.work / "enabled_plugins"),
                    "RABBITMQ_CONFIG_FILE": str(self.work / "rabbitmq"),
                    "RABBITMQ_CONF_ENV_FILE": str(self.work / "rabbitmq-env.conf")}
        (self.work / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _ctl(self, *args: str, timeout: float = 90) -> None:
        subprocess.run([str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", self.node, *args],
                       env=self.env, check=True, capture_output=True, timeout=timeout)

    def start(self) -> float:
        """Seconds until the node answers."""
        began = time.monotonic()
        subprocess.run([str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"], env=self.env,
                       check=True, capture_output=True, timeout=60)
        self._ctl("wait", "--timeout", "60", str(self.work / "pid"))
        return time.monotonic() - began

    def stop(self) -> None:
        self._ctl("stop")

    def restart(self) -> float:
        self.stop()
        return self.start()

    def remove(self) -> None:
        try:
            self.stop()
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.work, ignore_errors=True)


class PrivatePostgres(EmbeddedPostgres):
    """The embedded server on a port of its own; a restart keeps the port (the services'
    URLs name it)."""

    def __init__(self, work: Path) -> None:
        port = next(p for p in range(56000, 56500) if _free(p))
        super().__init__(work / "pgdata", preferred_port=port)

    def restart(self) -> float:
        port = self.port
        began = time.monotonic()
        self.stop()
        self.start()
        assert self.port == port, f"restarted on {self.port}, not {port}"
        return time.monotonic() - began
