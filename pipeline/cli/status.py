"""``pipeline status``: every stream and group with length, lag, pending, consumers,
delayed and dead-letter counts, and throughput over the last minute."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import redis.asyncio as aioredis
import typer

from pipeline.cli.common import fail, run, until_stopped, with_client
from pipeline.cli.shape import OneLineCommand, console, prepare
from pipeline.connection import CONNECTION_ERRORS
from pipeline.streams import GroupStats, StreamStats, stream_stats

if TYPE_CHECKING:
    from rich.table import Table


def _table(stats: list[StreamStats], note: str = "") -> Table:
    from rich.table import Table

    table = Table(title="streams (rates: last minute)", caption=note or None)
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
    return table


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
    watch: Annotated[bool, typer.Option(
        "--watch", help="Refresh until Ctrl-C (in place on a terminal; --json: one array "
        "per refresh).")] = False,
    interval: Annotated[Optional[float], typer.Option(  # noqa: UP045 - typer needs Optional
        "--interval", min=0.2, max=3600,
        help="Seconds between refreshes with --watch (default 2).")] = None,
) -> None:
    """Show every stream: length, produced rate, delayed and dead counts; per group lag,
    pending, handled and failed in the last minute, consumers (pending, idle time).

    With --watch a lost server is shown and waited out; Ctrl-C or SIGTERM ends it (exit 0).

    Example: pipeline status --watch --interval 5
    """
    s = prepare(ctx)
    if interval is not None and not watch:
        raise fail("--interval needs --watch", 2)
    every = 2.0 if interval is None else interval

    def show(stats: list[StreamStats]) -> None:
        if as_json:
            print(json.dumps([x.model_dump() for x in stats], indent=1), flush=True)
        else:
            console().print(_table(stats))

    async def once(redis: aioredis.Redis) -> int:
        show(await stream_stats(redis, consumers=True))
        return 0

    async def watching(redis: aioredis.Redis) -> int:
        from rich.live import Live

        out = console()
        live = Live(console=out, auto_refresh=False) if out.is_terminal and not as_json else None
        last: list[StreamStats] = []
        with live or contextlib.nullcontext():
            while True:
                try:
                    last = await stream_stats(redis, consumers=True)
                    note = ""
                except CONNECTION_ERRORS as exc:
                    note = f"not connected: {exc} (retrying; figures from the last refresh)"
                if live is not None:
                    live.update(_table(last, note), refresh=True)
                elif note:
                    print(note, file=sys.stderr, flush=True)
                else:
                    show(last)
                await asyncio.sleep(every)

    async def body() -> int:
        if not watch:
            return await with_client(s, once)
        await until_stopped(with_client(s, watching))
        return 0

    raise typer.Exit(run(body))


def register(app: typer.Typer) -> None:
    """Add ``pipeline status`` to ``app``."""
    app.command("status", cls=OneLineCommand)(status)
