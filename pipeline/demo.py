"""The main job: the seed's eleven push-notification jobs, end to end, on a real server.

Creates the jobs on ``push_notification_code_2``, runs the notification agent with
concurrency 2 in this process, follows the jobs' lifecycle events like Kue's job listeners
(printing the seed's lines), then prints a summary. Only this run's jobs are followed and
counted, so runs never mix.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import redis.asyncio as aioredis

from agents import notifications
from agents.senders import ConsoleSender
from pipeline.codec import decode
from pipeline.compat import line, seed
from pipeline.connection import CONNECTION_ERRORS, Endpoint
from pipeline.errors import DecodeError, PipelineError
from pipeline.jobs import JobQueue, create_push_notifications_jobs
from pipeline.settings import Settings
from pipeline.worker import Worker
from schemas.jobs import JobCompleted, JobFailed, JobProgress

QUEUE = "push_notification_code_2"


@dataclass
class Summary:
    ids: list[str]
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    dead: dict[str, str] = field(default_factory=dict)
    pending: int = 0

    @property
    def done(self) -> bool:
        return len(self.completed) + len(self.failed) == len(self.ids)


async def _last_id(redis: aioredis.Redis, stream: str) -> str:
    last: Any = await redis.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"


async def follow(
    redis: aioredis.Redis, queue: JobQueue, start: str, summary: Summary, out: TextIO,
    timeout: float, endpoint: Endpoint | None = None,
) -> None:
    """Print the seed's lines for this run's jobs until every one is completed or failed."""
    mine = set(summary.ids)
    deadline = time.monotonic() + timeout
    while not summary.done:
        if time.monotonic() > deadline:
            raise PipelineError(f"the demo's jobs did not finish within {timeout:.0f}s")
        try:
            reply: Any = await redis.xread({queue.keys.events: start}, count=500, block=200)
        except CONNECTION_ERRORS:
            # a shared embedded server went away with its owner: take it over and go on
            if endpoint is None:
                raise
            await asyncio.to_thread(endpoint.revive)
            continue
        for _, entries in reply or []:
            for entry_id, fields in entries:
                start = entry_id.decode()
                try:
                    event = decode(fields).data
                except DecodeError:
                    continue
                job_id = getattr(event, "job_id", None)
                if job_id not in mine:
                    continue
                if isinstance(event, JobProgress):
                    print(line("notifications", "progress", id=job_id, percent=event.percent),
                          file=out, flush=True)
                elif isinstance(event, JobCompleted):
                    summary.completed.append(job_id)
                    print(line("notifications", "completed", id=job_id), file=out, flush=True)
                elif isinstance(event, JobFailed):
                    summary.failed[job_id] = event.error
                    print(line("notifications", "failed", id=job_id, error=event.error),
                          file=out, flush=True)


async def dead_letters_of(redis: aioredis.Redis, queue: JobQueue, ids: set[str]
                          ) -> dict[str, str]:
    """reason: error of this run's dead letters, by job id."""
    found: dict[str, str] = {}
    dead: Any = await redis.xrange(queue.keys.dead)
    for _, fields in dead:
        job_id = fields.get(b"raw:id", b"").decode()
        if job_id in ids:
            found[job_id] = f"{fields[b'reason'].decode()}: {fields[b'error'].decode()}"
    return found


async def run_demo(redis: aioredis.Redis, settings: Settings, out: TextIO,
                   timeout: float = 60.0, endpoint: Endpoint | None = None) -> Summary:
    queue = JobQueue(redis, QUEUE, dedup_ttl_s=settings.dedup_ttl_s)
    agent = notifications.agent(QUEUE, sender=ConsoleSender(),
                                concurrency=seed()["notifications"]["concurrency"])
    start = await _last_id(redis, queue.keys.events)
    ids = await create_push_notifications_jobs(
        seed()["notifications"]["jobs"], queue, echo=lambda text: print(text, file=out, flush=True)
    )
    summary = Summary(ids)
    worker = Worker(agent, redis, settings, endpoint=endpoint)
    task = asyncio.create_task(worker.run())
    try:
        await follow(redis, queue, start, summary, out, timeout, endpoint)
    finally:
        worker.stop()
        await task
    summary.dead = await dead_letters_of(redis, queue, set(ids))
    info = await redis.xpending(queue.keys.stream, agent.group)
    summary.pending = int(info["pending"])
    return summary


def print_summary(summary: Summary, out: TextIO) -> None:
    print(
        f"Summary: {len(summary.ids)} jobs, {len(summary.completed)} completed, "
        f"{len(summary.failed)} failed and dead-lettered, {summary.pending} pending",
        file=out,
    )
    for job_id, reason in sorted(summary.dead.items()):
        print(f"  dead letter {job_id}: {reason}", file=out)
