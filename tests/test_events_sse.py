"""``GET /v1/events`` of a real ``pipeline serve`` over loopback, read with httpx streaming:
a job's events in order, resuming with ``Last-Event-ID``, the default topics, keepalives,
400s before any stream, and the Redis connection closed when the client goes away."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from pipeline.api.events import event_stream
from pipeline.jobs import JobQueue
from pipeline.keys import job_topic
from pipeline.live import CLIENT_NAME, Tail, events_stream, parse_cursor
from pipeline.reservations import Inventory, LedgerKeys
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from schemas.jobs import PushNotification
from tests import live_agents
from tests.processes import Served, Servers

pytestmark = pytest.mark.timeout(90)
QUEUE = live_agents.QUEUE
TOPIC = job_topic(QUEUE)


@dataclass
class Sse:
    """One server-sent event as a browser's EventSource would see it (plus comments)."""

    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def body(self) -> dict[str, Any]:
        return json.loads("\n".join(self.data))  # type: ignore[no-any-return]


class Stream:
    """The blocks of one open response, parsed as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> Sse:
        block = Sse()
        async for line in self._lines:
            if line == "":
                return block
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                block.comments.append(value)
            elif name == "id":
                block.id = value
            elif name == "event":
                block.event = value
            elif name == "data":
                block.data.append(value)
        raise AssertionError("the stream ended")

    async def events(self, n: int) -> list[Sse]:
        """The next ``n`` events (comment-only blocks skipped)."""
        out: list[Sse] = []
        while len(out) < n:
            block = await self.next()
            if block.data:
                out.append(block)
        return out


@asynccontextmanager
async def sse(url: str, headers: dict[str, str] | None = None, **params: Any
              ) -> AsyncIterator[Stream]:
    """An open ``/v1/events`` stream, past its first (``: connected``) block: from then on
    the server's read positions are fixed, so nothing produced afterwards is missed."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30)) as client, \
            client.stream("GET", f"{url}/v1/events", params=params,
                          headers=headers or {}) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        first = await stream.next()
        assert "connected" in first.comments
        yield stream


@pytest.fixture
async def served(servers: Servers) -> AsyncIterator[Served]:
    s = await servers.ready(servers.start())
    yield s
    assert s.stop() == 0, s.output()


def payload(phone: str = "4155550100") -> PushNotification:
    return PushNotification.model_validate({"phoneNumber": phone, "message": "hi"})


async def test_a_jobs_events_arrive_in_order_created_progress_completed(
        served: Served, redis: aioredis.Redis, settings: Settings) -> None:
    async with sse(served.url, topic=TOPIC) as stream:
        [job] = await JobQueue(redis, QUEUE).create([payload()])
        async with running(live_agents.agent(), redis, settings):
            events = await stream.events(6)
    assert [e.event for e in events] == ["job.created", *["job.progress"] * 4, "job.completed"]
    bodies = [e.body for e in events]
    assert [b["data"]["percent"] for b in bodies[1:5]] == list(live_agents.STEPS)
    assert all(b["topic"] == TOPIC and b["data"]["job_id"] == job for b in bodies)
    assert all(set(b) == {"topic", "entry_id", "id", "type", "v", "data"} for b in bodies)
    assert [b["type"] for b in bodies] == [e.event for e in events]
    assert [parse_cursor(e.id) for e in events] == [{TOPIC: b["entry_id"]} for b in bodies]
    stored = [e[0].decode() for e in await redis.xrange(events_stream(TOPIC))]
    assert [b["entry_id"] for b in bodies] == stored


async def test_last_event_id_resumes_missing_nothing_and_repeating_nothing(
        served: Served, redis: aioredis.Redis, settings: Settings) -> None:
    inventory = Inventory(redis)
    queue = JobQueue(redis, QUEUE)
    await queue.create([payload()])  # the queue exists: a default topic from now on
    async with sse(served.url, since="0") as stream:
        head = await stream.events(3)
    cursor = head[-1].id
    assert cursor is not None and set(parse_cursor(cursor)) == {TOPIC, "reservations"}

    # while the client is away: more jobs run, more reservations are decided
    await queue.create([payload(), payload()])
    async with running(live_agents.agent(), redis, settings):
        await wait_for(lambda: _all_done(queue), message="jobs done")
    for n in range(3):
        await inventory.decide(f"away-{n}", "1", 1, None)

    expected = [(t, e[0].decode()) for t in (TOPIC, "reservations")
                for e in await redis.xrange(events_stream(t))]
    async with sse(served.url, headers={"Last-Event-ID": cursor}, since="now") as stream:
        rest = await stream.events(len(expected) - 3)
        await inventory.decide("live-1", "2", 1, None)
        [live] = await stream.events(1)
    got = [(e.body["topic"], e.body["entry_id"]) for e in head + rest]
    assert sorted(got) == sorted(expected) and len(set(got)) == len(got)
    for topic in (TOPIC, "reservations"):
        assert [i for t, i in got if t == topic] == [i for t, i in expected if t == topic]
    assert live.event == "reservation.confirmed"
    assert live.body["data"]["reservation_id"] == "live-1"
    ledger = await redis.xrevrange(LedgerKeys().ledger, count=1)
    assert live.body["entry_id"] == ledger[0][0].decode()


async def _all_done(queue: JobQueue) -> bool:
    jobs = await queue.list()
    return bool(jobs) and all(j.state == "completed" for j in jobs)


@pytest.mark.parametrize("params, headers, detail", [
    ({"topic": "bad topic"}, {}, "invalid topic 'bad topic'"),
    ({"topic": "jobs:a:b"}, {}, "invalid topic 'jobs:a:b'"),
    ({"since": "yesterday"}, {}, "invalid since 'yesterday'"),
    ({"since": ["0", "now"]}, {}, "give since at most once"),
    ({"from": "0"}, {}, "unknown query parameter 'from'"),
    ({}, {"Last-Event-ID": "garbage"}, "Last-Event-ID: invalid cursor part 'garbage'"),
    ({}, {"Last-Event-ID": "jobs:q=1-x"}, "Last-Event-ID: invalid cursor part 'jobs:q=1-x'"),
])
async def test_bad_input_is_a_400_problem_before_any_stream(
        served: Served, params: dict[str, Any], headers: dict[str, str], detail: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{served.url}/v1/events", params=params, headers=headers)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "urn:pipeline:problem:invalid-events-request"
    assert body["detail"].startswith(detail), body


async def tail_clients(redis: aioredis.Redis) -> int:
    """Connections of live tails (named ``pipeline-live``) on the server."""
    return sum(1 for c in await redis.client_list() if c.get("name") == CLIENT_NAME)


async def test_a_client_that_goes_away_leaves_no_redis_connection_reading(
        served: Served, redis: aioredis.Redis) -> None:
    assert await tail_clients(redis) == 0
    for _ in range(3):
        async with sse(served.url, topic=TOPIC):
            await wait_for(lambda: tail_clients(redis), message="the stream reading Redis")

        async def released() -> bool:
            return await tail_clients(redis) == 0

        await wait_for(released, message="the stream's Redis connection closed")
    async with httpx.AsyncClient(timeout=10) as client:  # the server carries on
        assert (await client.get(f"{served.url}/v1/seats")).status_code == 200


async def test_a_quiet_stream_sends_keepalive_comments_then_events(
        redis: aioredis.Redis) -> None:
    tail = await Tail.open(redis, [TOPIC], "now")
    body = event_stream(tail, block_ms=20, keepalive_s=0.05)
    try:
        assert await anext(body) == b"retry: 2000\n: connected\n\n"
        assert await anext(body) == b": keepalive\n\n"
        await JobQueue(redis, QUEUE).create([payload()])
        frame = (await anext(body)).decode()
    finally:
        await body.aclose()
    assert await tail_clients(redis) == 0  # closing the body closed the tail
    lines = frame.splitlines()
    assert lines[0].startswith(f"id: {TOPIC}=") and lines[1] == "event: job.created"
    assert json.loads(lines[2].removeprefix("data: "))["type"] == "job.created"


async def test_a_graceful_stop_ends_open_event_streams_and_exits_zero(
        servers: Servers) -> None:
    """uvicorn's graceful stop waits for every response: an open dashboard must not keep
    ``pipeline serve`` running after SIGTERM. Its streams end with a comment instead, and the
    browser reconnects (with Last-Event-ID) to the next server."""
    served = await servers.ready(servers.start())
    async with sse(served.url, topic=TOPIC) as stream:
        served.popen.send_signal(signal.SIGTERM)
        comments: list[str] = []
        with pytest.raises(AssertionError, match="the stream ended"):
            while True:
                comments += (await stream.next()).comments
    assert any("server stopping" in c for c in comments), comments
    assert served.popen.wait(15) == 0, served.output()
