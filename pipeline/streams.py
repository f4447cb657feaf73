"""Every stream of the pipeline with its length, delayed and dead counts, and per consumer
group its pending entries, lag and consumers (``pipeline status`` and ``/v1/streams``)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import ResponseError

from pipeline.keys import parse_stream_key, topics_pattern


class ConsumerStats(BaseModel):
    """One consumer of a group."""

    name: str
    pending: int
    idle_ms: int


class GroupStats(BaseModel):
    """One consumer group of a stream."""

    group: str
    consumers: int
    pending: int
    #: entries not yet delivered to the group; null when the server cannot tell
    lag: int | None
    last_delivered_id: str
    #: filled only when asked for (``consumers=True``)
    members: list[ConsumerStats] = []


class StreamStats(BaseModel):
    """One partition of one topic."""

    topic: str
    partition: int
    stream: str
    length: int
    delayed: int
    dead: int
    groups: list[GroupStats]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _group(info: dict[Any, Any]) -> GroupStats:
    fields = {_text(k): v for k, v in info.items()}
    lag = fields.get("lag")
    return GroupStats(
        group=_text(fields.get("name", "")),
        consumers=int(fields.get("consumers") or 0),
        pending=int(fields.get("pending") or 0),
        lag=None if lag is None else int(lag),
        last_delivered_id=_text(fields.get("last-delivered-id", "")),
    )


async def stream_stats(redis: aioredis.Redis, *, consumers: bool = False
                       ) -> list[StreamStats]:
    """Every ``pl:{<topic>:<partition>}:stream``, sorted by topic then partition; with
    ``consumers``, each group's consumers too (pending, idle time)."""
    names = sorted({_text(k) async for k in redis.scan_iter(match=topics_pattern(), count=1000)})
    out: list[StreamStats] = []
    for name in names:
        keys = parse_stream_key(name)
        if keys is None:
            continue
        pipe = redis.pipeline(transaction=False)
        pipe.xlen(name)
        pipe.zcard(keys.delayed)
        pipe.xlen(keys.dead)
        length, delayed, dead = await pipe.execute()
        try:
            groups = [_group(g) for g in await redis.xinfo_groups(name)]
        except ResponseError:  # deleted between SCAN and XINFO, or not a stream
            continue
        if consumers:
            for g in groups:
                rows: Any = await redis.xinfo_consumers(name, g.group)
                g.members = [ConsumerStats(name=_text(c["name"]), pending=int(c["pending"]),
                                           idle_ms=int(c["idle"])) for c in rows]
        out.append(StreamStats(topic=keys.topic, partition=keys.partition, stream=name,
                               length=int(length), delayed=int(delayed), dead=int(dead),
                               groups=sorted(groups, key=lambda g: g.group)))
    out.sort(key=lambda s: (s.topic, s.partition))
    return out
