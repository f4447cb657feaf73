"""Throughput in Redis: what every worker handled in the last minute, and how fast entries
are appended to its stream, for ``pipeline status`` and ``/v1/streams``.

Workers count in memory (``pipeline.stats``); ``record`` runs beside each worker and adds
what was handled since its last flush to a small hash per partition, ``Keys.rate``, every
``FLUSH_S`` seconds and once more when the worker stops: one script call a flush, none per
entry (``lua/rate.lua``). Buckets are ``BUCKET_S`` seconds of the server's clock, so workers
on machines with different clocks agree. The same call samples the stream's entries-added
counter (XINFO STREAM): the first sample of each bucket is kept, with its server time.

What a reader gets of the handled counts is as fresh as the last flush: up to ``FLUSH_S``
seconds behind. The produced figure is a count, not an extrapolated rate: the stream's
entries-added counter as the reader reads it, minus the oldest sample taken in the last
``WINDOW_MS``. It is never more than what was appended in the last minute (a rate scaled
up from a shorter span can be: 22 entries since a sample 50 s old would read 26.4) and,
while a worker flushes every ``FLUSH_S``, it counts at least the last 50 s of it (the oldest
sample of the minute is at most two buckets into it). Unknown until the samples reach back a
whole minute, and unknown when the oldest sample of the minute is more than two buckets into
it (no worker sampled for a while): the count of a part of the minute would read as a low
rate.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from pipeline.connection import CONNECTION_ERRORS
from pipeline.logging import get_logger

if TYPE_CHECKING:
    from pipeline.worker import Worker

log = get_logger("pipeline.throughput")

#: seconds between two flushes of one worker
FLUSH_S = 5.0
#: width of one bucket, seconds
BUCKET_S = 5
#: the window read as "the last minute": the current bucket and the 11 before it
WINDOW_BUCKETS = 12
#: the last minute, by the server's clock, for the produced count
WINDOW_MS = 60_000
#: the oldest sample of the window must be this close to its start (two flushes)
COVERED_MS = int(2 * FLUSH_S * 1000)
#: buckets kept in the hash (older fields are removed by the flush)
KEEP_BUCKETS = 24
#: the hash expires this long after the last flush of any worker of the partition
TTL_S = 300
#: a final flush (at stop) waits at most this long for Redis
FINAL_FLUSH_TIMEOUT_S = 2.0


class Flusher:
    """Sends one worker's counts since the last successful flush. A failed flush keeps
    them for the next one (a reply lost after the script ran counts them twice, rarely)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.sent_handled = 0
        self.sent_failed = 0

    async def flush(self) -> None:
        w = self.worker
        handled, failed = w.stats.handled, w.stats.failed
        await w.scripts(
            "rate", [w.keys.rate, w.keys.stream],
            [w.group, handled - self.sent_handled, failed - self.sent_failed, BUCKET_S,
             KEEP_BUCKETS, TTL_S],
        )
        self.sent_handled, self.sent_failed = handled, failed

    async def try_flush(self) -> bool:
        try:
            await self.flush()
        except CONNECTION_ERRORS:
            return False  # the worker logs the connection state; the counts wait
        except ResponseError as exc:
            self.worker.log.warning("throughput_flush_failed", error=str(exc))
            return False
        return True


async def record(worker: Worker, interval: float = FLUSH_S) -> None:
    """Record ``worker``'s throughput every ``interval`` seconds until it is cancelled
    (the worker cancels its companions after its last settle), then flush once more."""
    flusher = Flusher(worker)
    try:
        while True:
            await flusher.try_flush()
            await asyncio.sleep(interval)
    except asyncio.CancelledError:
        # the worker has settled everything by now: send the rest, briefly
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FINAL_FLUSH_TIMEOUT_S):
                await flusher.try_flush()
        raise


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class GroupRate:
    """One group over the last minute (the current bucket and the eleven before it)."""

    handled: int
    failed: int


@dataclass(frozen=True, slots=True)
class Rates:
    """What one partition's rate hash says."""

    #: by group; a group missing here has had no reporting worker for ``KEEP_BUCKETS``
    #: buckets (two minutes)
    groups: dict[str, GroupRate]
    #: entries appended since the oldest sample of the last minute (see the module doc);
    #: None unless the samples reach back a minute (a worker has run there that long, and
    #: one still does)
    produced_per_min: int | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read(fields: dict[Any, Any], now_ms: int, added_now: int | None = None) -> Rates:
    """Interpret a rate hash (``HGETALL Keys.rate``) at the server time ``now_ms``, with the
    stream's entries-added counter ``added_now`` read no later than ``now_ms`` (without
    it, the newest sample stands in: a count up to the last flush)."""
    newest = now_ms // 1000 // BUCKET_S
    first = newest - WINDOW_BUCKETS + 1
    handled: dict[str, int] = {}
    failed: dict[str, int] = {}
    samples: list[tuple[int, int]] = []
    for raw_field, raw_value in fields.items():
        name, _, bucket_text = _text(raw_field).rpartition(":")
        if not bucket_text.isdigit():
            continue
        bucket = int(bucket_text)
        value = _text(raw_value)
        if name == "~added":
            at, _, added = value.partition(":")
            if at.isdigit() and added.isdigit():
                samples.append((int(at), int(added)))
            continue
        group, _, kind = name.rpartition(":")
        counts = handled if kind == "h" else failed if kind == "f" else None
        if counts is None or not group:
            continue
        if bucket >= newest - KEEP_BUCKETS:
            counts.setdefault(group, 0)
        if first <= bucket <= newest:
            counts[group] += int(value)
    groups = {g: GroupRate(handled.get(g, 0), failed.get(g, 0))
              for g in sorted(handled.keys() | failed.keys())}
    return Rates(groups, _produced(samples, now_ms, added_now))


def _produced(samples: list[tuple[int, int]], now_ms: int, added_now: int | None
              ) -> int | None:
    since = now_ms - WINDOW_MS
    inside = sorted(s for s in samples if since <= s[0] <= now_ms)
    if not inside or not any(at < since for at, _ in samples):
        return None
    if inside[0][0] > since + COVERED_MS:
        return None  # a gap (no worker sampled there for a while): part of a minute only
    end = inside[-1][1] if added_now is None else added_now
    return max(0, end - inside[0][1])  # a counter reset (stream recreated) is no negative rate
