"""Prometheus metrics of one API instance: requests by route and status, their latency,
and reservation decisions by resource kind and outcome.

Each app has its own registry, so two apps in one process (tests, or an app mounted twice)
never clash over a metric name.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """The API's counters, in their own registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pipeline_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "pipeline_http_request_duration_seconds", "Time to answer an HTTP request.",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.decisions = Counter(
            "pipeline_reservation_decisions",
            "Reservation decisions made through the API, by resource kind, status and reason.",
            ["kind", "status", "reason"], registry=self.registry)
        self.seat_jobs = Counter(
            "pipeline_seat_jobs_enqueued", "Seat reservation jobs queued by /reserve_seat.",
            registry=self.registry)

    def decided(self, kind: str, status: str, reason: str | None) -> None:
        """Count one decision (``reason`` empty for a confirmation)."""
        self.decisions.labels(kind, status, reason or "").inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request under its route template (``/v1/products/{product_id}``),
    so ids in paths never explode the label set; unmatched paths count as ``unmatched``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
