"""Prometheus metrics of running workers, served by the worker process itself.

Nothing is counted twice: the worker already counts outcomes and handler latency in
``worker.stats`` (``pipeline.stats``); ``WorkerCollector`` turns those into metric families
when Prometheus scrapes, so the hot path makes no ``prometheus_client`` call at all. The lag
and pending gauges need Redis (XINFO GROUPS), so the HTTP endpoint runs on the worker's own
event loop (``MetricsServer``, a small asyncio server answering ``GET /metrics``) and awaits
them at scrape time, briefly; when Redis does not answer in time it reports the last values.

``pipeline worker --metrics-port N`` serves it; from Python::

    async with MetricsServer(port=9100) as server:
        server.watch(worker)
        await worker.run()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis.exceptions import ResponseError

from pipeline.connection import CONNECTION_ERRORS
from pipeline.logging import get_logger

if TYPE_CHECKING:
    from pipeline.stats import Stats
    from pipeline.worker import Worker

log = get_logger("pipeline.metrics")

#: a scrape waits at most this long for Redis (lag, pending), then reports the last values
REFRESH_TIMEOUT_S = 1.0
#: a request's head must arrive within this long and fit in this many bytes
READ_TIMEOUT_S = 5.0
MAX_HEAD = 16 * 1024

_LABELS = ["agent", "topic", "group"]
_STREAM_LABELS = ["topic", "partition", "group"]

#: (metric name without _total, help, Stats attribute)
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("pipeline_read", "Entries taken by the worker (read, re-read or reclaimed).", "read"),
    ("pipeline_failed",
     "Handler runs that raised or timed out (each then retried or dead-lettered).", "failed"),
    ("pipeline_retried", "Entries scheduled for a retry (settled into the delayed set).",
     "retried"),
    ("pipeline_dead_lettered",
     "Entries dead-lettered (permanent failures, exhausted attempts, poison entries).",
     "dead"),
    ("pipeline_reclaimed", "Entries claimed from consumers idle past the lease.", "reclaimed"),
    ("pipeline_lost", "Results discarded because the entry's lease was lost.", "lost"),
    ("pipeline_deleted", "Entries found deleted while pending (acked, not run).", "deleted"),
)
_OUTCOMES = (("done", "acked"), ("retried", "retried"), ("dead", "dead"))


class WorkerCollector(Collector):
    """Metric families read from the watched workers' stats when collected."""

    def __init__(self, workers: Sequence[Worker] = ()) -> None:
        self.workers: list[Worker] = list(workers)
        #: (topic, partition, group) -> (lag or None, pending): the last values read
        self.groups: dict[tuple[str, int, str], tuple[int | None, int]] = {}
        #: (topic, partition) -> the stream's entries-added counter, as last read
        self.added: dict[tuple[str, int], int] = {}

    def watch(self, worker: Worker) -> None:
        if worker not in self.workers:
            self.workers.append(worker)

    async def refresh(self, timeout: float = REFRESH_TIMEOUT_S) -> bool:
        """Read lag and pending of the watched groups and the entries added to their streams
        (XINFO GROUPS and STREAM, one round trip per stream); False when Redis did not answer
        in ``timeout`` (the last values stay)."""
        by_stream: dict[str, tuple[Worker, set[str]]] = {}
        for w in self.workers:
            by_stream.setdefault(w.keys.stream, (w, set()))[1].add(w.group)
        try:
            async with asyncio.timeout(timeout):
                for stream, (w, names) in by_stream.items():
                    pipe = w.redis.pipeline(transaction=False)
                    pipe.xinfo_groups(stream)
                    pipe.xinfo_stream(stream)
                    rows, info = await pipe.execute()
                    self.added[(w.keys.topic, w.keys.partition)] = int(info["entries-added"])
                    for row in rows:
                        name = _text(row["name"])
                        if name in names:
                            lag = row.get("lag")
                            self.groups[(w.keys.topic, w.keys.partition, name)] = (
                                None if lag is None else int(lag), int(row["pending"]))
        except (*CONNECTION_ERRORS, ResponseError, TimeoutError) as exc:  # type: ignore[misc]
            log.debug("metrics_refresh_failed", error=repr(exc))
            return False
        return True

    def _totals(self) -> dict[tuple[str, str, str], list[Stats]]:
        out: dict[tuple[str, str, str], list[Stats]] = {}
        for w in self.workers:
            out.setdefault((w.agent.name, w.keys.topic, w.group), []).append(w.stats)
        return out

    def collect(self) -> Iterable[Metric]:
        totals = self._totals()
        handled = CounterMetricFamily(
            "pipeline_handled", "Entries settled, by outcome: done (acked), retried, dead "
            "(dead-lettered).", labels=[*_LABELS, "outcome"])
        for labels, stats in totals.items():
            for outcome, attr in _OUTCOMES:
                handled.add_metric([*labels, outcome], sum(getattr(s, attr) for s in stats))
        yield handled
        for name, doc, attr in _COUNTERS:
            family = CounterMetricFamily(name, doc, labels=_LABELS)
            for labels, stats in totals.items():
                family.add_metric(list(labels), sum(getattr(s, attr) for s in stats))
            yield family
        yield self._latency(totals)
        lag = GaugeMetricFamily("pipeline_lag", "Entries of the stream not yet delivered to "
                                "the group (XINFO GROUPS lag).", labels=_STREAM_LABELS)
        pending = GaugeMetricFamily("pipeline_pending", "Entries delivered to the group and "
                                    "not yet acked (XINFO GROUPS pending).",
                                    labels=_STREAM_LABELS)
        for (topic, partition, group), (n_lag, n_pending) in sorted(self.groups.items()):
            at = [topic, str(partition), group]
            if n_lag is not None:
                lag.add_metric(at, n_lag)
            pending.add_metric(at, n_pending)
        yield lag
        yield pending
        added = CounterMetricFamily(
            "pipeline_stream_entries_added", "Entries ever appended to the stream, by any "
            "producer (XINFO STREAM entries-added; retries moved back count too).",
            labels=["topic", "partition"])
        for (topic, partition), n in sorted(self.added.items()):
            added.add_metric([topic, str(partition)], n)
        yield added

    @staticmethod
    def _latency(totals: dict[tuple[str, str, str], list[Stats]]) -> Metric:
        family = HistogramMetricFamily(
            "pipeline_handler_duration_seconds", "Time a handler ran, per run (failed runs "
            "too).", labels=_LABELS)
        for labels, stats in totals.items():
            buckets: list[tuple[str, float]] = []
            for parts in zip(*(s.latency.cumulative() for s in stats), strict=True):
                buckets.append((parts[0][0], float(sum(n for _, n in parts))))
            family.add_metric(list(labels), buckets, sum(s.latency.total for s in stats))
        return family


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) of the watched workers plus the process's
    own (CPU, memory, file descriptors), on the running event loop; 404 elsewhere."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 collector: WorkerCollector | None = None) -> None:
        self.host = host
        self.port = port
        self.collector = collector or WorkerCollector()
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        self._server: asyncio.Server | None = None

    def watch(self, worker: Worker) -> None:
        self.collector.watch(worker)

    async def start(self) -> str:
        """Listen; returns the URL. Raises ``OSError`` when the address cannot be bound
        (a port taken, a host not of this machine)."""
        self._server = await asyncio.start_server(self._answer, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics_listening", host=self.host, port=self.port, url=self.url)
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def render(self) -> bytes:
        """The exposition text, with lag and pending read now (or the last values)."""
        await self.collector.refresh()
        return generate_latest(self.registry)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            status, headers, body = await self._respond(head)
            method = head.split(b" ", 1)[0]
            lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}",
                     "Connection: close", "", ""]
            writer.write("\r\n".join(lines).encode("latin-1"))
            if method != b"HEAD":
                writer.write(body)
            await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, head: bytes) -> tuple[str, list[str], bytes]:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", _TEXT, b"bad request: expected GET /metrics HTTP/1.1\n"
        method, path = parts[0], parts[1].split(b"?", 1)[0]
        if path != b"/metrics":
            return "404 Not Found", _TEXT, b"not found: metrics are at /metrics\n"
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", [*_TEXT, "Allow: GET, HEAD"], \
                b"method not allowed: use GET\n"
        return "200 OK", [f"Content-Type: {CONTENT_TYPE_LATEST}"], await self.render()


_TEXT = ["Content-Type: text/plain; charset=utf-8"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

