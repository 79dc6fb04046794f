"""The service kit: what every Hotline service has, wired once.

A service module builds a :class:`Service`, registers consumers and background tasks on it,
and returns ``service.create_app(...)`` from its own ``create_app(settings)``. The app's
lifespan creates the engine, migrates the service's schema, connects the bus (or uses the
shared in-memory one it was given), starts consumers and the outbox relay, and mounts
``/health``, ``/ready`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import MetaData, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.auth import Auth, signing_secret
from shared.bus import Bus, make_bus
from shared.clock import Clock
from shared.consumers import Consumes
from shared.db import DbStats, Reader, database_unavailable, make_engine, run_migrations
from shared.docs import add_offline_docs
from shared.envelope import Envelope
from shared.errors import DomainError
from shared.input_guard import InputGuard, InputLimits
from shared.logging import configure_logging
from shared.messaging import (
    Messaging,
    Prepare,
    Transaction,
    messaging_tables,
    raise_if_cancelling,
)
from shared.metrics import Metrics, MetricsMiddleware
from shared.settings import ServiceSettings

log = structlog.get_logger(__name__)

Hook = Callable[[], Awaitable[None]]
SERVICE_TOKEN_TTL = 24 * 3600


_ERROR_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["detail"],
    "properties": {"detail": {"description": "what is wrong: a message, or FastAPI's list "
                                             "of {loc, msg, type}"}}}}}}
# What every route may answer besides its own results (declared in the OpenAPI documents).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or one that is invalid or expired", **_ERROR_BODY},
    403: {"description": "the token's scopes or data scope do not allow this", **_ERROR_BODY},
    413: {"description": "the body is larger than the limit", **_ERROR_BODY},
    422: {"description": "a field is invalid (its place is named)", **_ERROR_BODY},
}


class ServiceToken(httpx.Auth):
    """The service's own bearer token on its calls to the others (unless a call carries
    another), minted again when half its life is gone (a process outlives any one token:
    tokens have a maximum lifetime)."""

    def __init__(self, auth: Auth, name: str) -> None:
        self.auth, self.name = auth, name
        self.ttl = min(SERVICE_TOKEN_TTL, auth.max_lifetime_seconds)
        self._token, self._renew_at = "", 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:
            yield request  # a call made with another token (an agent's, the operator's)
            return
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = self.auth.mint(self.name, ["service"], ttl_seconds=self.ttl)
            self._renew_at = now + self.ttl / 2
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class Service:
    def __init__(self, name: str, schema: str, settings: ServiceSettings, *, metadata: MetaData,
                 migrations_dir: Path, bus: Bus | None = None, clock: Clock | None = None,
                 defer_consumers: bool = False, writer_sessions: bool = True) -> None:
        self.name = name
        # True: the lifespan starts the outbox relay but not the consumers; the service calls
        # start_consumers() when it may consume (acd_router's standby must not).
        self.defer_consumers = defer_consumers
        # False: handlers in the writer run prepared SQL only (``tx.session`` refused), which
        # lets the writer keep one connection of its own.
        self.writer_sessions = writer_sessions
        # Extra fields for the /ready body (e.g. acd_router's active/standby role).
        self.ready_info: Callable[[], dict[str, Any]] | None = None
        self.schema = schema
        self.settings = settings
        self.common = settings.common
        self.clock: Clock = clock or self.common.make_clock()
        self.metadata = metadata
        self.tables = messaging_tables(metadata)
        self.migrations_dir = migrations_dir
        self.db_stats = DbStats()
        self.metrics = Metrics(name, self.db_stats)
        self._given_bus = bus
        self._consumers: list[tuple[str, Consumes, bool, Prepare | None]] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._background: list[Hook] = []
        self._tasks: list[asyncio.Task[None]] = []
        # Set by the lifespan:
        self.engine: AsyncEngine
        self.sessions: async_sessionmaker[AsyncSession]
        self.bus: Bus
        self.messaging: Messaging
        self.auth: Auth
        self.http: httpx.AsyncClient

    # -- registration (before start) ---------------------------------------------------------

    def consume(self, purpose: str, consumes: Consumes, *, staged: bool = False,
                prepare: Prepare | None = None) -> None:
        """Consume on queue ``<service>.<purpose>`` the events ``consumes`` has handlers
        for; each handler runs inside the transaction that also records the event id
        (inbox). ``staged``: the handlers write only through ``tx.stage`` and ``tx.emit``
        (no savepoint); ``prepare``: a lookup made with each delivery's event before the
        writer takes it (``tx.prepared``)."""
        self._consumers.append((purpose, consumes, staged, prepare))

    def on_startup(self, hook: Hook) -> Hook:
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._shutdown.append(hook)
        return hook

    def background(self, task: Hook) -> Hook:
        """A long-running coroutine started once consumers run; cancelled on shutdown."""
        self._background.append(task)
        return task

    # -- runtime -----------------------------------------------------------------------------

    def transaction(self, cause: Envelope | None = None
                    ) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """A unit of work committed on its own (a REST request that answers with it)."""
        return self.messaging.transaction(cause)

    async def run(self, work: Callable[[Transaction], Awaitable[Any]], *,
                  cause: Envelope | None = None, staged: bool = False) -> Any:
        """Run ``work(tx)`` in the service's writer (batched with the deliveries); its result
        once committed."""
        return await self.messaging.run(work, cause=cause, staged=staged)

    def now(self) -> Any:
        return self.clock.now()

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Reader]:
        """Reads with SQL written once, on a pooled connection outside any transaction."""
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            yield Reader(raw.driver_connection, self.db_stats)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        """One read with SQL written once (a REST route on a hot path)."""
        async with self.reader() as db:
            return await db.fetchrow(sql, *args)

    async def start_consumers(self) -> None:
        """Start the registered consumers if the lifespan deferred them (idempotent)."""
        await self.messaging.start_consumers()

    async def ready(self) -> dict[str, bool]:
        checks = {"database": False, "bus": False}
        with contextlib.suppress(Exception):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = True
        with contextlib.suppress(Exception):
            checks["bus"] = await self.bus.healthy()
        return checks

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        common = self.common
        configure_logging(common.log_level, common.log_json)
        structlog.contextvars.bind_contextvars(service=self.name)
        if not common.database_url:
            raise RuntimeError("DATABASE_URL is not set (make run starts a private server)")
        self.auth = Auth(signing_secret(common), previous=tuple(common.jwt_previous_secrets),
                         audience=self.name,
                         max_lifetime_seconds=common.token_max_lifetime_seconds)
        app.state.auth = self.auth
        self.engine = make_engine(common.database_url, pool_size=common.db_pool_size,
                                  max_overflow=common.db_max_overflow, stats=self.db_stats)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        own_bus = self._given_bus is None
        try:
            await run_migrations(self.engine, self.migrations_dir, self.schema)
            self.bus = self._given_bus or make_bus(
                common.amqp_url, connection_name=f"hotline:{self.name}",
                delivery_limit=common.delivery_limit, keep_unrouted=common.keep_unrouted)
            if own_bus:
                await self.bus.start()
            self.messaging = Messaging(self.name, self.engine, self.tables, self.bus, self.clock,
                                       stats=self.db_stats, writer_sessions=self.writer_sessions,
                                       on_published=self.metrics.published,
                                       on_consumed=self.metrics.consumed,
                                       on_batch=self.metrics.batch)
            for purpose, consumes, staged, prepare in self._consumers:
                self.messaging.consume(purpose, consumes, staged=staged, prepare=prepare)
            # Connections to the peers kept open: a busy service (the replay's desktops above
            # all) would otherwise open one per request beyond httpx's default twenty.
            self.http = httpx.AsyncClient(
                auth=ServiceToken(self.auth, self.name), timeout=10.0,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200))
            for hook in self._startup:
                await hook()
            await self.messaging.start(consumers=not self.defer_consumers)
            self._tasks = [asyncio.create_task(self._guard(task), name=f"{self.name}:{task.__name__}")
                           for task in self._background]
            log.info("service started", port=getattr(self.settings, "port", None))
            yield
        finally:
            for running in self._tasks:
                running.cancel()
            for running in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            if hasattr(self, "messaging"):
                await self.messaging.stop()
            for hook in self._shutdown:
                with contextlib.suppress(Exception):
                    await hook()
            if hasattr(self, "http"):
                await self.http.aclose()
            if own_bus and hasattr(self, "bus"):
                await self.bus.close()
            await self.engine.dispose()

    async def _guard(self, task: Hook) -> None:
        """Keep a background loop alive: log and restart it if it crashes."""
        while True:
            try:
                await task()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                raise_if_cancelling()
                log.exception("background task crashed; restarting", task=task.__name__)
                await asyncio.sleep(1.0)

    def create_app(self, *, title: str, description: str, routers: list[APIRouter],
                   limits: InputLimits | None = None) -> FastAPI:
        app = FastAPI(title=title, description=description, version="0.1.0",
                      lifespan=self._lifespan, docs_url=None, redoc_url=None)
        add_offline_docs(app)
        app.state.service = self
        app.add_middleware(InputGuard, limits=limits or InputLimits())
        app.add_middleware(MetricsMiddleware, metrics=self.metrics)
        app.add_exception_handler(DomainError, _domain_error_response)  # type: ignore[arg-type]
        for raised in (asyncpg.DataError, DBAPIError, asyncpg.PostgresConnectionError,
                       asyncpg.ConnectionDoesNotExistError,
                       asyncpg.exceptions.OperatorInterventionError, ConnectionError):
            app.add_exception_handler(raised, _database_error_response)
        app.include_router(self._ops_router())
        for router in routers:
            app.include_router(router, responses=ERROR_RESPONSES)
        return app

    def _ops_router(self) -> APIRouter:
        router = APIRouter(tags=["operations"])

        @router.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok", "service": self.name}

        @router.get("/ready")
        async def ready() -> JSONResponse:
            checks = await self.ready()
            ok = all(checks.values())
            body: dict[str, Any] = {"ready": ok, "service": self.name, "checks": checks}
            if self.ready_info is not None:
                body.update(self.ready_info())
            return JSONResponse(body, status_code=200 if ok else 503)

        @router.get("/metrics")
        async def metrics() -> Response:
            with contextlib.suppress(Exception):
                self.metrics.outbox_pending.set(await self.messaging.pending_count())
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return router


async def _domain_error_response(_: Request, error: DomainError) -> JSONResponse:
    return JSONResponse({"detail": error.detail()}, status_code=error.status_code)


def _data_error(error: BaseException) -> asyncpg.DataError | None:
    """The PostgreSQL data error behind ``error`` (SQLAlchemy wraps asyncpg's), if any."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None or isinstance(seen, asyncpg.DataError):
            return seen
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


async def _database_error_response(request: Request, error: Exception) -> JSONResponse:
    """A database that cannot be reached is 503 (retry). A value PostgreSQL refuses (too
    long for its column, out of an integer's range, a date it cannot hold) is the client's
    mistake: 422, not 500. The message names the kind of error, never the value (it may be
    a phone number)."""
    if database_unavailable(error):
        # A restart or a failover, not the request's fault: ask the client to retry. The
        # pool has dropped the dead connection, so the retry gets a fresh one.
        log.warning("database unavailable for a request", path=request.url.path)
        return JSONResponse({"detail": {"error": "database_unavailable",
                                        "message": "the database cannot be reached; retry"}},
                            status_code=503, headers={"Retry-After": "1"})
    found = _data_error(error)
    if found is None:
        raise error
    log.info("value refused by the database", path=request.url.path,
             sqlstate=getattr(found, "sqlstate", None), kind=type(found).__name__)
    return JSONResponse({"detail": [{
        "loc": ["body"], "type": "value_error",
        "msg": f"a value does not fit where it is stored ({type(found).__name__})"}]},
        status_code=422)


def service_of(request: Request) -> Any:
    """FastAPI dependency body: the running :class:`Service` of this app."""
    return request.app.state.service


UNAUTHENTICATED_PATHS = frozenset({"/health", "/ready", "/metrics"})
