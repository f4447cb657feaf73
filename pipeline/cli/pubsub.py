"""``pipeline publish`` and ``pipeline subscribe``: the seed's pub/sub scripts."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio as aioredis
import typer

from pipeline.cli.common import fail, run, until_stopped, with_client
from pipeline.cli.shape import OneLineCommand, prepare
from pipeline.connection import CONNECTED_LINE, ConnectionState, console_echo
from pipeline.keys import shown
from pipeline.pubsub import publish as publish_message
from pipeline.pubsub import subscribe as subscribe_channel

MAX_CHANNEL = 1000


def _check_channel(channel: str) -> str:
    """A usage error (exit 2) for an empty, huge or control-character channel name."""
    if not channel or len(channel) > MAX_CHANNEL:
        raise fail(f"a channel name must be 1-{MAX_CHANNEL} characters", 2)
    if any(ord(c) < 32 or ord(c) == 127 for c in channel):
        raise fail(f"invalid channel {shown(channel)}: no control characters (newline, tab...)",
                   2)
    return channel


def publish(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(help="Channel to publish on.")],
    message: Annotated[str, typer.Argument(help="The message.")],
    delay_ms: Annotated[int, typer.Option("--delay-ms", min=0, max=86_400_000,
                                          help="Wait this long first.")] = 0,
) -> None:
    """Print "About to send MESSAGE", then publish it (live fan-out: lossy by nature).

    Example: pipeline publish "holberton school channel" KILL_SERVER --delay-ms 300
    """
    s = prepare(ctx)
    _check_channel(channel)

    async def body() -> int:

        async def go(redis: aioredis.Redis) -> int:
            print(CONNECTED_LINE, flush=True)
            return await publish_message(redis, channel, message, delay_ms=delay_ms,
                                         echo=lambda t: print(t, flush=True))

        return await with_client(s, go)

    run(body)


def subscribe(
    ctx: typer.Context,
    channel: Annotated[str, typer.Argument(help="Channel to listen to.")],
) -> None:
    """Print every message on CHANNEL; after printing KILL_SERVER, unsubscribe and exit 0
    (as on Ctrl-C or SIGTERM). A lost server is waited out, then subscribed to again.

    Example: pipeline subscribe "holberton school channel"
    """
    s = prepare(ctx)
    _check_channel(channel)

    async def body() -> int:

        async def go(redis: aioredis.Redis) -> list[str]:
            print(CONNECTED_LINE, flush=True)
            state = ConnectionState(echo=console_echo(s), connected=True)
            return await subscribe_channel(redis, channel, state=state,
                                           echo=lambda t: print(t, flush=True))

        await until_stopped(with_client(s, go))  # Ctrl-C or SIGTERM: a normal end
        return 0

    run(body)


def register(app: typer.Typer) -> None:
    """Add ``pipeline publish`` and ``pipeline subscribe`` to ``app``."""
    app.command("publish", cls=OneLineCommand)(publish)
    app.command("subscribe", cls=OneLineCommand)(subscribe)
