"""Fixtures shared by every test: a private PostgreSQL database and RabbitMQ vhost per test,
tokens, and an in-process client for a service app (lifespan included)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from shared.auth import Auth
from shared.settings import CommonSettings

# Fixtures that reach a server: a test using one is a service test (PostgreSQL) or an
# integration test (RabbitMQ too); any other test not marked otherwise is a unit test.
POSTGRES_FIXTURES = frozenset({"database_url", "common"})
LAYERS = frozenset({"integration", "e2e", "soak"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(mark.name in LAYERS for mark in item.iter_markers()):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if "amqp_url" in fixtures:
            item.add_marker(pytest.mark.integration)
        elif fixtures & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.service)
        else:
            item.add_marker(pytest.mark.unit)


PG_ADMIN_URL = os.environ.get("HOTLINE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_BASE = os.environ.get("HOTLINE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
TEST_SECRET = "test-secret-" + "x" * 40


async def create_database() -> str:
    name = f"hotline_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


@contextlib.contextmanager
def private_vhost() -> Any:
    vhost = f"hotline-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def amqp_url() -> Any:
    with private_vhost() as vhost:
        yield f"{AMQP_BASE}/{vhost}"


@pytest.fixture
def auth() -> Auth:
    return Auth(TEST_SECRET)


@pytest.fixture
def common(database_url: str, tmp_path: Any) -> CommonSettings:
    """Settings for a service under test: private database, in-memory bus, test secret."""
    return CommonSettings(database_url=database_url, amqp_url=None, jwt_secret=TEST_SECRET,
                          var_dir=tmp_path / "var", log_json=False)


def bearer(auth: Auth, *scopes: str, subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.mint(subject, list(scopes))}"}


@contextlib.asynccontextmanager
async def uvicorn_serving(app: FastAPI, **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn in this event loop on a free port (with uvicorn
    ``options``); yield ``host:port``."""
    import asyncio
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **{"log_config": None, **options}))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), timeout=60)
        if task.done():
            task.result()
            raise RuntimeError("server exited during startup")
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@contextlib.asynccontextmanager
async def running(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan and give an httpx client talking to it in-process."""
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await ``check`` (sync or async) until it returns something truthy; fail on timeout."""
    import asyncio
    import inspect
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def close_broker_connections(vhost: str) -> int:
    """Close, from the broker's side, every client connection to ``vhost`` (ours only)."""
    closed = 0
    for line in rabbitmqctl("list_connections", "pid", "vhost").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1] == vhost:
            rabbitmqctl("close_connection", parts[0], "test closes the connection")
            closed += 1
    return closed
