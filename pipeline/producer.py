"""The producer: appends events to a topic's stream, idempotent on event id, in batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from pipeline.codec import encode, uuid7
from pipeline.effects import Effects
from pipeline.keys import Keys, check_topic, partition_of
from pipeline.scripts import Scripts
from schemas.base import EventModel

#: events per produce script call: big enough to amortise the round trip, small enough
#: not to stall the server for long
CHUNK = 500


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event to produce, with the writes that go with it (only if it is new)."""

    event: EventModel
    event_id: str
    effects: Effects | None = None
    partition_key: str | None = None


@dataclass(frozen=True, slots=True)
class Produced:
    event_id: str
    entry_id: str
    new: bool


class Producer:
    """Appends events to ``topic``. A retried publish of the same event id appends nothing
    and returns the original entry id (for ``dedup_ttl_s`` seconds)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        topic: str,
        *,
        partitions: int = 1,
        dedup_ttl_s: int = 86_400,
        maxlen: int = 0,
        scripts: Scripts | None = None,
    ) -> None:
        self.redis = redis
        self.topic = check_topic(topic)
        self.partitions = partitions
        self.dedup_ttl_s = dedup_ttl_s
        self.maxlen = maxlen
        self.scripts = scripts or Scripts(redis)
        self._numbering = asyncio.Lock()

    async def publish_numbered(self, seq_key: str, count: int,
                               build: Callable[[int], Sequence[Outgoing]]) -> list[Produced]:
        """Take ``count`` numbers from the counter ``seq_key`` and append the events
        ``build(first)`` makes for ``first .. first + count - 1``, in that order, so that their
        numbers are their order on the stream: the
        numbering and the append are one step for this producer's concurrent callers (two
        requests could otherwise take 24 and 51 and reach the stream 51 first; the seed's
        seat queue is first come, first served). Across processes, numbers stay unique and
        each process's events keep their order."""
        if count <= 0:
            return []
        async with self._numbering:
            last = int(await self.redis.incrby(seq_key, count))
            items = list(build(last - count + 1))
            if len(items) != count:
                raise ValueError(f"build made {len(items)} events for {count} numbers")
            return await self.publish_many(items)

    def keys_for(self, key: str) -> Keys:
        return Keys(self.topic, partition_of(key, self.partitions))

    async def publish(self, event: EventModel, *, event_id: str | None = None) -> Produced:
        """Append one event; returns its entry id (the original one for a repeated id)."""
        [out] = await self.publish_many([Outgoing(event, event_id or uuid7())])
        return out

    async def publish_many(self, items: Sequence[Outgoing] | Iterable[Outgoing]) -> list[Produced]:
        """Append many events, ``CHUNK`` per round trip, in order within a partition."""
        by_partition: dict[int, list[tuple[int, Outgoing]]] = {}
        items = list(items)
        for n, item in enumerate(items):
            p = partition_of(item.partition_key or item.event_id, self.partitions)
            by_partition.setdefault(p, []).append((n, item))
        results: list[Produced | None] = [None] * len(items)
        for p, group in by_partition.items():
            keys = Keys(self.topic, p)
            for start in range(0, len(group), CHUNK):
                chunk = group[start : start + CHUNK]
                events: list[Any] = []
                for _, item in chunk:
                    fields = encode(item.event, event_id=item.event_id)
                    flat = [x for kv in fields.items() for x in kv]
                    events.append([item.event_id, flat,
                                   item.effects.as_lists() if item.effects else []])
                args = [keys.dedup(""), self.dedup_ttl_s, keys.base, self.maxlen,
                        json.dumps(events)]
                reply = await self.scripts("produce", [keys.stream], args)
                for j, (n, item) in enumerate(chunk):
                    entry = reply[2 * j]
                    results[n] = Produced(
                        item.event_id,
                        entry.decode() if isinstance(entry, bytes) else str(entry),
                        bool(reply[2 * j + 1]),
                    )
        return [r for r in results if r is not None]
