"""Live tails: the events of one or more topics as they happen, read from their streams.

A job topic ``jobs:<queue>`` is followed on its lifecycle events stream (``…:events``: created,
progress, completed, retried, failed, dead_lettered, redriven); ``reservations`` and any other
topic on its log (``…:stream``; for ``reservations`` that is the ledger). Reading streams, not
the pub/sub channels, is what makes a tail lossless and resumable: the channels (``pl:events:
<topic>``) drop whatever is published while nobody listens, a stream keeps it, so a browser or
a terminal that reconnects with its cursor misses nothing and repeats nothing.

A tail holds one dedicated connection (a blocking ``XREAD`` occupies it), named
``pipeline-live`` in ``CLIENT LIST``, and closes it when it is closed, so a tail given up
mid-read leaves no blocked client on the server. Topics that have no
stream yet are valid: their tail waits for the first event.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import redis.asyncio as aioredis

from pipeline.connection import CONNECTION_ERRORS, Backoff, ConnectionState
from pipeline.errors import ConfigError
from pipeline.keys import Keys, check_topic, job_topic, parse_stream_key, topics_pattern

LEDGER_TOPIC = "reservations"
#: the name a tail's connection has in CLIENT LIST
CLIENT_NAME = "pipeline-live"
#: at most this many topics in one tail (one XREAD names them all)
MAX_TOPICS = 100
#: entries per stream per read
COUNT = 500
_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
#: what check_topic allows, matched in full (its ``$`` would let a trailing newline through)
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9_.:\-]+")
_U64 = 2**64


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event of a tail: its topic, stream entry id and envelope (``data`` parsed), and the
    cursor right after it (every topic's position, for resuming after this event)."""

    topic: str
    entry_id: str
    #: ``{"id", "type", "v", "data"}`` (+ ``"attempt"`` where present); ``data`` is the JSON
    #: object, or the raw text when an entry's data is not JSON
    envelope: dict[str, Any]
    cursor: str

    def as_dict(self) -> dict[str, Any]:
        """``{"topic", "entry_id", "id", "type", "v", "data"}``: what ``/v1/events`` sends."""
        return {"topic": self.topic, "entry_id": self.entry_id, **self.envelope}

    def to_json(self) -> str:
        """``as_dict`` as one line of JSON."""
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)


def check_live_topic(topic: object) -> str:
    """A topic a tail can follow: ``NAME`` or ``KIND:NAME``; raises ``ConfigError``."""
    if not isinstance(topic, str):
        raise ConfigError(f"invalid topic {topic!r}: expected text")
    check_topic(topic)
    if not _TOPIC_CHARS.fullmatch(topic):
        raise ConfigError(f"invalid topic {topic!r}: use letters, digits, '_', '.' or '-'")
    if topic.startswith("jobs:"):
        job_topic(topic.removeprefix("jobs:"))
    return topic


def events_stream(topic: str) -> str:
    """The stream a topic's live events are read from: a job queue's lifecycle events
    stream, any other topic's log (for ``reservations``, the ledger)."""
    keys = Keys(check_live_topic(topic), 0)
    return keys.events if topic.startswith("jobs:") else keys.stream


def check_entry_id(value: object) -> str:
    """``<ms>-<seq>`` or ``<ms>`` (read as ``<ms>-0``), each at most 2^64-1; raises
    ``ConfigError``. Returns the full form."""
    m = _ID.fullmatch(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) >= _U64 or int(m.group(2) or 0) >= _U64:
        raise ConfigError(f"invalid entry id {value!r}: use <ms>-<seq>, e.g. 1700000000000-0")
    return f"{int(m.group(1))}-{int(m.group(2) or 0)}"


def check_since(value: object) -> str:
    """``now`` (only what happens from now on), ``0`` (from the beginning) or an entry id
    (what comes after it); raises ``ConfigError``. Returns ``now`` or a full entry id."""
    if value == "now":
        return "now"
    if value == "0":
        return "0-0"
    try:
        return check_entry_id(value)
    except ConfigError:
        raise ConfigError(
            f"invalid since {value!r}: use now, 0 (from the beginning) or an entry id "
            "such as 1700000000000-0") from None


def encode_cursor(positions: Mapping[str, str]) -> str:
    """``topic=entry_id`` pairs joined by ``,``, e.g. ``jobs:q=1700000000000-0,reservations=0-0``
    (only characters that need no escaping in a URL query or a header)."""
    return ",".join(f"{topic}={entry_id}" for topic, entry_id in positions.items())


def parse_cursor(text: object) -> dict[str, str]:
    """The positions in a cursor made by ``encode_cursor``; raises ``ConfigError``."""
    if not isinstance(text, str) or not text or len(text) > 20_000:
        raise ConfigError("invalid cursor: expected topic=entry_id pairs joined by ','")
    positions: dict[str, str] = {}
    for part in text.split(","):
        topic, sep, entry_id = part.partition("=")
        if not sep:
            raise ConfigError(f"invalid cursor part {part[:200]!r}: expected topic=entry_id")
        if topic in positions:
            raise ConfigError(f"invalid cursor: topic {topic[:200]!r} appears twice")
        try:
            positions[check_live_topic(topic)] = check_entry_id(entry_id)
        except ConfigError as exc:
            raise ConfigError(f"invalid cursor part {part[:200]!r}: {exc}") from None
        if len(positions) > MAX_TOPICS:
            raise ConfigError(f"invalid cursor: more than {MAX_TOPICS} topics")
    return positions


def check_topics(topics: Iterable[object]) -> list[str]:
    """Valid, distinct topics in their order (1 to ``MAX_TOPICS``); raises ``ConfigError``."""
    out: list[str] = []
    for topic in topics:
        if check_live_topic(topic) not in out:
            out.append(str(topic))
    if not out:
        raise ConfigError("no topic to follow: name at least one")
    if len(out) > MAX_TOPICS:
        raise ConfigError(f"too many topics ({len(out)}): follow at most {MAX_TOPICS} at once")
    return out


async def job_topics(redis: aioredis.Redis) -> list[str]:
    """Every job queue's topic that exists (has a stream), sorted."""
    found = set()
    async for key in redis.scan_iter(match=topics_pattern(), count=1000):
        keys = parse_stream_key(key.decode() if isinstance(key, bytes) else str(key))
        if keys is not None and keys.partition == 0 and keys.topic.startswith("jobs:"):
            try:
                found.add(check_live_topic(keys.topic))
            except ConfigError:
                continue  # a stream named by someone else; not ours to follow
    return sorted(found)


async def default_topics(redis: aioredis.Redis) -> list[str]:
    """What a tail follows when no topic is named: every job queue and the ledger."""
    return (await job_topics(redis))[: MAX_TOPICS - 1] + [LEDGER_TOPIC]


async def positions(redis: aioredis.Redis, topics: Sequence[str], since: str = "now",
                    cursor: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where to start each topic: its cursor position, else ``since`` (``now`` resolved to
    the topic's last entry now, so nothing added from here on is missed)."""
    since = check_since(since)
    cursor = cursor or {}
    out = {t: cursor.get(t, since) for t in check_topics(topics)}
    now = [t for t, p in out.items() if p == "now"]
    if now:
        pipe = redis.pipeline(transaction=False)
        for topic in now:
            pipe.xrevrange(events_stream(topic), count=1)
        for topic, last in zip(now, await pipe.execute(), strict=True):
            out[topic] = _text(last[0][0]) if last else "0-0"
    return out


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def envelope(fields: Mapping[Any, Any]) -> dict[str, Any]:
    """A stream entry's envelope as a dict, ``data`` parsed from JSON (kept as text when it
    is not JSON: a live view shows what is there rather than hide an entry)."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    raw = text.get("data", "")
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = raw
    out: dict[str, Any] = {"id": text.get("id", ""), "type": text.get("type", ""),
                           "v": text.get("v", ""), "data": data}
    if "attempt" in text:
        out["attempt"] = text["attempt"]
    return out


class Tail:
    """Follows topics from given positions on a dedicated connection; ``read`` returns the
    next events in each topic's order, ``follow`` yields them forever (reconnecting)."""

    def __init__(self, redis: aioredis.Redis, start: Mapping[str, str], *,
                 count: int = COUNT) -> None:
        topics = check_topics(start)
        self.positions: dict[str, str] = {t: check_entry_id(start[t]) for t in topics}
        self._streams = {t: events_stream(t) for t in topics}
        self._topic_of = {s: t for t, s in self._streams.items()}
        self.count = count
        pool = redis.connection_pool
        # a pool of one connection of its own, named, so CLIENT LIST tells tails apart
        self._conn = aioredis.Redis(connection_pool=aioredis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1,
            **{**pool.connection_kwargs, "client_name": CLIENT_NAME}))
        timeout = pool.connection_kwargs.get("socket_timeout")
        #: the longest BLOCK that never trips the client's socket timeout
        self.max_block_ms = max(1, int(timeout * 1000) - 500) if timeout else None

    @classmethod
    async def open(cls, redis: aioredis.Redis, topics: Sequence[str], since: str = "now",
                   cursor: Mapping[str, str] | None = None) -> Tail:
        """A tail of ``topics`` from ``since`` (``now``, ``0`` or an entry id), or from
        their position in ``cursor`` where it has one. Raises ``ConfigError``."""
        return cls(redis, await positions(redis, topics, since, cursor))

    @property
    def topics(self) -> list[str]:
        return list(self.positions)

    @property
    def cursor(self) -> str:
        """Every topic's position now (what has been returned so far)."""
        return encode_cursor(self.positions)

    async def read(self, block_ms: int | None = None) -> list[LiveEvent]:
        """The events after the current positions, waiting up to ``block_ms`` for one
        (``None``: not at all); ``[]`` when none came. Advances the positions."""
        if block_ms is not None and self.max_block_ms is not None:
            block_ms = min(block_ms, self.max_block_ms)
        reply: Any = await self._conn.xread(
            {self._streams[t]: p for t, p in self.positions.items()},
            count=self.count, block=block_ms)
        out: list[LiveEvent] = []
        for stream, entries in reply or []:
            topic = self._topic_of[_text(stream)]
            for entry_id, fields in entries:
                eid = _text(entry_id)
                self.positions[topic] = eid
                out.append(LiveEvent(topic, eid, envelope(fields), self.cursor))
        return out

    async def next(self, block_ms: int | None = 2000, state: ConnectionState | None = None
                   ) -> list[LiveEvent]:
        """``read``, retried with backoff while the server cannot be reached (from the same
        positions: nothing missed, nothing repeated); ``state`` hears of each change."""
        backoff = Backoff()
        while True:
            try:
                batch = await self.read(block_ms)
            except CONNECTION_ERRORS as exc:
                if state is not None:
                    state.down(exc)
                await backoff.sleep()
                continue
            if state is not None:
                state.up()
            return batch

    async def follow(self, block_ms: int = 2000, state: ConnectionState | None = None
                     ) -> AsyncIterator[LiveEvent]:
        """Every event from the positions on, forever (reconnecting, as ``next``)."""
        while True:
            for event in await self.next(block_ms, state):
                yield event

    async def aclose(self) -> None:
        """Close the tail's connection (not merely give it back: one interrupted in a
        blocking read would stay blocked on the server), so nothing of it outlives it."""
        await self._conn.aclose(close_connection_pool=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
