"""A private PostgreSQL server for the all-in-one mode when ``DATABASE_URL`` is not set.

It lives in a data directory of ours, listens on loopback and a socket in that directory,
and trusts local connections. PostgreSQL refuses to run as root, so when we are root the
server runs as the ``postgres`` system user (the data directory is handed to it).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

DATABASE = "hotline"
SUPERUSER = "hotline"


def _bin_dir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries (initdb) not found; install postgresql "
                           "or set DATABASE_URL")
    return Path(candidates[0]).parent


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port")


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, preferred_port: int = 55432) -> None:
        self.data_dir = data_dir.resolve()
        self.preferred_port = preferred_port
        self.bin = _bin_dir()
        self.port: int | None = None
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid}
        result = subprocess.run(list(args), check=False, capture_output=True, text=True,
                                timeout=120, cwd="/", **kwargs)  # type: ignore[call-overload]
        if check and result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip()}")
        return result

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> str:
        """Initialise (first time), start (unless already running) and return the URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                      "--auth=trust", "-E", "UTF8", "--no-instructions")
        running = self._running_port()
        if running is not None:
            self.port = running
        else:
            self.port = _free_port(self.preferred_port)
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60",
                      "-l", str(self.data_dir / "server.log"), "-o",
                      f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
                      f"-c max_connections=300 -c fsync=off -c synchronous_commit=off", "start")
        self._ensure_database()
        return self.url

    def _running_port(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        status = self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "status",
                           check=False)
        if status.returncode != 0:
            return None
        lines = pid_file.read_text().splitlines()
        return int(lines[3]) if len(lines) > 3 else None

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            probe = self._run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", SUPERUSER, "-d", "postgres", "-tAc",
                              f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
                              check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded PostgreSQL did not answer: {probe.stderr}")
            time.sleep(0.2)
        if probe.stdout.strip() != "1":
            self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", SUPERUSER, DATABASE)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                  "stop", check=False)
