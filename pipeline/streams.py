"""Every stream of the pipeline with its length, delayed and dead counts and produced rate,
and per consumer group its pending entries, lag, consumers and what its workers handled in
the last minute (``pipeline status`` and ``/v1/streams``; throughput from
``pipeline.throughput``)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import ResponseError

from pipeline import throughput
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
    #: entries its workers settled (done, retried or dead-lettered) in the last minute (the
    #: current 5-s bucket and the eleven before it); null when no worker of the group has
    #: reported for two minutes (or it runs outside this library)
    handled_per_min: int | None = None
    #: handler runs that failed (raised or timed out) in the last minute; null as above
    failed_per_min: int | None = None
    #: ``handled_per_min`` / 60
    handled_per_s: float | None = None


class StreamStats(BaseModel):
    """One partition of one topic."""

    topic: str
    partition: int
    stream: str
    length: int
    delayed: int
    dead: int
    #: entries appended (new events, and retries moved back from ``delayed``) since the
    #: oldest entries-added sample its workers took in the last minute: never more than
    #: were appended in the last 60 s, and, while a worker runs, at least those of the last
    #: 50 s (``pipeline.throughput``); null until the samples reach back a minute
    produced_per_min: int | None = None
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
        pipe.hgetall(keys.rate)
        pipe.xinfo_stream(name)  # before TIME: what it counts happened by then
        pipe.time()
        replies = await pipe.execute(raise_on_error=False)
        if isinstance(replies[4], ResponseError):  # deleted since SCAN, or not a stream
            continue
        if error := next((r for r in replies if isinstance(r, Exception)), None):
            raise error
        length, delayed, dead, rate, info, (secs, micros) = replies
        added = info.get("entries-added")
        rates = throughput.read(rate, int(secs) * 1000 + int(micros) // 1000,
                                None if added is None else int(added))
        try:
            groups = [_group(g) for g in await redis.xinfo_groups(name)]
        except ResponseError:  # deleted between SCAN and XINFO, or not a stream
            continue
        for g in groups:
            got = rates.groups.get(g.group)
            if got is not None:
                g.handled_per_min, g.failed_per_min = got.handled, got.failed
                g.handled_per_s = round(got.handled / 60, 2)
        if consumers:
            for g in groups:
                rows: Any = await redis.xinfo_consumers(name, g.group)
                g.members = [ConsumerStats(name=_text(c["name"]), pending=int(c["pending"]),
                                           idle_ms=int(c["idle"])) for c in rows]
        out.append(StreamStats(topic=keys.topic, partition=keys.partition, stream=name,
                               length=int(length), delayed=int(delayed), dead=int(dead),
                               produced_per_min=rates.produced_per_min,
                               groups=sorted(groups, key=lambda g: g.group)))
    out.sort(key=lambda s: (s.topic, s.partition))
    return out
