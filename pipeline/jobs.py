"""Jobs (the Kue part): a queue of job events, job records, and lifecycle events.

A job is a ``job.requested`` event on the stream of topic ``jobs:<queue>``. Its record is a
hash ``pl:{jobs:<queue>:0}:job:<id>`` (state, progress, attempts, error, timestamps); its
lifecycle (created, progress, completed, retried, failed, dead-lettered) goes to the queue's
events stream and pub/sub channel, written in the same atomic step as the state change.
Job ids are readable: ``<queue>:<n>``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import redis.asyncio as aioredis
from pydantic import ValidationError

from pipeline.agent import Context, Hooks
from pipeline.codec import Envelope, uuid7
from pipeline.effects import Effects
from pipeline.errors import ConfigError, InvalidName, JobsNotAnArray, NotFound, ValidationFailed
from pipeline.keys import Keys, check_name, job_topic, shown
from pipeline.producer import Outgoing, Producer
from schemas.base import EventModel
from schemas.jobs import (
    JobCompleted,
    JobCreated,
    JobDeadLettered,
    JobFailed,
    JobProgress,
    JobRedriven,
    JobRequested,
    JobRetried,
    PushNotification,
)

STATES = ("queued", "active", "completed", "delayed", "failed")
CREATED_LINE = "Notification job created: {id}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def queue_of(job_id: str) -> str:
    """The queue a job id belongs to (``<queue>:<n>``)."""
    queue, sep, n = job_id.rpartition(":")
    if not sep or not n.isdigit():
        raise InvalidName(f"invalid job id {shown(job_id)}: expected QUEUE:N, e.g. "
                          "push_notification_code:1")
    return check_name("queue", queue)


def keys_for_queue(queue: str) -> Keys:
    return Keys(job_topic(queue), 0)


class JobHooks(Hooks):
    """Keeps the job record and lifecycle events in step with every outcome."""

    def __init__(self, events_maxlen: int = 100_000) -> None:
        self.events_maxlen = events_maxlen

    def _emit(self, effects: Effects, keys: Keys, event: EventModel) -> Effects:
        return self._emit_data(effects, keys, event.EVENT_TYPE,
                               event.model_dump_json(by_alias=True))

    def _emit_data(self, effects: Effects, keys: Keys, event_type: str, data: str) -> Effects:
        """Append a lifecycle event (``data`` already JSON) to the events stream and channel.
        The hot path builds ``data`` itself from trusted values, skipping a model per event."""
        event_id = uuid7()
        fields = {"id": event_id, "type": event_type, "v": "1", "data": data}
        effects.xadd(keys.events, fields, maxlen=self.events_maxlen)
        # the channel's message is the envelope with ``data`` as an object (no re-escaping)
        effects.publish(keys.channel,
                        f'{{"id":"{event_id}","type":"{event_type}","v":"1","data":{data}}}')
        return effects

    def redriven(self, keys: Keys, job_id: str, queue: str) -> Effects:
        """A redriven job: its record back to ``queued`` as a fresh job, and the event."""
        effects = Effects().hset(
            keys.job(job_id),
            {"state": "queued", "progress": 0, "attempts": 0, "error": "",
             "updated_at": _now_ms()},
        )
        effects.command("HDEL", keys.job(job_id), "dead_reason")
        return self._emit(effects, keys, JobRedriven(job_id=job_id, queue=queue))

    def progress(self, ctx: Context, percent: int) -> Effects:
        job = ctx.envelope.data
        assert isinstance(job, JobRequested)
        effects = Effects().hset(
            ctx.keys.job(job.job_id),
            {"state": "active", "progress": percent, "updated_at": _now_ms()},
        )
        data = json.dumps({"job_id": job.job_id, "queue": job.queue, "percent": percent},
                          separators=(",", ":"))
        return self._emit_data(effects, ctx.keys, JobProgress.EVENT_TYPE, data)

    def on_success(self, env: Envelope, keys: Keys, attempt: int) -> Effects | None:
        job = env.data
        if not isinstance(job, JobRequested):
            return None
        now = _now_ms()
        effects = Effects().hset(
            keys.job(job.job_id),
            {"state": "completed", "progress": 100, "attempts": attempt, "error": "",
             "updated_at": now, "completed_at": now},
        ).hincrby(keys.counts, "completed", 1)
        data = json.dumps({"job_id": job.job_id, "queue": job.queue, "attempt": attempt},
                          separators=(",", ":"))
        return self._emit_data(effects, keys, JobCompleted.EVENT_TYPE, data)

    def on_retry(self, env: Envelope, keys: Keys, attempt: int, error: str, delay_ms: int
                 ) -> Effects | None:
        job = env.data
        if not isinstance(job, JobRequested):
            return None
        effects = Effects().hset(
            keys.job(job.job_id),
            {"state": "delayed", "attempts": attempt, "error": error, "updated_at": _now_ms()},
        )
        return self._emit(effects, keys, JobRetried(job_id=job.job_id, queue=job.queue,
                                                    attempt=attempt, error=error,
                                                    delay_ms=delay_ms))

    def on_dead(self, env: Envelope | None, keys: Keys, attempt: int, reason: str, error: str
                ) -> Effects | None:
        if env is None or not isinstance(env.data, JobRequested):
            return None
        job = env.data
        effects = Effects().hset(
            keys.job(job.job_id),
            {"state": "failed", "attempts": attempt, "error": error, "dead_reason": reason,
             "updated_at": _now_ms()},
        ).hincrby(keys.counts, "failed", 1)
        self._emit(effects, keys, JobFailed(job_id=job.job_id, queue=job.queue,
                                            attempt=attempt, error=error))
        return self._emit(effects, keys, JobDeadLettered(job_id=job.job_id, queue=job.queue,
                                                         reason=reason, error=error))


@dataclass
class Job:
    """A job as Kue shows it: ``id``, ``type`` (the queue) and ``data``."""

    id: str
    type: str
    data: dict[str, Any]
    state: str = "queued"
    progress: int = 0
    attempts: int = 0
    error: str = ""
    created_at: int = 0
    updated_at: int = 0
    completed_at: int = 0
    dead_reason: str = ""

    @classmethod
    def from_record(cls, job_id: str, record: dict[bytes, bytes]) -> Job:
        r = {k.decode(): v.decode(errors="replace") for k, v in record.items()}
        return cls(
            id=job_id, type=r.get("queue", ""), data=json.loads(r.get("data", "{}")),
            state=r.get("state", ""), progress=int(r.get("progress") or 0),
            attempts=int(r.get("attempts") or 0), error=r.get("error", ""),
            created_at=int(r.get("created_at") or 0), updated_at=int(r.get("updated_at") or 0),
            completed_at=int(r.get("completed_at") or 0), dead_reason=r.get("dead_reason", ""),
        )


@dataclass
class TestMode:
    """Kue's test mode: while entered, jobs are recorded here instead of being queued."""

    __test__ = False  # not a pytest class
    active: bool = False
    jobs: list[Job] = field(default_factory=list)
    _seq: int = 0

    def enter(self) -> None:
        self.active = True

    def exit(self) -> None:
        self.active = False

    def clear(self) -> None:
        self.jobs.clear()

    def __enter__(self) -> Self:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.exit()
        self.clear()


class JobQueue:
    """A named job queue on one Redis (``queue`` in ``create_push_notifications_jobs``)."""

    def __init__(self, redis: aioredis.Redis | None, name: str, *, dedup_ttl_s: int = 86_400
                 ) -> None:
        self.name = check_name("queue", name)
        self.redis = redis
        self.keys = keys_for_queue(name)
        self.topic = job_topic(name)
        self.test_mode = TestMode()
        self.hooks = JobHooks()
        self._producer = (
            Producer(redis, self.topic, dedup_ttl_s=dedup_ttl_s) if redis is not None else None
        )

    def _require_redis(self) -> aioredis.Redis:
        if self.redis is None:
            raise ConfigError("this JobQueue has no Redis client; pass one or use test mode")
        return self.redis

    async def create(self, payloads: Sequence[PushNotification]) -> list[str]:
        """Queue validated payloads; returns their job ids (or records them in test mode)."""
        if self.test_mode.active:
            ids = []
            for p in payloads:
                self.test_mode._seq += 1
                job_id = f"{self.name}:{self.test_mode._seq}"
                self.test_mode.jobs.append(
                    Job(job_id, self.name, p.model_dump(by_alias=True), created_at=_now_ms())
                )
                ids.append(job_id)
            return ids
        self._require_redis()
        assert self._producer is not None
        if not payloads:
            return []
        now = _now_ms()

        def jobs(first: int) -> list[Outgoing]:
            items = []
            for n, payload in enumerate(payloads):
                job_id = f"{self.name}:{first + n}"
                effects = Effects().hset(
                    self.keys.job(job_id),
                    {"state": "queued", "queue": self.name, "kind": "push_notification",
                     "data": payload.model_dump_json(by_alias=True), "progress": 0,
                     "attempts": 0, "error": "", "created_at": now, "updated_at": now},
                )
                self.hooks._emit(effects, self.keys, JobCreated(job_id=job_id, queue=self.name))
                event = JobRequested(job_id=job_id, queue=self.name, payload=payload)
                items.append(Outgoing(event, job_id, effects))
            return items

        # numbered and queued in one step: job n is the n-th on the stream (as Kue's ids)
        produced = await self._producer.publish_numbered(self.keys.seq, len(payloads), jobs)
        return [p.event_id for p in produced]

    async def get(self, job_id: str) -> Job:
        """The job's record; raises ``NotFound``."""
        redis = self._require_redis()
        record: Any = await redis.hgetall(self.keys.job(job_id))
        if not record:
            raise NotFound(f"no job {job_id!r} in queue {self.name!r}")
        return Job.from_record(job_id, record)

    async def list(self, state: str | None = None, limit: int = 1000) -> list[Job]:
        """Jobs of this queue (by id order), optionally only those in ``state``."""
        if state is not None and state not in STATES:
            raise ConfigError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
        redis = self._require_redis()
        prefix = self.keys.job("")
        names = [k async for k in redis.scan_iter(match=_glob_escape(prefix) + "*", count=1000)]
        ids = sorted((k.decode()[len(prefix):] for k in names), key=_job_sort_key)
        jobs: list[Job] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            pipe = redis.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hgetall(self.keys.job(job_id))
            for job_id, record in zip(chunk, await pipe.execute(), strict=True):
                if record:
                    job = Job.from_record(job_id, record)
                    if state is None or job.state == state:
                        jobs.append(job)
                        if len(jobs) >= limit:
                            return jobs
        return jobs


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _job_sort_key(job_id: str) -> tuple[str, int]:
    queue, _, n = job_id.rpartition(":")
    return queue, int(n) if n.isdigit() else 0


def validate_push_notifications(jobs: object) -> list[PushNotification]:
    """The seed's checks: a list, each job a valid push notification (index and field named)."""
    if not isinstance(jobs, list):
        raise JobsNotAnArray()
    payloads = []
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise ValidationFailed(f"job {index}: must be an object with phoneNumber and message")
        try:
            payloads.append(PushNotification.model_validate(job))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(job)"
            raise ValidationFailed(f"job {index}: {where}: {err['msg']}") from None
    return payloads


async def create_push_notifications_jobs(
    jobs: object, queue: JobQueue, *, echo: Any = print
) -> list[str]:
    """The seed's ``createPushNotificationsJobs(jobs, queue)``.

    Raises ``JobsNotAnArray`` ("Jobs is not an array") for a non-list and ``ValidationFailed``
    naming the job's index and field; returns the job ids, printing
    ``Notification job created: <id>`` for each (pass ``echo=None`` to stay quiet).
    """
    payloads = validate_push_notifications(jobs)
    ids = await queue.create(payloads)
    if echo is not None:
        for job_id in ids:
            echo(CREATED_LINE.format(id=job_id))
    return ids
