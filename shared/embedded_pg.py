"""A private PostgreSQL server for the all-in-one mode when ``DATABASE_URL`` is not set.

It lives in a data directory of ours, listens on loopback and a socket in that directory,
trusts local connections, and runs as a child of the suite that dies with it (the kernel's
parent-death signal asks it for a fast shutdown), so a suite killed outright leaves no server
behind. PostgreSQL refuses to run as root, so when we are root the server runs as the
``postgres`` system user: the data directory is handed to that user, and when the user cannot
reach it (a clone under a private home, mode 700) the data goes to a directory of its own
under ``/var/tmp`` instead, named after the one asked for, and the suite says so.

Durable by default (fsync and synchronous commits on: a crash of the machine loses no
accepted case); ``durable=False`` trades that for speed on a scratch suite.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

from shared.lifeline import die_with_parent

DATABASE = "hotline"
SUPERUSER = "hotline"
FALLBACK_ROOT = Path("/var/tmp")


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
            # As PostgreSQL binds: a port whose last connections linger in TIME_WAIT is free
            # to it, so a restarted server keeps the port its clients' URLs name.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port")


def reachable_by(user: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``user`` can traverse every existing directory above ``path``."""
    groups = {user.pw_gid, *(g.gr_gid for g in _groups_of(user.pw_name))}
    for directory in path.parents:
        try:
            info = directory.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _groups_of(name: str) -> list[grp.struct_group]:
    return [g for g in grp.getgrall() if name in g.gr_mem]


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, preferred_port: int = 55432, *,
                 durable: bool = True) -> None:
        self.requested_dir = data_dir.resolve()
        self.data_dir = self.requested_dir
        self.preferred_port = preferred_port
        self.durable = durable
        self.bin = _bin_dir()
        self.port: int | None = None
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None and not reachable_by(self._user, self.data_dir):
            digest = hashlib.sha1(str(self.requested_dir).encode()).hexdigest()[:12]
            self.data_dir = FALLBACK_ROOT / f"hotline-pgdata-{digest}"
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def moved(self) -> bool:
        """The data is not where it was asked for (the postgres user cannot reach it)."""
        return self.data_dir != self.requested_dir

    def _as_postgres(self) -> dict[str, int]:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid}

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
            list(args), check=False, capture_output=True, text=True, timeout=120, cwd="/",
            **self._as_postgres())
        if check and result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr.strip()}")
        return result

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _options(self) -> list[str]:
        options = ["-p", str(self.port), "-k", str(self.data_dir),
                   "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                        "-c", "full_page_writes=off"]
        return options

    def start(self, *, detached: bool = False) -> str:
        """Initialise (first time), start (unless already running) and return the URL.
        ``detached``: a server that outlives this process (``pg_ctl``), for keeping the
        database after the suite stops."""
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
            if detached:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t",
                          "60", "-l", str(self.data_dir / "server.log"), "-o",
                          " ".join(self._options()), "start")
            else:
                log = open(self.data_dir / "server.log", "ab")
                # SIGINT is PostgreSQL's fast shutdown: what a dead suite asks of it.
                self._server = subprocess.Popen(
                    [str(self.bin / "postgres"), "-D", str(self.data_dir), *self._options()],
                    stdout=log, stderr=subprocess.STDOUT, cwd="/",
                    preexec_fn=die_with_parent(signal.SIGINT),
                    **self._as_postgres())  # type: ignore[call-overload]
                log.close()
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
            if self._server is not None and self._server.poll() is not None:
                raise RuntimeError("embedded PostgreSQL exited; see "
                                   f"{self.data_dir / 'server.log'}")
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
        server, self._server = self._server, None
        if server is None:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                      "stop", check=False)
            return
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        with contextlib.suppress(OSError):
            server.wait(timeout=0)
