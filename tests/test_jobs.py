"""The job API (the Kue part): validation, ids, records, lifecycle events, test mode."""

from __future__ import annotations

import asyncio
import json

import pytest

from agents import notifications
from agents.senders import NullSender
from pipeline.codec import decode
from pipeline.compat import seed
from pipeline.errors import ConfigError, JobsNotAnArray, NotFound, ValidationFailed
from pipeline.jobs import JobQueue, create_push_notifications_jobs, queue_of
from pipeline.testing import running, wait_for

SEED_JOBS = seed()["notifications"]["jobs"]


@pytest.mark.parametrize("jobs", [{"phoneNumber": "4153518780"}, "jobs", None, 3, ("a",)])
async def test_a_non_list_raises_the_seed_error(redis, jobs):
    with pytest.raises(JobsNotAnArray) as err:
        await create_push_notifications_jobs(jobs, JobQueue(redis, "q"), echo=None)
    assert str(err.value) == "Jobs is not an array"
    assert await redis.dbsize() == 0


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ({"message": "hi"}, "job 1: phoneNumber: Field required"),
        ({"phoneNumber": 4153518780, "message": "hi"}, "job 1: phoneNumber: Input should be a valid string"),
        ({"phoneNumber": "41535abc", "message": "hi"}, "job 1: phoneNumber: String should match pattern"),
        ({"phoneNumber": "4153518780", "message": ""}, "job 1: message: String should have at least 1 character"),
        ({"phoneNumber": "4153518780", "message": "hi", "x": 1}, "job 1: x: Extra inputs are not permitted"),
        ("not an object", "job 1: must be an object with phoneNumber and message"),
    ],
)
async def test_an_invalid_job_names_its_index_and_field(redis, job, expected):
    jobs = [SEED_JOBS[0], job]
    with pytest.raises(ValidationFailed) as err:
        await create_push_notifications_jobs(jobs, JobQueue(redis, "q"), echo=None)
    assert str(err.value).startswith(expected)
    assert await redis.dbsize() == 0, "nothing is written when any job is invalid"


async def test_creating_jobs_returns_readable_unique_ids_and_prints_the_seed_line(redis):
    lines: list[str] = []
    queue = JobQueue(redis, "push_notification_code_3")
    first = await create_push_notifications_jobs(SEED_JOBS[:2], queue, echo=lines.append)
    second = await create_push_notifications_jobs(SEED_JOBS[2:3], queue, echo=lines.append)
    assert first == ["push_notification_code_3:1", "push_notification_code_3:2"]
    assert second == ["push_notification_code_3:3"]
    assert lines == [f"Notification job created: {i}" for i in first + second]
    job = await queue.get(first[0])
    assert (job.state, job.type, job.progress) == ("queued", "push_notification_code_3", 0)
    assert job.data == SEED_JOBS[0]
    events = [decode(f).data for _, f in await redis.xrange(queue.keys.events)]
    assert [e.EVENT_TYPE for e in events] == ["job.created"] * 3


async def test_concurrent_creates_queue_jobs_in_the_order_of_their_ids(redis):
    queue = JobQueue(redis, "push_notification_code_3")
    batches = await asyncio.gather(*(
        create_push_notifications_jobs(SEED_JOBS[: 1 + n % 3], queue, echo=None)
        for n in range(100)))
    queued = [decode(f).data.job_id for _, f in await redis.xrange(queue.keys.stream)]
    ids = [i for batch in batches for i in batch]
    assert sorted(ids, key=lambda i: int(i.rsplit(":", 1)[1])) == queued


async def test_job_lookups(redis):
    queue = JobQueue(redis, "q")
    ids = await create_push_notifications_jobs(SEED_JOBS[:3], queue, echo=None)
    assert [j.id for j in await queue.list()] == ids
    assert await queue.list(state="completed") == []
    with pytest.raises(NotFound):
        await queue.get("q:99")
    with pytest.raises(ConfigError):
        await queue.list(state="sleeping")
    assert queue_of("push_notification_code_2:17") == "push_notification_code_2"
    with pytest.raises(ConfigError):
        queue_of("no-number")


def test_queue_names_are_checked():
    with pytest.raises(ConfigError, match="invalid queue name"):
        JobQueue(None, "bad name{x}")


async def test_test_mode_records_jobs_without_queueing_them(redis):
    queue = JobQueue(redis, "push_notification_code_3")
    queue.test_mode.enter()
    ids = await create_push_notifications_jobs(SEED_JOBS[:2], queue, echo=None)
    assert [j.id for j in queue.test_mode.jobs] == ids
    assert queue.test_mode.jobs[0].type == "push_notification_code_3"
    assert queue.test_mode.jobs[1].data == SEED_JOBS[1]
    assert await redis.dbsize() == 0
    queue.test_mode.clear()
    assert queue.test_mode.jobs == []
    queue.test_mode.exit()
    await create_push_notifications_jobs(SEED_JOBS[:1], queue, echo=None)
    assert queue.test_mode.jobs == []
    assert await redis.xlen(queue.keys.stream) == 1


async def test_the_notification_agent_follows_the_seed(redis, settings, capsys):
    queue = JobQueue(redis, "push_notification_code_2")
    ids = await create_push_notifications_jobs(SEED_JOBS, queue, echo=None)
    agent = notifications.agent("push_notification_code_2")  # console sender by default
    async with running(agent, redis, settings):
        await wait_for(lambda: _all_done(queue, ids))
    jobs = {i: await queue.get(i) for i in ids}
    failed = {i: j.error for i, j in jobs.items() if j.state == "failed"}
    assert failed == {
        ids[0]: "Phone number 4153518780 is blacklisted",
        ids[1]: "Phone number 4153518781 is blacklisted",
    }
    assert sum(j.state == "completed" for j in jobs.values()) == 9
    out = capsys.readouterr().out.splitlines()
    expected = [
        f"Sending notification to {j['phoneNumber']}, with message: {j['message']}"
        for j in SEED_JOBS[2:]
    ]
    assert sorted(out) == sorted(expected)
    by_job: dict[str, list[str]] = {}
    for _, fields in await redis.xrange(queue.keys.events):
        e = decode(fields).data
        by_job.setdefault(e.job_id, []).append(
            e.EVENT_TYPE + (f":{e.percent}" if e.EVENT_TYPE == "job.progress" else "")
        )
    assert by_job[ids[0]] == ["job.created", "job.progress:0", "job.failed", "job.dead_lettered"]
    assert by_job[ids[2]] == ["job.created", "job.progress:0", "job.progress:50", "job.completed"]
    dead = [f for _, f in await redis.xrange(queue.keys.dead)]
    assert [d[b"error"] for d in dead] == [b"Phone number 4153518780 is blacklisted",
                                          b"Phone number 4153518781 is blacklisted"]


async def _all_done(queue: JobQueue, ids: list[str]) -> bool:
    states = [(await queue.get(i)).state for i in ids]
    return all(s in ("completed", "failed") for s in states)


async def test_a_job_written_by_another_languages_client_is_processed(redis, settings):
    """The envelope is plain fields + JSON: an XADD from any client works (here by hand)."""
    queue = JobQueue(redis, "from_node")
    data = {"job_id": "from_node:1", "queue": "from_node",
            "payload": {"phoneNumber": "4153518743", "message": "hello"}}
    await redis.xadd(queue.keys.stream, {"id": "from_node:1", "type": "job.requested", "v": "1",
                                         "data": json.dumps(data)})
    agent = notifications.agent("from_node", sender=NullSender())
    async with running(agent, redis, settings):
        await wait_for(lambda: redis.hget(queue.keys.job("from_node:1"), "state"))
        await wait_for(lambda: _state_is(redis, queue, "from_node:1", b"completed"))


async def _state_is(redis, queue, job_id, state):
    return await redis.hget(queue.keys.job(job_id), "state") == state


async def test_lifecycle_events_are_also_published_live(redis, settings):
    queue = JobQueue(redis, "live")
    pubsub = redis.pubsub()
    await pubsub.subscribe(queue.keys.channel)
    await wait_for(lambda: pubsub.get_message(timeout=0.1))  # the subscribe confirmation
    [job_id] = await create_push_notifications_jobs(SEED_JOBS[2:3], queue, echo=None)
    async with running(notifications.agent("live", sender=NullSender()), redis, settings):
        seen: list[str] = []

        async def collect() -> bool:
            msg = await pubsub.get_message(timeout=0.1)
            if msg and msg["type"] == "message":
                event = json.loads(msg["data"])
                assert event["data"]["job_id"] == job_id and event["v"] == "1"
                seen.append(event["type"])
            return "job.completed" in seen

        await wait_for(collect)
    await pubsub.aclose()
    assert seen == ["job.created", "job.progress", "job.progress", "job.completed"]
