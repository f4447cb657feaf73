"""Pub/sub, as the seed's publisher and subscriber: live fan-out only (lossy by nature);
anything that must not be lost goes to a stream.

The subscriber prints every message it receives, including ``KILL_SERVER``, then
unsubscribes and stops; the publisher prints ``About to send <message>`` before publishing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from pipeline.compat import seed
from pipeline.connection import CONNECTION_ERRORS, Backoff, ConnectionState

KILL_MESSAGE: str = seed()["pubsub"]["kill_message"]
PUBLISHER_LINE: str = seed()["pubsub"]["publisher_line"]


async def publish(redis: aioredis.Redis, channel: str, message: str, *, delay_ms: int = 0,
                  echo: Callable[[str], None] | None = print) -> int:
    """After ``delay_ms``, print the seed's line and publish; returns the receivers' count."""
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    if echo is not None:
        echo(PUBLISHER_LINE.format(message=message))
    return int(await redis.publish(channel, message))


async def subscribe(redis: aioredis.Redis, channel: str, *,
                    echo: Callable[[str], None] = print,
                    ready: asyncio.Event | None = None,
                    state: ConnectionState | None = None) -> list[str]:
    """Print each message on ``channel`` until ``KILL_SERVER`` (printed too); returns them.

    A lost server is waited out as the seed's client does: ``state`` hears of it, and the
    subscription is made again (with backoff) once the server is back. Messages published
    meanwhile are missed: pub/sub is live only."""
    seen: list[str] = []
    backoff = Backoff()
    while True:
        try:
            if await _listen(redis, channel, seen, echo, ready, state, backoff):
                return seen
        except BrokenPipeError:
            raise  # our stdout was closed (`| head`), not the server: stop
        except CONNECTION_ERRORS as exc:
            if state is not None:
                state.down(exc)
            await backoff.sleep()


async def _listen(redis: aioredis.Redis, channel: str, seen: list[str],
                  echo: Callable[[str], None], ready: asyncio.Event | None,
                  state: ConnectionState | None, backoff: Backoff) -> bool:
    """One subscription, until ``KILL_SERVER`` (True) or a connection error (raised)."""
    pubsub: Any = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
            if msg is None:
                continue
            if msg["type"] == "subscribe":
                backoff.reset()
                if state is not None:
                    state.up()
                if ready is not None:
                    ready.set()
                continue
            if msg["type"] != "message":
                continue
            data = msg["data"]
            text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
            seen.append(text)
            echo(text)
            if text == KILL_MESSAGE:
                return True
    finally:
        # the connection is closed whatever happened (a lost server, a cancelled task):
        # unsubscribing is a courtesy to a server that is still there
        try:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pubsub.unsubscribe(channel)
        finally:
            await pubsub.aclose()


def seed_schedule() -> Sequence[tuple[str, int]]:
    """The seed's four messages and their delays in ms."""
    return [(m, int(d)) for m, d in seed()["pubsub"]["schedule_ms"]]


async def play_seed(redis: aioredis.Redis, channel: str | None = None,
                    echo: Callable[[str], None] = print) -> list[str]:
    """The seed's pub/sub exercise: a subscriber, then the four scheduled publishes.
    Returns what the subscriber printed (#1, #2 and KILL_SERVER; never #3)."""
    channel = channel or seed()["pubsub"]["channel"]
    ready = asyncio.Event()
    printed: list[str] = []

    def sub_echo(text: str) -> None:
        printed.append(text)
        echo(text)

    subscriber = asyncio.create_task(subscribe(redis, channel, echo=sub_echo, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        publishers = [asyncio.create_task(publish(redis, channel, m, delay_ms=d, echo=echo))
                      for m, d in seed_schedule()]
        await asyncio.gather(*publishers)
        await asyncio.wait_for(subscriber, 10)
    finally:
        if not subscriber.done():
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
    return printed
