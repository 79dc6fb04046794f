"""Prometheus metrics, one registry per app (several apps share the all-in-one process)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.envelope import Envelope


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
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
