"""What stops ``pipeline serve``: the seed's ``KILL_SERVER`` on the control channel, or a
``drain``/``stop`` for every group, announced on the channel or added to the control stream
(``pipeline.control``) after the server started. Both are watched; the first one wins."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import redis.asyncio as aioredis

from pipeline.connection import CONNECTION_ERRORS, Backoff
from pipeline.control import ALL, Command, Listener, text_of
from pipeline.keys import CONTROL_CHANNEL
from pipeline.logging import get_logger
from pipeline.pubsub import KILL_MESSAGE

log = get_logger("pipeline.serve_stop")


async def stop_requested(redis: aioredis.Redis, *, block_ms: int,
                         ready: asyncio.Event | None = None) -> str:
    """Return when ``pipeline serve`` should stop: the seed's ``KILL_SERVER`` on the control
    channel, or a ``stop``/``drain`` for all groups (on the channel, or on the stream after
    this call began). Returns what it was, for the log. ``ready`` is set once both are watched.
    Connection errors are waited out (with backoff), never raised."""
    channel_ready, stream_ready = asyncio.Event(), asyncio.Event()
    watchers = [asyncio.create_task(_channel_stop(redis, channel_ready)),
                asyncio.create_task(_stream_stop(redis, block_ms, stream_ready))]
    both = asyncio.create_task(_both(channel_ready, stream_ready, ready))
    try:
        done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in [*watchers, both]:
            task.cancel()
        await asyncio.gather(*watchers, both, return_exceptions=True)


async def _both(a: asyncio.Event, b: asyncio.Event, ready: asyncio.Event | None) -> None:
    await a.wait()
    await b.wait()
    if ready is not None:
        ready.set()


def _stops_server(command: Command | None) -> bool:
    return command is not None and command.group is None and command.command in (
        "drain", "stop")


async def _channel_stop(redis: aioredis.Redis, ready: asyncio.Event) -> str:
    backoff = Backoff()
    while True:
        pubsub: Any = redis.pubsub()
        try:
            await pubsub.subscribe(CONTROL_CHANNEL)
            ready.set()
            backoff.reset()
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                text = text_of(msg["data"])
                if text == KILL_MESSAGE:
                    return text
                announced = _parse_announcement(text)
                if announced is not None and _stops_server(announced):
                    return f"{announced.command} for all groups (entry {announced.id})"
        except CONNECTION_ERRORS as exc:
            log.debug("control_not_connected", error=str(exc))
            await backoff.sleep()
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pubsub.aclose()


async def _stream_stop(redis: aioredis.Redis, block_ms: int, ready: asyncio.Event) -> str:
    listener = Listener(redis, name=None, block_ms=block_ms)
    backoff = Backoff()
    try:
        while not ready.is_set():
            try:
                await listener.state()
                ready.set()
            except CONNECTION_ERRORS as exc:
                log.debug("control_not_connected", error=str(exc))
                await backoff.sleep()
        while True:
            try:
                commands = await listener.read()
            except CONNECTION_ERRORS as exc:
                log.debug("control_not_connected", error=str(exc))
                await backoff.sleep()
                continue
            backoff.reset()
            for c in commands:
                if _stops_server(c):
                    return f"{c.command} for all groups (entry {c.id})"
    finally:
        await listener.aclose()


def _parse_announcement(text: str) -> Command | None:
    """A command as announced on the channel (JSON), or None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    group = data.get("group")
    fields = {"command": data.get("command") or "", "group": ALL if group is None else group}
    if not all(isinstance(v, str) for v in fields.values()):
        return None
    return Command.from_entry(str(data.get("id", "")), fields)
