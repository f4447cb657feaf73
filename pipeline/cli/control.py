"""``pipeline control drain|stop|pause|resume [--group G] [--reason R]`` and ``pipeline control
status``: steer every running worker through the control stream (see ``pipeline.control``)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, Optional

import redis.asyncio as aioredis
import typer

from pipeline.cli.common import run, with_client
from pipeline.cli.shape import OneLineCommand, OneLineGroup, prepare
from pipeline.control import (
    ALL,
    Command,
    check_reason,
    current_state,
    history,
    listening,
    send,
)
from pipeline.errors import ConfigError
from pipeline.keys import CONTROL_CHANNEL, CONTROL_STREAM, check_name
from pipeline.streams import stream_stats

control_app = typer.Typer(
    name="control", cls=OneLineGroup, no_args_is_help=True,
    help="Drain, stop, pause or resume running workers (all groups, or one with --group).\n\n"
    f"Commands go on the stream {CONTROL_STREAM} (a worker started later sees the pause "
    f"state) and are announced on the channel {CONTROL_CHANNEL}.\n\n"
    "Example: pipeline control pause --group notifications --reason 'provider down'",
)


def _group(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_name("group", value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None


def _reason(value: str | None) -> str | None:
    try:
        check_reason(value)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


Group = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
    "--group", "-g", callback=_group,
    help="Only the workers of this consumer group (default: every group).")]
Reason = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--reason", "-r", callback=_reason, help="Why, for the log and `control status`.")]


def _workers(n: int) -> str:
    return f"{n} worker{'' if n == 1 else 's'}"


async def _known_groups(redis: aioredis.Redis) -> set[str]:
    return {g.group for s in await stream_stats(redis) for g in s.groups}


def _send(ctx: typer.Context, command: str, group: str | None, reason: str | None) -> None:
    s = prepare(ctx)

    async def body() -> None:
        async def go(redis: aioredis.Redis) -> None:
            counts = await listening(redis)  # before: a drained worker stops listening fast
            sent = await send(redis, command, group, reason)
            if counts is None:
                heard = "workers listening: unknown (the server refuses CLIENT LIST)"
            else:
                n = sum(counts.values()) if group is None else counts.get(group, 0)
                heard = f"{_workers(n)} listening"
            print(f"{command} sent to {sent.scope} (entry {sent.id}); {heard}", flush=True)
            if group is not None and group not in await _known_groups(redis):
                print(f"note: no consumer group {group!r} exists yet; the {command} applies "
                      "to its workers" + (" when they start" if command in ("pause", "resume")
                                          else " running now only"),
                      file=sys.stderr, flush=True)

        await with_client(s, go)

    run(body)


@control_app.command("drain", cls=OneLineCommand)
def drain(ctx: typer.Context, group: Group = None, reason: Reason = None) -> None:
    """Workers running now finish everything they hold, ack, and exit 0.

    Example: pipeline control drain --group notifications --reason deploy
    """
    _send(ctx, "drain", group, reason)


@control_app.command("stop", cls=OneLineCommand)
def stop(ctx: typer.Context, group: Group = None, reason: Reason = None) -> None:
    """Workers running now finish what runs, hand the rest back, and exit 0.

    Entries held but not started go back to the group idle, so other consumers claim them
    at once. A drain or stop for every group also stops `pipeline serve`.

    Example: pipeline control stop
    """
    _send(ctx, "stop", group, reason)


@control_app.command("pause", cls=OneLineCommand)
def pause(ctx: typer.Context, group: Group = None, reason: Reason = None) -> None:
    """Workers stop reading and starting entries, keeping their leases.

    Running handlers finish and settle; entries held keep their leases. Workers started
    later start paused, until `pipeline control resume`.

    Example: pipeline control pause --group notifications --reason 'provider down'
    """
    _send(ctx, "pause", group, reason)


@control_app.command("resume", cls=OneLineCommand)
def resume(ctx: typer.Context, group: Group = None, reason: Reason = None) -> None:
    """Paused workers go on where they stopped.

    Example: pipeline control resume --group notifications
    """
    _send(ctx, "resume", group, reason)


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _line(c: Command) -> str:
    reason = f"  ({c.reason})" if c.reason else ""
    return f"  {c.id}  {_when(c.at)}  {c.command:<6}  {c.scope}  by {c.by or '?'}{reason}"


@control_app.command("status", cls=OneLineCommand)
def status(
    ctx: typer.Context,
    last: Annotated[int, typer.Option(min=0, max=1000, help="How many recent commands.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The pause state per group, the workers listening now, the recent commands.

    Example: pipeline control status --last 5
    """
    s = prepare(ctx)

    async def body() -> None:
        async def go(redis: aioredis.Redis) -> None:
            state = await current_state(redis)
            recent = await history(redis, last) if last else []
            counts = await listening(redis)
            groups = sorted(await _known_groups(redis) | set(counts or {})
                            | (set(state.scopes) - {ALL}))
            paused = {g: state.paused(g) for g in groups}
            if as_json:
                out: dict[str, Any] = {
                    "all_groups": "paused" if state.scopes.get(ALL) == "pause" else "running",
                    "groups": {g: "paused" if p else "running" for g, p in paused.items()},
                    "listening": counts,
                    "last_id": state.last_id,
                    "recent": [c.as_dict() for c in recent],
                }
                print(json.dumps(out, indent=2))
                return
            every = "paused" if state.scopes.get(ALL) == "pause" else "running"
            print(f"all groups: {every}")
            for g in groups:
                n = "?" if counts is None else str(counts.get(g, 0))
                print(f"  group {g}: {'paused' if paused[g] else 'running'}, "
                      f"{n} listening")
            if recent:
                print("recent commands (newest first):")
                for c in recent:
                    print(_line(c))
            else:
                print("no control commands sent yet")

        await with_client(s, go)

    run(body)


def register(app: typer.Typer) -> None:
    """Add ``pipeline control`` to ``app``."""
    app.add_typer(control_app, name="control")
