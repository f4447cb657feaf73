"""Dead letters: list, inspect, redrive and purge what a topic's agents could not handle.

The worker's settle script writes each dead letter to ``Keys.dead`` with the fields
``reason, error, traceback, attempts, deliveries, stream, entry_id, group, consumer,
dead_at`` and the original entry's fields as ``raw:<field>``. A redrive moves the original
back onto its stream as a fresh first attempt and deletes the dead letter in one script
(``lua/redrive.lua``); for a job it also puts the job record back to ``queued`` in that same
step, so a dashboard never sees a job that is running again but still marked failed.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import redis.asyncio as aioredis

from pipeline.codec import text_fields
from pipeline.effects import Effects
from pipeline.errors import NotFound
from pipeline.jobs import JobHooks
from pipeline.keys import Keys, check_topic, job_topic
from pipeline.scripts import Scripts

#: the envelope type of a job; only these get their job record reset on redrive
JOB_REQUESTED = "job.requested"
_ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_PAGE = 100


class Everything(Enum):
    """The type of ``ALL``: select every dead letter of the topic."""

    ALL = "all"


ALL = Everything.ALL
Selection = Sequence[str] | Literal[Everything.ALL]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter, as ``DeadLetters.list`` shows it."""

    dead_id: str
    reason: str
    error: str
    event_id: str
    type: str
    attempts: int
    #: when it was dead-lettered: milliseconds since the epoch, by the server's clock
    dead_at: int

    @classmethod
    def from_fields(cls, dead_id: str, fields: dict[str, str]) -> DeadLetter:
        return cls(
            dead_id=dead_id,
            reason=fields.get("reason", ""),
            error=fields.get("error", ""),
            event_id=fields.get("raw:id", ""),
            type=fields.get("raw:type", ""),
            attempts=_int(fields.get("attempts")),
            dead_at=_int(fields.get("dead_at")),
        )


@dataclass(frozen=True, slots=True)
class Redriven:
    """A dead letter moved back onto its stream as the new entry ``entry_id``."""

    dead_id: str
    entry_id: str


class DeadLetters:
    """The dead letters of one partition of one topic (a job queue Q is topic ``jobs:Q``)."""

    def __init__(
        self, redis: aioredis.Redis, topic: str, partition: int = 0,
        scripts: Scripts | None = None,
    ) -> None:
        self.redis = redis
        self.keys = Keys(check_topic(topic), partition)
        self.scripts = scripts or Scripts(redis)

    @classmethod
    def for_queue(cls, redis: aioredis.Redis, queue: str, partition: int = 0) -> DeadLetters:
        """The dead letters of job queue ``queue``; raises ``ConfigError`` for a bad name."""
        return cls(redis, job_topic(queue), partition)

    @property
    def topic(self) -> str:
        return self.keys.topic

    async def count(self) -> int:
        return int(await self.redis.xlen(self.keys.dead))

    async def list(self, limit: int = 100, start: str = "-") -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first, from entry id ``start`` (inclusive)."""
        if start != "-":
            _check_id(start, self.topic)
        reply = await self.redis.xrange(self.keys.dead, min=start, max="+", count=max(1, limit))
        return [DeadLetter.from_fields(i, f) for i, f in _entries(reply)]

    async def show(self, dead_id: str) -> dict[str, str]:
        """Every field of one dead letter; raises ``NotFound`` when there is no such id."""
        found = await self._fetch([dead_id])
        return found[dead_id]

    async def redrive(self, which: Selection) -> builtins.list[Redriven]:
        """Move dead letters back onto the stream, each as a fresh first attempt.

        ``which`` is a list of dead-letter ids or ``ALL`` (those present when the call
        starts: a redriven entry that fails again is not redriven a second time). Raises
        ``NotFound``, before moving anything, when one of the ids does not exist.
        """
        if which is ALL:
            return await self._redrive_all()
        found = await self._fetch(_unique(which))
        moved: builtins.list[Redriven] = []
        for dead_id, fields in found.items():
            entry_id = await self._redrive_one(dead_id, fields)
            if entry_id is not None:
                moved.append(Redriven(dead_id, entry_id))
        return moved

    async def purge(self, which: Selection) -> int:
        """Delete dead letters for good; returns how many. Raises ``NotFound``, before
        deleting anything, when one of the ids does not exist."""
        if which is ALL:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(self.keys.dead)
                pipe.delete(self.keys.dead)
                count, _ = await pipe.execute()
            return int(count)
        ids = list(await self._fetch(_unique(which)))
        return int(await self.redis.xdel(self.keys.dead, *ids)) if ids else 0

    # ------------------------------------------------------------------ internals

    async def _fetch(self, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The fields of each id, in order; ``NotFound`` naming every missing one."""
        for dead_id in ids:
            _check_id(dead_id, self.topic)
        pipe = self.redis.pipeline(transaction=False)
        for dead_id in ids:
            pipe.xrange(self.keys.dead, min=dead_id, max=dead_id)
        found: dict[str, dict[str, str]] = {}
        missing: builtins.list[str] = []
        for dead_id, reply in zip(ids, await pipe.execute() if ids else [], strict=True):
            rows = _entries(reply)
            if rows:
                found[dead_id] = rows[0][1]
            else:
                missing.append(dead_id)
        if missing:
            raise NotFound(
                f"no dead letter {', '.join(missing)} in topic {self.topic!r}; "
                "see the ids with `pipeline dlq list`"
            )
        return found

    async def _redrive_all(self) -> builtins.list[Redriven]:
        last = _entries(await self.redis.xrevrange(self.keys.dead, count=1))
        if not last:
            return []
        end = last[0][0]
        moved: builtins.list[Redriven] = []
        start = "-"
        while True:
            rows = _entries(await self.redis.xrange(self.keys.dead, min=start, max=end,
                                                    count=_PAGE))
            for dead_id, fields in rows:
                entry_id = await self._redrive_one(dead_id, fields)
                if entry_id is not None:
                    moved.append(Redriven(dead_id, entry_id))
            if len(rows) < _PAGE:
                return moved
            start = "(" + rows[-1][0]

    async def _redrive_one(self, dead_id: str, fields: dict[str, str]) -> str | None:
        """Run the redrive script; None when the dead letter vanished meanwhile."""
        args: builtins.list[object] = [dead_id, self.keys.base]
        (await self._requeue_job(fields)).encode(args)
        entry_id = await self.scripts("redrive", [self.keys.dead, self.keys.stream], args)
        return None if entry_id is None else _text(entry_id)

    async def _requeue_job(self, fields: dict[str, str]) -> Effects:
        """For a job's dead letter: its record back to ``queued``, as a fresh job."""
        effects = Effects()
        job_id = fields.get("raw:id", "")
        if not self.topic.startswith("jobs:") or fields.get("raw:type") != JOB_REQUESTED:
            return effects
        key = self.keys.job(job_id)
        # never create a record from nothing: one deleted on purpose stays deleted
        if job_id and await self.redis.exists(key):
            queue = self.topic.removeprefix("jobs:")
            return JobHooks().redriven(self.keys, job_id, queue)
        return effects


def _entries(reply: Any) -> builtins.list[tuple[str, dict[str, str]]]:
    """XRANGE's reply as (entry id, fields as text)."""
    return [(_text(i), text_fields(f or {})) for i, f in reply or []]


def _check_id(dead_id: str, topic: str) -> None:
    if not isinstance(dead_id, str) or not _ENTRY_ID.match(dead_id):
        raise NotFound(
            f"no dead letter {dead_id!r} in topic {topic!r}: dead-letter ids look like "
            "1700000000000-0 (see `pipeline dlq list`)"
        )


def _unique(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        ids = [ids]
    return list(dict.fromkeys(ids))


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
