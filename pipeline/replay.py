"""Reading a log fast, and rebuilding a projection from it (``pipeline replay <projection>``).

``read_pages`` reads a stream in big XRANGE pages, asking for the next page before the caller
works on the current one (the server prepares it meanwhile), and hands over hiredis's replies
as they come (no per-entry dicts).

``replay`` folds the whole log with the projection's own ``apply`` into shadow keys, then
swaps them in with ``lua/replay_swap.lua``, which in the same atomic step sets the checkpoint,
moves the projector's group to the folded position and acks every entry still pending in it:
those are in the new read models, so a projector that held them has its results discarded
(fencing), and nothing is applied twice. Entries appended while the fold ran are folded too
before the swap (the script refuses to swap while the log has moved on).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from pipeline.codec import decode
from pipeline.errors import ConfigError, DecodeError, PipelineError
from pipeline.keys import Keys
from pipeline.projector import DictWrites, Projection
from pipeline.scripts import Scripts

PAGE = 10_000
#: a raw XRANGE entry: [entry id, [field, value, field, value, ...]]
RawEntry = list[Any]
_ENTRY_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")


def check_entry_id(value: str) -> str:
    if not _ENTRY_ID.match(value):
        raise ConfigError(f"invalid entry id {value!r}: expected MS-SEQ, e.g. 1700000000000-0")
    return value


def raw_client(redis: aioredis.Redis) -> aioredis.Redis:
    """A client on the same pool whose XRANGE replies are hiredis's nested lists, untouched."""
    raw = aioredis.Redis(connection_pool=redis.connection_pool)
    raw.set_response_callback("XRANGE", lambda response, **_: response)
    return raw


async def read_pages(redis: aioredis.Redis, stream: str, start: str = "-", end: str = "+",
                     page: int = PAGE) -> AsyncIterator[list[RawEntry]]:
    """The entries of ``stream`` from ``start`` to ``end`` (inclusive), ``page`` at a time."""
    raw = raw_client(redis)
    nxt: asyncio.Future[Any] = asyncio.ensure_future(
        raw.execute_command("XRANGE", stream, start, end, "COUNT", page))  # type: ignore[no-untyped-call]
    while True:
        entries = await nxt
        if len(entries) < page:
            if entries:
                yield entries
            return
        last = entries[-1][0]
        nxt = asyncio.ensure_future(raw.execute_command(
            "XRANGE", stream, b"(" + last, end, "COUNT", page))  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)  # the request goes out now; the server works while we fold
        try:
            yield entries
        except BaseException:
            nxt.cancel()
            raise


def fields_of(raw: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(raw[::2], raw[1::2], strict=False))


class _Tracking(DictWrites):
    """Dict writes that remember which fields changed since ``dirty`` was last emptied."""

    __slots__ = ("dirty",)

    def __init__(self, models: tuple[str, ...]) -> None:
        super().__init__(models)
        self.dirty: set[tuple[str, str]] = set()

    def hset(self, model: str, field: str, value: int) -> None:
        super().hset(model, field, value)
        self.dirty.add((model, field))

    def hincrby(self, model: str, field: str, amount: int) -> None:
        super().hincrby(model, field, amount)
        self.dirty.add((model, field))


@dataclass
class ReplayResult:
    projection: str
    entries: int
    skipped: int
    position: str
    acked_pending: int
    keys: dict[str, str]
    rounds: int


async def replay(redis: aioredis.Redis, projection: Projection, partition: int = 0,
                 *, page: int = PAGE, max_rounds: int = 50) -> ReplayResult:
    """Rebuild ``projection``'s read models from its whole log and swap them in atomically.

    Entries that do not decode are skipped, as the live projector dead-letters them.
    Raises ``PipelineError`` when the log keeps growing faster than the fold catches up."""
    keys = Keys(projection.topic, partition)
    live = projection.model_keys(keys)
    shadow = {m: f"{k}:shadow" for m, k in live.items()}
    writes = _Tracking(projection.models)
    position, entries, skipped = "0-0", 0, 0
    start = "-"
    scripts = Scripts(redis)
    swap_keys = [keys.stream, keys.checkpoint(projection.name)]
    for m in projection.models:
        swap_keys += (live[m], shadow[m])
    await redis.delete(*shadow.values())
    for rounds in range(1, max_rounds + 1):
        async for chunk in read_pages(redis, keys.stream, start, "+", page):
            for entry_id, raw in chunk:
                try:
                    env = decode(fields_of(raw))
                except DecodeError:
                    skipped += 1
                    continue
                projection.apply(env.type, env.data.model_dump(), writes)
            entries += len(chunk)
            position = chunk[-1][0].decode()
        await _write_shadow(redis, writes, shadow)
        done, detail = await scripts("replay_swap", swap_keys,
                                     [projection.group, position, entries])
        if int(done):
            return ReplayResult(projection.name, entries, skipped, position, int(detail),
                                live, rounds)
        start = f"({position}" if position != "0-0" else "-"
    raise PipelineError(
        f"the log of {projection.topic!r} kept growing faster than the replay could fold it "
        f"({max_rounds} rounds); run the replay at a quieter time")


async def _write_shadow(redis: aioredis.Redis, writes: _Tracking, shadow: dict[str, str]
                        ) -> None:
    """Write the changed fields of every model into its shadow key."""
    pipe = redis.pipeline(transaction=False)
    batch: dict[str, dict[str, int]] = {}
    for model, field in writes.dirty:
        batch.setdefault(model, {})[field] = writes.state[model][field]
    for model, values in batch.items():
        items = list(values.items())
        for i in range(0, len(items), 1000):
            pipe.hset(shadow[model], mapping=dict(items[i : i + 1000]))
    if batch:
        await pipe.execute()
    writes.dirty.clear()
