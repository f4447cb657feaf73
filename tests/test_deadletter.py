"""Dead letters: list, show, redrive and purge, on a real server with real workers."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from agents import notifications
from pipeline.agent import Agent, Context
from pipeline.deadletter import ALL, DeadLetters
from pipeline.errors import NotFound
from pipeline.jobs import JobQueue
from pipeline.keys import Keys
from pipeline.producer import Producer
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from schemas.base import EventModel
from schemas.jobs import JobCreated, PushNotification

pytestmark = pytest.mark.timeout(30)

QUEUE = "dlq_test"
BLOCKED = "4153518780"
FINE = "4155550100"


class Recorder:
    """A sender that remembers what it sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone_number: str, message: str) -> None:
        self.sent.append((phone_number, message))


async def dead_jobs(
    redis: aioredis.Redis, settings: Settings, phones: list[str]
) -> tuple[JobQueue, DeadLetters, list[str]]:
    """Create one job per phone number and run the notification agent until every
    blacklisted one is dead-lettered and every other one completed."""
    queue = JobQueue(redis, QUEUE)
    ids = await queue.create(
        [PushNotification.model_validate({"phoneNumber": p, "message": f"to {p}"})
         for p in phones])
    dead = DeadLetters.for_queue(redis, QUEUE)
    agent = notifications.agent(QUEUE, sender=Recorder())

    async def settled() -> bool:
        states = [(await queue.get(i)).state for i in ids]
        return all(s in ("failed", "completed") for s in states)

    async with running(agent, redis, settings):
        await wait_for(settled, message="every job settled")
    assert await dead.count() == phones.count(BLOCKED)
    return queue, dead, ids


async def test_list_shows_reason_error_event_id_type_and_attempts(
    redis: aioredis.Redis, settings: Settings
) -> None:
    _, dead, ids = await dead_jobs(redis, settings, [BLOCKED, FINE, BLOCKED])
    seconds, _ = await redis.time()

    rows = await dead.list()

    assert [r.event_id for r in rows] == [ids[0], ids[2]]
    for row in rows:
        assert row.reason == "permanent_failure"
        assert row.error == f"Phone number {BLOCKED} is blacklisted"
        assert row.type == "job.requested"
        assert row.attempts == 1
        assert abs(row.dead_at / 1000 - seconds) < 30


async def test_list_pages_with_limit_and_an_inclusive_start(
    redis: aioredis.Redis, settings: Settings
) -> None:
    _, dead, ids = await dead_jobs(redis, settings, [BLOCKED] * 3)
    every = await dead.list()

    first = await dead.list(limit=2)
    rest = await dead.list(limit=2, start=every[2].dead_id)

    assert [r.event_id for r in first] == ids[:2]
    assert [r.event_id for r in rest] == ids[2:]


async def test_show_returns_every_field_with_the_original_entry_as_raw_fields(
    redis: aioredis.Redis, settings: Settings
) -> None:
    _, dead, ids = await dead_jobs(redis, settings, [BLOCKED])
    [row] = await dead.list()

    fields = await dead.show(row.dead_id)

    assert fields["reason"] == "permanent_failure"
    assert "Phone number 4153518780 is blacklisted" in fields["traceback"]
    assert fields["stream"] == Keys(f"jobs:{QUEUE}").stream
    assert fields["group"] == "notifications"
    assert fields["raw:id"] == ids[0]
    assert json.loads(fields["raw:data"])["payload"]["phoneNumber"] == BLOCKED


@pytest.mark.parametrize("dead_id", ["1-0", "not-an-id", "12345"])
async def test_show_of_an_unknown_id_raises_not_found_naming_it(
    redis: aioredis.Redis, dead_id: str
) -> None:
    with pytest.raises(NotFound, match=dead_id):
        await DeadLetters.for_queue(redis, QUEUE).show(dead_id)


async def test_redrive_of_a_job_requeues_its_record_and_a_worker_then_completes_it(
    redis: aioredis.Redis, settings: Settings
) -> None:
    queue, dead, ids = await dead_jobs(redis, settings, [BLOCKED])
    assert (await queue.get(ids[0])).state == "failed"
    [row] = await dead.list()

    [moved] = await dead.redrive([row.dead_id])

    job = await queue.get(ids[0])
    assert (job.state, job.progress, job.attempts, job.error) == ("queued", 0, 0, "")
    assert await dead.count() == 0
    redriven: Any = await redis.xrange(dead.keys.stream, min=moved.entry_id)
    [(_, fields)] = redriven
    assert fields[b"id"] == ids[0].encode() and b"attempt" not in fields
    last_event: Any = await redis.xrevrange(queue.keys.events, count=1)
    assert last_event[0][1][b"type"] == b"job.redriven"

    sender = Recorder()
    agent = notifications.agent(QUEUE, sender=sender, blacklist=())
    async with running(agent, redis, settings):
        await wait_for(lambda: _state_is(queue, ids[0], "completed"), message="job completed")
    assert sender.sent == [(BLOCKED, f"to {BLOCKED}")]


async def _state_is(queue: JobQueue, job_id: str, state: str) -> bool:
    return (await queue.get(job_id)).state == state


async def test_redrive_starts_a_retried_entry_again_at_attempt_one_and_leaves_jobs_alone(
    redis: aioredis.Redis, settings: Settings
) -> None:
    async def always_breaks(event: EventModel, ctx: Context) -> None:
        raise RuntimeError("downstream is down")

    topic = "orders"
    agent = Agent(name="flaky", topic=topic, handler=always_breaks)
    produced = await Producer(redis, topic).publish(JobCreated(job_id="j1", queue=QUEUE))
    dead = DeadLetters(redis, topic)
    async with running(agent, redis, settings.model_copy(update={"max_attempts": 2})):
        await wait_for(dead.count, message="entry dead-lettered")
    [row] = await dead.list()
    fields = await dead.show(row.dead_id)
    assert (row.reason, row.attempts, fields["raw:attempt"]) == ("max_attempts", 2, "2")

    [moved] = await dead.redrive(ALL)

    before: Any = await redis.xrange(dead.keys.stream, max=produced.entry_id)
    after: Any = await redis.xrange(dead.keys.stream, min=moved.entry_id)
    [(_, original)], [(_, again)] = before, after
    assert again == original and b"attempt" not in again
    assert [k async for k in redis.scan_iter(match="*:job:*")] == []


async def test_redrive_does_not_recreate_a_deleted_job_record(
    redis: aioredis.Redis, settings: Settings
) -> None:
    queue, dead, ids = await dead_jobs(redis, settings, [BLOCKED])
    await redis.delete(queue.keys.job(ids[0]))

    moved = await dead.redrive(ALL)

    assert len(moved) == 1
    assert not await redis.exists(queue.keys.job(ids[0]))


async def test_redrive_with_an_unknown_id_raises_not_found_and_moves_nothing(
    redis: aioredis.Redis, settings: Settings
) -> None:
    queue, dead, ids = await dead_jobs(redis, settings, [BLOCKED])
    [row] = await dead.list()
    length = await redis.xlen(dead.keys.stream)

    with pytest.raises(NotFound, match="1-1"):
        await dead.redrive([row.dead_id, "1-1"])

    assert await dead.count() == 1
    assert await redis.xlen(dead.keys.stream) == length
    assert (await queue.get(ids[0])).state == "failed"


async def test_redrive_all_moves_every_dead_letter_back(
    redis: aioredis.Redis, settings: Settings
) -> None:
    queue, dead, ids = await dead_jobs(redis, settings, [BLOCKED, BLOCKED])
    length = await redis.xlen(dead.keys.stream)

    moved = await dead.redrive(ALL)

    assert len(moved) == 2
    assert await dead.count() == 0
    assert await redis.xlen(dead.keys.stream) == length + 2
    assert [(await queue.get(i)).state for i in ids] == ["queued", "queued"]


async def test_purge_of_chosen_ids_deletes_only_them_and_counts_them(
    redis: aioredis.Redis, settings: Settings
) -> None:
    _, dead, ids = await dead_jobs(redis, settings, [BLOCKED] * 3)
    rows = await dead.list()

    purged = await dead.purge([rows[0].dead_id, rows[2].dead_id, rows[0].dead_id])

    assert purged == 2
    assert [r.event_id for r in await dead.list()] == [ids[1]]


async def test_purge_all_empties_the_dead_letters(
    redis: aioredis.Redis, settings: Settings
) -> None:
    _, dead, _ = await dead_jobs(redis, settings, [BLOCKED] * 2)

    assert await dead.purge(ALL) == 2
    assert await dead.count() == 0
    assert await dead.purge(ALL) == 0


async def test_purge_with_an_unknown_id_raises_not_found_and_deletes_nothing(
    redis: aioredis.Redis, settings: Settings
) -> None:
    _, dead, _ = await dead_jobs(redis, settings, [BLOCKED])
    [row] = await dead.list()

    with pytest.raises(NotFound, match="99-0"):
        await dead.purge([row.dead_id, "99-0"])

    assert await dead.count() == 1
