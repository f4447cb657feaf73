"""Prometheus metrics: a worker process serves exactly what it handled and XINFO's lag on
``--metrics-port``; the API's ``/metrics`` adds what it produced and every group's lag."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from pipeline.api import metrics as api_metrics
from pipeline.keys import Keys, job_topic
from pipeline.metrics import MetricsServer
from pipeline.producer import Outgoing, Producer
from pipeline.reservations import SEAT_QUEUE
from pipeline.reservations import TOPIC as LEDGER_TOPIC
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.testing import wait_for
from tests.metrics_agents import GROUP, KEYS, TOPIC, Metered
from tests.processes import PIPELINE, Proc, Procs
from tests.test_api_helpers import serving

pytestmark = pytest.mark.timeout(90)

SPEC = "tests.metrics_agents:agent"
LABELS = {"agent": "metered", "topic": TOPIC, "group": GROUP}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text: (name, labels) -> value."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def metrics_url(proc: Proc) -> str:
    async def listening() -> str | None:
        assert proc.alive, proc.output()
        for e in proc.events():
            if e.get("event") == "metrics_listening":
                return str(e["url"])
        return None

    url: str = await wait_for(listening, timeout=30, message="metrics_listening")
    return url


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        r = await client.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def produce(redis: aioredis.Redis, modes: list[str]) -> None:
    producer = Producer(redis, TOPIC)
    await producer.publish_many(Outgoing(Metered(n=n, mode=mode), f"m-{n}")  # type: ignore[arg-type]
                                for n, mode in enumerate(modes))


async def group_info(redis: aioredis.Redis, stream: str, group: str) -> dict[str, Any]:
    rows = await redis.xinfo_groups(stream)
    [row] = [r for r in rows if r["name"].decode() == group]
    return dict(row)


async def test_a_worker_serves_exactly_what_it_handled(redis: aioredis.Redis,
                                                         procs: Procs) -> None:
    proc = procs.worker(SPEC, "--metrics-port", "0", backoff_base_ms=10, backoff_max_ms=20)
    url = await metrics_url(proc)
    # 10 entries: 2 fail (dead-lettered), 2 fail once and then succeed, 6 succeed
    modes = ["fail", "retry_once", "ok", "ok", "ok"] * 2
    await produce(redis, modes)

    async def settled() -> Any:
        found = await scrape(url)
        done = value(found, "pipeline_handled_total", **LABELS, outcome="done")
        dead = value(found, "pipeline_handled_total", **LABELS, outcome="dead")
        return found if (done, dead) == (8, 2) else None

    found = await wait_for(settled, timeout=30, interval=0.1, message=procs.report())
    assert value(found, "pipeline_handled_total", **LABELS, outcome="retried") == 2
    assert value(found, "pipeline_retried_total", **LABELS) == 2
    assert value(found, "pipeline_dead_lettered_total", **LABELS) == 2
    assert value(found, "pipeline_failed_total", **LABELS) == 4
    # the two retried entries came back as new entries: 12 taken, 12 handler runs
    assert value(found, "pipeline_read_total", **LABELS) == 12
    assert value(found, "pipeline_handler_duration_seconds_count", **LABELS) == 12
    assert value(found, "pipeline_handler_duration_seconds_bucket", **LABELS, le="+Inf") == 12
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in found.items()
                     if k[0] == "pipeline_handler_duration_seconds_bucket")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert (value(found, "pipeline_handler_duration_seconds_sum", **LABELS) or 0) > 0
    info = await group_info(redis, KEYS.stream, GROUP)
    at = {"topic": TOPIC, "partition": "0", "group": GROUP}
    assert value(found, "pipeline_lag", **at) == info["lag"] == 0
    assert value(found, "pipeline_pending", **at) == info["pending"] == 0
    assert await redis.xlen(KEYS.dead) == 2
    added = (await redis.xinfo_stream(KEYS.stream))["entries-added"]
    assert value(found, "pipeline_stream_entries_added_total", topic=TOPIC,
                 partition="0") == added == 12


async def test_the_lag_gauge_is_what_xinfo_says(redis: aioredis.Redis, procs: Procs) -> None:
    # one entry held forever, one at a time: the five behind it are not delivered
    proc = procs.worker(SPEC, "--metrics-port", "0", concurrency=1, prefetch=1)
    url = await metrics_url(proc)
    await produce(redis, ["hold"] + ["ok"] * 5)
    await wait_for(lambda: _pending_is(redis, 1), timeout=30, message=procs.report())
    found = await scrape(url)
    info = await group_info(redis, KEYS.stream, GROUP)
    at = {"topic": TOPIC, "partition": "0", "group": GROUP}
    assert value(found, "pipeline_lag", **at) == info["lag"] == 5
    assert value(found, "pipeline_pending", **at) == info["pending"] == 1
    assert value(found, "pipeline_handled_total", **LABELS, outcome="done") == 0


async def _pending_is(redis: aioredis.Redis, n: int) -> bool:
    groups = await redis.xinfo_groups(KEYS.stream)
    return any(g["name"].decode() == GROUP and g["pending"] == n for g in groups)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_metrics_port_is_exit_2_before_the_worker_starts(
        procs: Procs, taken_port: int) -> None:
    proc = procs.worker(SPEC, "--metrics-port", str(taken_port))
    assert proc.popen.wait(60) == 2, proc.output()
    out = proc.output()
    assert f"error: cannot serve metrics on 127.0.0.1:{taken_port}" in out
    assert len([line for line in out.splitlines() if line.startswith("error:")]) == 1
    assert not proc.started


@pytest.mark.parametrize("port", ["-1", "65536", "http"])
def test_a_bad_metrics_port_is_a_usage_error(server: EmbeddedServer, tmp_path: Any,
                                             port: str) -> None:
    result = subprocess.run([str(PIPELINE), "--redis-url", server.url, "worker", SPEC,
                             "--metrics-port", port], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--metrics-port" in lines[0], result.stderr


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_the_metrics_server_answers_only_get_metrics() -> None:
    async with MetricsServer(port=0) as server:
        ok = await raw(server.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"process_cpu_seconds_total" in ok
        head = await raw(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
        assert (await raw(server.port, b"GET / HTTP/1.1\r\n\r\n")).startswith(
            b"HTTP/1.1 404 Not Found\r\n")
        post = await raw(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
        assert b"Allow: GET, HEAD\r\n" in post
        assert (await raw(server.port, b"nonsense\r\n\r\n")).startswith(
            b"HTTP/1.1 400 Bad Request\r\n")


async def test_the_api_counts_what_it_produced_and_shows_every_groups_lag(
        redis: aioredis.Redis, settings: Settings) -> None:
    ledger = Keys(LEDGER_TOPIC, 0).stream
    async with serving(redis, settings) as (_, client):
        before = await redis.xlen(ledger)
        for body in ({"resource_id": "1", "quantity": 1}, {"resource_id": "2", "quantity": 99},
                     {"resource_id": "77", "quantity": 1}):
            await client.post("/v1/reservations", json=body)
        await client.get("/reserve_product/3")
        for _ in range(2):
            assert (await client.get("/reserve_seat")).json() == {
                "status": "Reservation in process"}
        await redis.xgroup_create(ledger, "watcher", id="0")
        r = await client.get("/metrics")
        assert r.status_code == 200
        found = samples(r.text)
        # confirmed, rejected and unknown: each is one event on the ledger
        assert value(found, "pipeline_produced_total", topic=LEDGER_TOPIC) == 4
        assert await redis.xlen(ledger) - before == 4
        seats = job_topic(SEAT_QUEUE)
        assert value(found, "pipeline_produced_total", topic=seats) == 2
        assert await redis.xlen(Keys(seats, 0).stream) == 2
        info = await group_info(redis, ledger, "watcher")
        at = {"topic": LEDGER_TOPIC, "partition": "0"}
        assert value(found, "pipeline_lag", **at, group="watcher") == info["lag"]
        assert info["lag"] == await redis.xlen(ledger)
        assert value(found, "pipeline_pending", **at, group="watcher") == 0
        assert value(found, "pipeline_stream_length", **at) == await redis.xlen(ledger)
        assert value(found, "pipeline_dead_letters", **at) == 0
        # the HTTP metrics are still there
        assert value(found, "pipeline_http_requests_total", method="POST",
                     route="/v1/reservations", status="201") == 1


async def test_the_api_metrics_answer_with_the_last_figures_while_redis_is_away(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_metrics, "STREAMS_FRESH_S", 0.0)  # every scrape reads anew
    ledger = Keys(LEDGER_TOPIC, 0).stream
    async with serving(redis, settings) as (_, client):
        await redis.xgroup_create(ledger, "watcher", id="0")
        first = samples((await client.get("/metrics")).text)
        lag = value(first, "pipeline_lag", topic=LEDGER_TOPIC, partition="0", group="watcher")
        assert lag == await redis.xlen(ledger)
        server.stop()
        r = await client.get("/metrics")
        assert r.status_code == 200
        again = samples(r.text)
        assert value(again, "pipeline_lag", topic=LEDGER_TOPIC, partition="0",
                     group="watcher") == lag
