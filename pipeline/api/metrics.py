"""Prometheus metrics of one API instance: requests by route and status, their latency,
reservation decisions by resource kind and outcome, events produced, and the pipeline's
streams (length, delayed, dead letters; lag and pending per group) read at scrape time.

Each app has its own registry, so two apps in one process (tests, or an app mounted twice)
never clash over a metric name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import ResponseError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.connection import CONNECTION_ERRORS
from pipeline.keys import job_topic
from pipeline.logging import get_logger
from pipeline.reservations import SEAT_QUEUE, TOPIC
from pipeline.streams import StreamStats, stream_stats

log = get_logger("pipeline.api.metrics")

#: a scrape waits at most this long for the stream figures, then reports the last ones
STREAMS_TIMEOUT_S = 2.0
#: figures younger than this are served again instead of being read anew
STREAMS_FRESH_S = 1.0


class StreamsCollector(Collector):
    """Gauges of every stream and group, from the last ``stream_stats`` read."""

    def __init__(self) -> None:
        self.stats: list[StreamStats] = []
        self.read_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, redis: aioredis.Redis) -> bool:
        """Read the figures now (at most once per ``STREAMS_FRESH_S``, waiting at most
        ``STREAMS_TIMEOUT_S``); False when Redis did not answer (the last figures stay)."""
        async with self._lock:
            if time.monotonic() - self.read_at < STREAMS_FRESH_S:
                return True
            try:
                async with asyncio.timeout(STREAMS_TIMEOUT_S):
                    self.stats = await stream_stats(redis)
            except (*CONNECTION_ERRORS, ResponseError, TimeoutError) as exc:  # type: ignore[misc]
                log.debug("metrics_streams_unread", error=repr(exc))
                return False
            self.read_at = time.monotonic()
            return True

    def collect(self) -> Iterable[Metric]:
        where = ["topic", "partition"]
        length = GaugeMetricFamily("pipeline_stream_length", "Entries in the stream (XLEN).",
                                   labels=where)
        delayed = GaugeMetricFamily("pipeline_delayed", "Entries waiting in the delayed set "
                                    "(retries and delayed jobs).", labels=where)
        dead = GaugeMetricFamily("pipeline_dead_letters", "Entries in the dead-letter "
                                 "stream.", labels=where)
        lag = GaugeMetricFamily("pipeline_lag", "Entries of the stream not yet delivered to "
                                "the group (XINFO GROUPS lag).", labels=[*where, "group"])
        pending = GaugeMetricFamily("pipeline_pending", "Entries delivered to the group and "
                                    "not yet acked (XINFO GROUPS pending).",
                                    labels=[*where, "group"])
        for s in self.stats:
            at = [s.topic, str(s.partition)]
            length.add_metric(at, s.length)
            delayed.add_metric(at, s.delayed)
            dead.add_metric(at, s.dead)
            for g in s.groups:
                if g.lag is not None:
                    lag.add_metric([*at, g.group], g.lag)
                pending.add_metric([*at, g.group], g.pending)
        yield from (length, delayed, dead, lag, pending)


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
        self.produced = Counter(
            "pipeline_produced", "Events this API appended to a topic's stream (reservation "
            "decisions to the ledger, seat jobs to their queue).", ["topic"],
            registry=self.registry)
        self.streams = StreamsCollector()
        self.registry.register(self.streams)

    def decided(self, kind: str, status: str, reason: str | None) -> None:
        """Count one new decision (``reason`` empty for a confirmation): each is one event
        on the ledger."""
        self.decisions.labels(kind, status, reason or "").inc()
        self.produced.labels(TOPIC).inc()

    def seat_job_queued(self, queue: str = SEAT_QUEUE) -> None:
        """Count one seat job put on ``queue``."""
        self.seat_jobs.inc()
        self.produced.labels(job_topic(queue)).inc()

    def render(self) -> bytes:
        """The text exposition format (stream figures as last read)."""
        return generate_latest(self.registry)

    async def scrape(self, redis: aioredis.Redis) -> bytes:
        """The text exposition format, with the stream figures read now when Redis answers
        in time (else the last ones)."""
        await self.streams.refresh(redis)
        return self.render()


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
