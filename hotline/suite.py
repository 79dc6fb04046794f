"""The all-in-one suite: every service's app on its own port in one process and one event
loop, sharing one bus (in memory unless ``AMQP_URL`` is set) and one PostgreSQL (the one in
``DATABASE_URL``, otherwise a private server started in ``<var dir>/pgdata``).

``python -m hotline.suite`` (what ``make run`` calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

import uvicorn

from shared.bus import make_bus
from shared.embedded_pg import EmbeddedPostgres
from shared.logging import configure_logging
from shared.runner import server_options
from shared.settings import DEFAULT_PORTS, CommonSettings, url_field

SERVICES = tuple(DEFAULT_PORTS)


def settings_class(service: str) -> Any:
    module = importlib.import_module(f"services.{service}.settings")
    return next(value for name, value in vars(module).items()
                if name.endswith("Settings") and value.__module__ == module.__name__)


def create_app_of(service: str) -> Any:
    return importlib.import_module(f"services.{service}.app").create_app


class _Server(uvicorn.Server):
    """uvicorn's own signal capture would let only one of the servers see Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Suite:
    common: CommonSettings
    servers: dict[str, _Server]
    database: EmbeddedPostgres | None


def peer_urls(common: CommonSettings, services: Iterable[str]) -> dict[str, str]:
    """Where the services find each other: each one's own host and port (``CTI_PORT`` ...),
    unless ``HOTLINE_<SERVICE>_URL`` says otherwise."""
    urls = {}
    for service in services:
        field = url_field(service)
        if field not in common.model_fields_set:
            settings = settings_class(service)(common=common)
            urls[field] = f"http://{settings.host}:{settings.port}"
    return urls


def build_suite(common: CommonSettings, services: Iterable[str] = SERVICES) -> Suite:
    """Each service's host and port come from its own settings (``CTI_PORT`` ...)."""
    services = tuple(services)
    database = None
    if not common.database_url:
        database = EmbeddedPostgres(common.var_dir / "pgdata", durable=common.embedded_pg_durable)
        url = database.start(detached=_keep_database())
        common = common.model_copy(update={"database_url": url})
    # One clock and one bus for all services, as in one deployment.
    clock = common.make_clock()
    common = common.model_copy(update={"time_origin": clock.origin,
                                       **peer_urls(common, services)})
    bus = make_bus(common.amqp_url, connection_name="hotline:all-in-one",
                   delivery_limit=common.delivery_limit, keep_unrouted=common.keep_unrouted)
    servers = {}
    for service in services:
        settings = settings_class(service)(common=common)
        app = create_app_of(service)(settings, bus=bus, clock=clock)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, lifespan="on",
                                **server_options(common))
        servers[service] = _Server(config)
    suite = Suite(common, servers, database)
    suite.bus = bus  # type: ignore[attr-defined]
    return suite


async def serve(suite: Suite, *, announce: bool = True) -> None:
    bus = suite.bus  # type: ignore[attr-defined]
    await bus.start()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in suite.servers.values():
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop)
    started = time.monotonic()
    tasks = [asyncio.create_task(server.serve(), name=f"serve:{name}")
             for name, server in suite.servers.items()]
    try:
        while not all(server.started for server in suite.servers.values()):
            failed = [task for task in tasks if task.done()]
            if failed:
                stop()
                raise RuntimeError(f"a service failed to start: {failed[0].get_name()}")
            await asyncio.sleep(0.05)
        if announce:
            _announce(suite, time.monotonic() - started)
        record_suite(suite)
        await asyncio.gather(*tasks)
    finally:
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        forget_suite(suite)


SUITE_RECORD = "suite.json"


def record_suite(suite: Suite) -> None:
    """Tell the CLI (``hotline replay``, ``hotline token``) where this suite is: a file in the
    var dir, removed when the suite stops."""
    record = {name: f"http://{server.config.host}:{server.config.port}"
              for name, server in suite.servers.items()}
    path = suite.common.var_dir / SUITE_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "urls": record}, indent=1))


def forget_suite(suite: Suite) -> None:
    with contextlib.suppress(OSError):
        (suite.common.var_dir / SUITE_RECORD).unlink()


def _announce(suite: Suite, seconds: float) -> None:
    common = suite.common
    lines = [f"Hotline all-in-one suite ready in {seconds:.1f}s "
             f"(bus: {'RabbitMQ' if common.amqp_url else 'in-memory'}, "
             f"time scale: {common.time_scale:g})"]
    for name, server in suite.servers.items():
        config = server.config
        lines.append(f"  {name:<12} http://{config.host}:{config.port}  "
                     f"(docs /docs, ready /ready)")
    db = common.database_url or ""
    embedded = suite.database
    lines.append(f"  database     {db.split('@')[-1]}"
                 + (f"  (embedded, {'durable' if embedded.durable else 'NOT durable'}, data in "
                    f"{embedded.data_dir})" if embedded else ""))
    if embedded is not None and embedded.moved:
        lines.append(f"               (the postgres user cannot reach {embedded.requested_dir},"
                     " so the data lives in the directory above)")
    lines.append(f"  signing key  {common.var_dir / 'dev-signing-key'} "
                 f"(hotline token --scope agent)" if not common.jwt_secret else
                 "  signing key  HOTLINE_JWT_SECRET")
    lines.append("  replay       hotline replay traces/sample-busy-hour.jsonl --speed 20")
    print("\n".join(lines), file=sys.stderr, flush=True)


def main() -> None:
    common = CommonSettings()
    configure_logging(common.log_level, common.log_json)
    suite = build_suite(common)
    try:
        asyncio.run(serve(suite))
    except KeyboardInterrupt:
        pass
    finally:
        if suite.database is not None and not _keep_database():
            suite.database.stop()


def _keep_database() -> bool:
    """``HOTLINE_KEEP_EMBEDDED_DB=1``: the private server outlives the suite (to inspect it)."""
    return os.environ.get("HOTLINE_KEEP_EMBEDDED_DB", "") == "1"


if __name__ == "__main__":
    main()
