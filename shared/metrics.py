"""Prometheus metrics, one registry per app (several apps share the all-in-one process)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.db import DbStats
from shared.envelope import Envelope


class _DbCollector(Collector):
    def __init__(self, stats: DbStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("hotline_db_statements", "SQL statements sent",
                                  value=self.stats.statements)
        yield CounterMetricFamily("hotline_db_commits", "Transactions committed",
                                  value=self.stats.commits)


class Metrics:
    def __init__(self, service: str, db_stats: DbStats | None = None) -> None:
        self.registry = CollectorRegistry()
        if db_stats is not None:
            self.registry.register(_DbCollector(db_stats))
        # Work items per writer batch, and how long a batch took (its transaction included).
        self._batch_items = Histogram(
            "hotline_writer_batch_items", "Work items per writer batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self._batch_seconds = Histogram(
            "hotline_writer_batch_seconds", "Wall time of one writer batch",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2),
            registry=self.registry)
        labels = {"service": service}
        self.http_requests = Counter(
            "hotline_http_requests", "HTTP requests handled", ["method", "route", "status"],
            registry=self.registry).labels  # bound below per call
        self._http_latency = Histogram(
            "hotline_http_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry)
        self._published = Counter("hotline_events_published", "Events published", ["type"],
                                  registry=self.registry)
        self._consumed = Counter("hotline_events_consumed", "Events consumed",
                                 ["queue", "type", "outcome"], registry=self.registry)
        self.outbox_pending = Gauge("hotline_outbox_pending", "Outbox rows not yet published",
                                    registry=self.registry)
        self.info = Gauge("hotline_service_info", "Service identity", list(labels),
                          registry=self.registry)
        self.info.labels(**labels).set(1)

    def batch(self, items: int, seconds: float) -> None:
        self._batch_items.observe(items)
        self._batch_seconds.observe(seconds)

    def published(self, envelope: Envelope) -> None:
        self._published.labels(envelope.type).inc()

    def consumed(self, queue: str, envelope: Envelope, outcome: str) -> None:
        self._consumed.labels(queue, envelope.type, outcome).inc()

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests(method, route, str(status)).inc()
        self._http_latency.labels(method, route).observe(seconds)


class MetricsMiddleware:
    """Counts requests by route template (not raw path, which would explode cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.observe_http(scope["method"], template, status,
                                      time.perf_counter() - started)
