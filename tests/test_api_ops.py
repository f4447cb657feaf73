"""The operations routes: job queues counted by state, dead letters listed and redriven, and
the dashboard's files. In-process app, real server, real workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from agents import notifications
from pipeline.agent import Agent, Context
from pipeline.api.dashboard import ASSETS
from pipeline.api.inputs import MAX_BODY
from pipeline.errors import Retry
from pipeline.jobs import JobHooks, JobQueue
from pipeline.keys import Keys, job_topic
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from schemas.base import EventModel
from schemas.jobs import PushNotification
from tests.test_api_helpers import problem

pytestmark = pytest.mark.timeout(60)
QUEUE = "ops_q"
KEYS = Keys(job_topic(QUEUE), 0)
BLOCKED = "4153518780"
FINE = "4155550100"


class Quiet:
    async def send(self, phone_number: str, message: str) -> None:
        return None


async def create(redis: aioredis.Redis, *phones: str, queue: str = QUEUE) -> list[str]:
    return await JobQueue(redis, queue).create(
        [PushNotification.model_validate({"phoneNumber": p, "message": f"to {p}"})
         for p in phones])


async def run_notifications(redis: aioredis.Redis, settings: Settings, ids: list[str],
                            queue: str = QUEUE) -> None:
    """The seed's agent until every job in ``ids`` completed or failed."""
    jobs = JobQueue(redis, queue)

    async def settled() -> bool:
        states = [(await jobs.get(i)).state for i in ids]
        return all(s in ("completed", "failed") for s in states)

    async with running(notifications.agent(queue, sender=Quiet()), redis, settings):
        await wait_for(settled, message="every job settled")


async def queue_row(client: httpx.AsyncClient, queue: str = QUEUE) -> dict[str, Any]:
    r = await client.get("/v1/queues")
    assert r.status_code == 200, r.text
    rows = {q["queue"]: q for q in r.json()}
    return rows[queue]


def counts(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("waiting", "active", "delayed", "completed", "failed", "dead")}


async def test_no_job_queue_is_an_empty_list_and_the_ledger_is_not_a_queue(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    assert await redis.exists(Keys("reservations", 0).stream)  # defined at start-up
    r = await client.get("/v1/queues")
    assert r.status_code == 200 and r.json() == []


async def test_jobs_no_worker_has_read_are_all_waiting(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    await create(redis, FINE, FINE, FINE)
    row = await queue_row(client)
    assert counts(row) == {"waiting": 3, "active": 0, "delayed": 0, "completed": 0,
                           "failed": 0, "dead": 0}
    assert row["groups"] == [] and row["consumers"] == 0 and row["length"] == 3


async def test_completed_and_failed_jobs_are_counted_with_their_outcome(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings) -> None:
    ids = await create(redis, BLOCKED, FINE, FINE)
    await run_notifications(redis, settings, ids)
    row = await queue_row(client)
    assert counts(row) == {"waiting": 0, "active": 0, "delayed": 0, "completed": 2,
                           "failed": 1, "dead": 1}
    assert row["groups"] == ["notifications"]
    assert await redis.hgetall(KEYS.counts) == {b"completed": b"2", b"failed": b"1"}


async def test_a_running_job_is_active_and_a_retried_one_delayed(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def handle(event: EventModel, ctx: Context) -> None:
        if ctx.envelope.id.endswith(":1"):
            started.set()
            await release.wait()
        else:
            raise Retry("later", delay_ms=600_000)

    agent = Agent(name="ops", topic=KEYS.topic, handler=handle, concurrency=2,
                  hooks=JobHooks())
    await create(redis, FINE, FINE, FINE)
    async with running(agent, redis, settings):
        await asyncio.wait_for(started.wait(), 10)

        async def settled_two() -> dict[str, Any] | None:
            row = await queue_row(client)
            return row if row["delayed"] == 2 else None

        row = await wait_for(settled_two, message="two jobs delayed")
        assert counts(row) == {"waiting": 0, "active": 1, "delayed": 2, "completed": 0,
                               "failed": 0, "dead": 0}
        assert row["consumers"] == 1
        release.set()

        async def completed() -> bool:
            return (await queue_row(client))["completed"] == 1

        await wait_for(completed, message="the held job completed")
    assert (await queue_row(client))["active"] == 0


async def test_dead_letters_are_listed_per_queue_or_all_together(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings) -> None:
    ids = await create(redis, BLOCKED, FINE, BLOCKED)
    await run_notifications(redis, settings, ids)
    other = await create(redis, BLOCKED, queue="ops_other")
    await run_notifications(redis, settings, other, queue="ops_other")

    r = await client.get("/v1/deadletters", params={"queue": QUEUE})
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [d["event_id"] for d in rows] == [ids[0], ids[2]]
    first = rows[0]
    assert first["queue"] == QUEUE and first["reason"] == "permanent_failure"
    assert first["error"] == f"Phone number {BLOCKED} is blacklisted"
    assert first["type"] == "job.requested" and first["attempts"] == 1
    assert first["dead_at"] > 0 and first["dead_id"].count("-") == 1

    every = (await client.get("/v1/deadletters")).json()
    assert sorted(d["event_id"] for d in every) == sorted([ids[0], ids[2], other[0]])
    assert len((await client.get("/v1/deadletters", params={"limit": 2})).json()) == 2
    one = await client.get("/v1/deadletters", params={"queue": QUEUE, "limit": 1})
    assert [d["event_id"] for d in one.json()] == [ids[0]]


async def test_bad_dead_letter_queries_are_problems(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/deadletters", params={"queue": "nope"}), 404, "unknown-queue")
    for params in ({"queue": "a b"}, {"queue": ""}, {"limit": 0}, {"limit": 1001},
                   {"limit": "x"}):
        problem(await client.get("/v1/deadletters", params=params), 422, "invalid-request")


async def test_redrive_moves_the_dead_letter_back_onto_its_stream(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings) -> None:
    ids = await create(redis, BLOCKED, FINE)
    await run_notifications(redis, settings, ids)
    [dead] = (await client.get("/v1/deadletters", params={"queue": QUEUE})).json()
    length = await redis.xlen(KEYS.stream)

    r = await client.post(f"/v1/deadletters/{QUEUE}/{dead['dead_id']}/redrive")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["queue"] == QUEUE and body["dead_id"] == dead["dead_id"]
    assert await redis.xlen(KEYS.dead) == 0
    assert await redis.xlen(KEYS.stream) == length + 1
    [(entry_id, fields)] = await redis.xrevrange(KEYS.stream, count=1)
    assert body["entry_id"] == entry_id.decode() and fields[b"id"] == ids[0].encode()
    assert await redis.hget(KEYS.job(ids[0]), "state") == b"queued"
    row = await queue_row(client)
    assert row["dead"] == 0 and row["waiting"] == 1
    # the same dead letter again: it is gone
    problem(await client.post(f"/v1/deadletters/{QUEUE}/{dead['dead_id']}/redrive"), 404,
            "unknown-dead-letter")


async def test_redriving_what_is_not_there_is_a_problem_and_moves_nothing(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings) -> None:
    ids = await create(redis, BLOCKED)
    await run_notifications(redis, settings, ids)
    before = await redis.xlen(KEYS.stream)
    for dead_id in ("1-0", "99999999999999999999-0"):
        problem(await client.post(f"/v1/deadletters/{QUEUE}/{dead_id}/redrive"), 404,
                "unknown-dead-letter")
    problem(await client.post("/v1/deadletters/nope/1-0/redrive"), 404, "unknown-queue")
    for path in (f"{QUEUE}/1/redrive", f"{QUEUE}/1-x/redrive", "a%20b/1-0/redrive"):
        problem(await client.post(f"/v1/deadletters/{path}"), 422, "invalid-request")
    assert await redis.xlen(KEYS.dead) == 1 and await redis.xlen(KEYS.stream) == before


async def dead_letter(client: httpx.AsyncClient, redis: aioredis.Redis,
                      settings: Settings) -> str:
    """The path of the redrive of a fresh dead letter on ``QUEUE``."""
    await run_notifications(redis, settings, await create(redis, BLOCKED))
    [dead] = (await client.get("/v1/deadletters", params={"queue": QUEUE})).json()
    return f"/v1/deadletters/{QUEUE}/{dead['dead_id']}/redrive"


def _json(content: str | bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": "application/json"}}


async def _too_big_chunked() -> AsyncIterator[bytes]:
    yield b'{"x": "'
    for _ in range(MAX_BODY // 1024 + 1):
        yield b"x" * 1024
    yield b'"}'


REDRIVE_BODIES: dict[str, tuple[dict[str, Any], int, str]] = {
    "not JSON": (_json(b"{not json"), 400, "malformed-json"),
    "too large": (_json(json.dumps({"x": "x" * 200_000})), 413, "payload-too-large"),
    "too large, chunked": (_json(b""), 413, "payload-too-large"),  # content set in the test
    "text/plain": ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415,
                   "unsupported-media-type"),
    "no content type": ({"content": b"{}"}, 415, "unsupported-media-type"),
    "a form": ({"data": {"x": "1"}}, 415, "unsupported-media-type"),
    "an unknown field": (_json(b'{"force": true}'), 422, "invalid-request"),
    "not an object": (_json(b"[]"), 422, "invalid-request"),
    "null": (_json(b"null"), 422, "invalid-request"),
}


@pytest.mark.parametrize("case", list(REDRIVE_BODIES), ids=list(REDRIVE_BODIES))
async def test_a_redrive_with_a_body_it_cannot_take_is_refused_and_moves_nothing(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings, case: str) -> None:
    path = await dead_letter(client, redis, settings)
    kwargs, status, slug = REDRIVE_BODIES[case]
    if case == "too large, chunked":
        kwargs = {**kwargs, "content": _too_big_chunked()}
    length = await redis.xlen(KEYS.stream)
    problem(await client.post(path, **kwargs), status, slug)
    assert await redis.xlen(KEYS.dead) == 1 and await redis.xlen(KEYS.stream) == length


@pytest.mark.parametrize("kwargs", [
    {},
    {"content": b"", "headers": {"content-type": "text/plain"}},
    {"json": {}},
    {"content": b" { } ", "headers": {"content-type": "application/json; charset=utf-8"}},
], ids=["no body", "an empty body of any type", "{}", "{} with spaces and a charset"])
async def test_a_redrive_takes_no_body_or_an_empty_object(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings,
        kwargs: dict[str, Any]) -> None:
    path = await dead_letter(client, redis, settings)
    r = await client.post(path, **kwargs)
    assert r.status_code == 200, r.text
    assert await redis.xlen(KEYS.dead) == 0


@pytest.mark.parametrize("path, params, hint", [
    ("/v1/queues", {"foo": "bar"}, "this route takes no query parameters"),
    ("/v1/deadletters", {"foo": "bar"}, "use queue and limit"),
    ("/v1/deadletters", {"queue": QUEUE, "queu": QUEUE}, "use queue and limit"),
])
async def test_an_unknown_query_parameter_is_a_400_problem(
        client: httpx.AsyncClient, redis: aioredis.Redis, path: str, params: dict[str, str],
        hint: str) -> None:
    await create(redis, FINE)
    body = problem(await client.get(path, params=params), 400, "unknown-query-parameter")
    unknown = next(k for k in params if k not in ("queue", "limit"))
    assert body["detail"] == f"unknown query parameter {unknown!r}: {hint}"


async def test_a_redrive_with_a_query_parameter_is_refused_and_moves_nothing(
        client: httpx.AsyncClient, redis: aioredis.Redis, settings: Settings) -> None:
    path = await dead_letter(client, redis, settings)
    problem(await client.post(path, params={"force": "1"}), 400, "unknown-query-parameter")
    assert await redis.xlen(KEYS.dead) == 1


async def test_the_dashboard_page_and_its_files_are_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for name in ASSETS:
        assert f"static/{name}" in page.text or name == "dashboard.html"
        r = await client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == ASSETS[name]
        assert r.headers["cache-control"] == "no-cache"
    problem(await client.get("/static/secret.py"), 404)
    problem(await client.get("/static/..%2Fops.py"), 404)


async def test_the_openapi_document_has_the_ops_routes_but_not_the_page(
        client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/v1/queues" in paths and "/v1/deadletters" in paths
    assert "/v1/deadletters/{queue}/{dead_id}/redrive" in paths
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)
