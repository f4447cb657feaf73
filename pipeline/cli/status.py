"""``pipeline status``: every stream and group with length, lag, pending, consumers,
delayed and dead-letter counts, and throughput over the last minute."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import redis.asyncio as aioredis
import typer

from pipeline.cli.common import run, with_client
from pipeline.cli.shape import OneLineCommand, console, prepare
from pipeline.streams import GroupStats, StreamStats, stream_stats


def _table(stats: list[StreamStats]) -> None:
    from rich.table import Table

    table = Table(title="streams (rates: last minute)")
    for col in ("topic", "p", "length", "in/min", "delayed", "dead", "group", "lag", "pending",
                "done/min", "failed/min", "consumers (pending, idle s)"):
        table.add_column(col, justify="left" if col in ("topic", "group") else "right")
    for s in stats:
        groups: list[GroupStats | None] = list(s.groups) or [None]
        for g in groups:
            members = "" if g is None else ", ".join(
                f"{m.name} ({m.pending}, {m.idle_ms / 1000:.0f})" for m in g.members)
            table.add_row(s.topic, str(s.partition), str(s.length), _num(s.produced_per_min),
                          str(s.delayed), str(s.dead),
                          "-" if g is None else g.group,
                          "-" if g is None else _num(g.lag),
                          "-" if g is None else str(g.pending),
                          "-" if g is None else _num(g.handled_per_min),
                          "-" if g is None else _num(g.failed_per_min), members)
    console().print(table)


def _num(value: float | None) -> str:
    """A count or rate; ``-`` when unknown (no worker reporting there)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}".removesuffix(".0")
    return str(value)


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every 2 s until Ctrl-C.")]
    = False,
) -> None:
    """Show every stream: length, produced rate, delayed and dead counts; per group lag,
    pending, handled and failed in the last minute, consumers (pending, idle time).

    Example: pipeline status --json
    """
    s = prepare(ctx)

    async def body() -> int:
        async def go(redis: aioredis.Redis) -> int:
            while True:
                stats = await stream_stats(redis, consumers=True)
                if as_json:
                    print(json.dumps([x.model_dump() for x in stats], indent=1))
                else:
                    _table(stats)
                if not watch:
                    return 0
                await asyncio.sleep(2)

        return await with_client(s, go)

    raise typer.Exit(run(body))


def register(app: typer.Typer) -> None:
    """Add ``pipeline status`` to ``app``."""
    app.command("status", cls=OneLineCommand)(status)
