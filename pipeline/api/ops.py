"""Operations routes of the versioned API: job queues with their counts by state, and dead
letters (list and redrive), as the dashboard and an operator's scripts read them.

A job queue ``Q`` is the topic ``jobs:Q``. Its counts come from Redis as it is now, in a
handful of commands: waiting is the consumer group's lag (entries not yet delivered), active
its pending entries, delayed the retry ZSET, dead the dead-letter stream; completed and
failed are counters the job hooks bump in the same atomic step as each outcome.

Every route here takes only the query parameters it declares (anything else is a 400), and
the redrive takes no body, or the empty object ``{}``; a body that is there is read like any
other (``pipeline.api.inputs``: 415, 413, 400, 422).
"""

from __future__ import annotations

from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from pipeline.api.inputs import declared_query_only, read_json, validate
from pipeline.api.responses import PROBLEM_JSON, Problem
from pipeline.api.state import Api
from pipeline.deadletter import DeadLetter, DeadLetters
from pipeline.errors import NotFound
from pipeline.keys import Keys, job_topic
from pipeline.streams import StreamStats, stream_stats

_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}
router = APIRouter(prefix="/v1", tags=["ops"], dependencies=[Depends(declared_query_only)],
                   responses={400: _PROBLEM})
QUEUE_PATTERN = r"^[A-Za-z0-9_.\-]{1,100}$"
DEAD_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}$"
_U64 = 2**64 - 1
JOBS = "jobs:"


class QueueCounts(BaseModel):
    """One job queue (summed over its partitions) with its jobs counted by state."""

    queue: str
    #: entries not yet delivered to the queue's group (the whole stream before any worker
    #: started); with several groups, the largest lag; null when the server cannot tell
    waiting: int | None
    #: delivered to a worker and not settled yet (pending in the group)
    active: int
    #: waiting for a retry (the delayed ZSET)
    delayed: int
    #: jobs completed, ever
    completed: int
    #: jobs dead-lettered, ever (a redriven job that fails again counts again)
    failed: int
    #: dead letters now in the queue's dead-letter stream
    dead: int
    #: entries in the stream (acked ones stay until trimmed)
    length: int
    #: workers in the queue's groups
    consumers: int
    groups: list[str]


class DeadLetterOut(BaseModel):
    """A dead letter of a job queue."""

    queue: str
    #: the dead letter's entry id (what to redrive)
    dead_id: str
    #: the original event's id: a job's id for a job
    event_id: str
    type: str
    #: permanent_failure | max_attempts | max_deliveries | decode_error
    reason: str
    error: str
    attempts: int
    #: milliseconds since the epoch, by the server's clock
    dead_at: int


class RedriveIn(BaseModel):
    """The body of a redrive: nothing to say yet (the body may be left out, or ``{}``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RedriveOut(BaseModel):
    """A dead letter moved back onto its queue's stream as the new entry ``entry_id``."""

    queue: str
    dead_id: str
    entry_id: str


def _queue_of(stats: StreamStats) -> str | None:
    return stats.topic[len(JOBS):] if stats.topic.startswith(JOBS) else None


async def _counters(redis: aioredis.Redis, streams: list[StreamStats]) -> list[dict[str, int]]:
    pipe = redis.pipeline(transaction=False)
    for s in streams:
        pipe.hgetall(Keys(s.topic, s.partition).counts)
    out = []
    for reply in await pipe.execute() if streams else []:
        out.append({_text(k): int(v) for k, v in (reply or {}).items()})
    return out


def _waiting(s: StreamStats) -> int | None:
    if not s.groups:
        return s.length  # no worker has read anything yet
    lags = [g.lag for g in s.groups]
    return None if any(lag is None for lag in lags) else max(lag or 0 for lag in lags)


async def queue_counts(redis: aioredis.Redis) -> list[QueueCounts]:
    """Every job queue with its counts, sorted by name."""
    streams = [s for s in await stream_stats(redis) if _queue_of(s) is not None]
    by_name: dict[str, QueueCounts] = {}
    for s, counters in zip(streams, await _counters(redis, streams), strict=True):
        name = _queue_of(s)
        assert name is not None
        q = by_name.setdefault(name, QueueCounts(
            queue=name, waiting=0, active=0, delayed=0, completed=0, failed=0, dead=0,
            length=0, consumers=0, groups=[]))
        waiting = _waiting(s)
        q.waiting = None if q.waiting is None or waiting is None else q.waiting + waiting
        q.active += sum(g.pending for g in s.groups)
        q.delayed += s.delayed
        q.completed += counters.get("completed", 0)
        q.failed += counters.get("failed", 0)
        q.dead += s.dead
        q.length += s.length
        q.consumers += sum(g.consumers for g in s.groups)
        q.groups = sorted({*q.groups, *(g.group for g in s.groups)})
    return [by_name[k] for k in sorted(by_name)]


@router.get("/queues", summary="Job queues with their counts by state")
async def queues(request: Request) -> list[QueueCounts]:
    return await queue_counts(Api.of(request).redis)


def _out(queue: str, d: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(queue=queue, dead_id=d.dead_id, event_id=d.event_id, type=d.type,
                         reason=d.reason, error=d.error, attempts=d.attempts, dead_at=d.dead_at)


async def _known(redis: aioredis.Redis, queue: str) -> bool:
    keys = Keys(job_topic(queue), 0)
    return bool(await redis.exists(keys.stream, keys.dead))


def _unknown_queue(queue: str) -> Problem:
    return Problem(404, "unknown-queue", "Not found",
                   f"no job queue {queue!r}; see the queues at /v1/queues")


@router.get("/deadletters", summary="Dead letters of one job queue, or of every one",
            responses={404: _PROBLEM, 422: _PROBLEM})
async def dead_letters(
    request: Request,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN,
                                       description="a job queue; all queues when absent")
                     ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    """Oldest first, at most ``limit`` in all. An unknown queue is a 404."""
    redis = Api.of(request).redis
    if queue is not None:
        if not await _known(redis, queue):
            raise _unknown_queue(queue)
        names = [queue]
    else:
        names = [q.queue for q in await queue_counts(redis) if q.dead]
    rows: list[DeadLetterOut] = []
    for name in names:
        rows += [_out(name, d) for d in await DeadLetters.for_queue(redis, name).list(limit)]
    rows.sort(key=lambda r: (r.dead_at, r.queue, _id_key(r.dead_id)))
    return rows[:limit]


@router.post("/deadletters/{queue}/{dead_id}/redrive",
             summary="Move a dead letter back onto its queue's stream, as a fresh first attempt",
             responses={404: _PROBLEM, 413: _PROBLEM, 415: _PROBLEM, 422: _PROBLEM},
             openapi_extra={"requestBody": {"required": False, "content": {
                 "application/json": {"schema": RedriveIn.model_json_schema()}}}})
async def redrive(
    request: Request,
    queue: Annotated[str, Path(pattern=QUEUE_PATTERN)],
    dead_id: Annotated[str, Path(pattern=DEAD_ID_PATTERN, examples=["1700000000000-0"])],
) -> RedriveOut:
    """The job's record goes back to ``queued`` in the same step. 404 when the queue or the
    dead letter does not exist (or was redriven or purged meanwhile). No body, or ``{}``;
    another body is refused before anything moves."""
    validate(RedriveIn, await read_json(request, optional=True))
    redis = Api.of(request).redis
    if not await _known(redis, queue):
        raise _unknown_queue(queue)
    missing = Problem(404, "unknown-dead-letter", "Not found",
                      f"no dead letter {dead_id} in queue {queue!r}; "
                      "see the ids at /v1/deadletters")
    if any(n > _U64 for n in _id_key(dead_id)):
        raise missing  # not an id Redis could have made
    try:
        moved = await DeadLetters.for_queue(redis, queue).redrive([dead_id])
    except NotFound:
        raise missing from None
    if not moved:
        raise missing
    return RedriveOut(queue=queue, dead_id=dead_id, entry_id=moved[0].entry_id)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
