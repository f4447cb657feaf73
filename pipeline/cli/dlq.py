"""``pipeline dlq list|show|redrive|purge``: a topic's dead letters from the command line.

Every command names its topic with ``--queue Q`` (a job queue, topic ``jobs:Q``) or
``--topic T``, exactly one of them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Optional, TypeVar

import redis.asyncio as aioredis
import typer

from pipeline.cli.common import fail, run, with_client
from pipeline.cli.shape import OneLineCommand, OneLineGroup, console, prepare
from pipeline.deadletter import ALL, DeadLetter, DeadLetters, Redriven, Selection
from pipeline.errors import ConfigError
from pipeline.keys import check_topic, job_topic
from pipeline.settings import Settings

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq", cls=OneLineGroup, no_args_is_help=True,
    help="Inspect, redrive and purge dead letters.\n\n"
    "Example: pipeline dlq list --queue push_notification_code_2",
)

Queue = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
    "--queue", "-q", help="A job queue (its topic is jobs:QUEUE).")]
Topic = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--topic", "-t", help="Any topic, e.g. jobs:push_notification_code_2.")]
Partition = Annotated[int, typer.Option(help="Partition of the topic.")]
Ids = Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
    metavar="ID", help="Dead-letter ids (see `pipeline dlq list`).", show_default=False)]
All = Annotated[bool, typer.Option("--all", help="Every dead letter of the topic.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _topic(queue: str | None, topic: str | None, partition: int) -> str:
    """The topic named by exactly one of ``--queue`` / ``--topic``."""
    if (queue is None) == (topic is None):
        raise fail("give exactly one of --queue QUEUE or --topic TOPIC", 2)
    if partition < 0:
        raise fail(f"--partition must be 0 or more, not {partition}", 2)
    try:
        return job_topic(queue) if queue is not None else check_topic(topic or "")
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def _selection(ids: list[str] | None, everything: bool) -> Selection:
    if everything and ids:
        raise fail("give dead-letter ids or --all, not both")
    if not everything and not ids:
        raise fail("give dead-letter ids, or --all for every one of them")
    return ALL if everything else ids or []


def _run(s: Settings, topic: str, partition: int,
         step: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async def body() -> T:
        async def go(redis: aioredis.Redis) -> T:
            return await step(DeadLetters(redis, topic, partition))

        return await with_client(s, go)

    return run(body)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "-"


@dlq_app.command("list", cls=OneLineCommand)
def list_dead(
    ctx: typer.Context, queue: Queue = None, topic: Topic = None, partition: Partition = 0,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    start: Annotated[str, typer.Option(help="First dead-letter id to show.")] = "-",
    as_json: Json = False,
) -> None:
    """List dead letters, oldest first: id, reason, error, event id, type, attempts.

    Example: pipeline dlq list --queue push_notification_code_2 --limit 20
    """
    s = prepare(ctx)
    name = _topic(queue, topic, partition)
    if limit < 1:
        raise fail(f"--limit must be at least 1, not {limit}")
    rows = _run(s, name, partition, lambda dl: dl.list(limit + 1, start))
    more, rows = rows[limit:], rows[:limit]
    if as_json:
        print(json.dumps([_row(r) for r in rows], indent=2))
        return
    _print_table(rows, name)
    if more:
        print(f"more: pipeline dlq list --topic {name} --start {more[0].dead_id}")


def _row(r: DeadLetter) -> dict[str, object]:
    return {"id": r.dead_id, "reason": r.reason, "error": r.error, "event_id": r.event_id,
            "type": r.type, "attempts": r.attempts, "dead_at": r.dead_at}


def _print_table(rows: list[DeadLetter], topic: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    if not rows:
        out.print(f"no dead letters in topic {topic}")
        return
    table = Table(title=f"dead letters of {topic}")
    table.add_column("id", no_wrap=True, min_width=max(len(r.dead_id) for r in rows))
    table.add_column("reason", no_wrap=True)
    table.add_column("error", overflow="fold")
    table.add_column("event id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("dead at", no_wrap=True)
    for r in rows:
        table.add_row(*(escape(v) for v in (r.dead_id, r.reason, r.error, r.event_id, r.type,
                                             str(r.attempts), _stamp(r.dead_at))))
    out.print(table)


@dlq_app.command("show", cls=OneLineCommand)
def show(
    ctx: typer.Context,
    dead_id: Annotated[str, typer.Argument(metavar="ID", help="Dead-letter id.")],
    queue: Queue = None, topic: Topic = None, partition: Partition = 0, as_json: Json = False,
) -> None:
    """Show every field of one dead letter, the original entry's as raw:<field>.

    Example: pipeline dlq show 1700000000000-0 --queue push_notification_code_2
    """
    s = prepare(ctx)
    name = _topic(queue, topic, partition)
    fields = _run(s, name, partition, lambda dl: dl.show(dead_id))
    if as_json:
        print(json.dumps({"id": dead_id, **fields}, indent=2))
        return
    print(f"{'id:':<16} {dead_id}")
    for key, value in fields.items():
        if key != "traceback":
            print(f"{key + ':':<16} {value}")
    if fields.get("traceback"):
        print("traceback:\n" + fields["traceback"].rstrip())


@dlq_app.command("redrive", cls=OneLineCommand)
def redrive(
    ctx: typer.Context, ids: Ids = None, everything: All = False,
    queue: Queue = None, topic: Topic = None, partition: Partition = 0,
) -> None:
    """Move dead letters back onto their stream as fresh first attempts (jobs: queued again).

    Example: pipeline dlq redrive --queue push_notification_code_2 --all
    """
    s = prepare(ctx)
    name = _topic(queue, topic, partition)
    which = _selection(ids, everything)
    moved: list[Redriven] = _run(s, name, partition, lambda dl: dl.redrive(which))
    if not everything:
        for r in moved:
            print(f"Redriven {r.dead_id} -> {r.entry_id}")
    print(f"Redriven {len(moved)} dead letter(s) of topic {name}")


@dlq_app.command("purge", cls=OneLineCommand)
def purge(
    ctx: typer.Context, ids: Ids = None, everything: All = False,
    queue: Queue = None, topic: Topic = None, partition: Partition = 0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before --all.")] = False,
) -> None:
    """Delete dead letters for good (--all asks first unless --yes).

    Example: pipeline dlq purge --queue push_notification_code_2 --all --yes
    """
    s = prepare(ctx)
    name = _topic(queue, topic, partition)
    which = _selection(ids, everything)

    async def step(dl: DeadLetters) -> int:
        if which is ALL and not yes:
            count = await dl.count()
            if count == 0:
                return 0
            if not _confirm(f"Purge all {count} dead letter(s) of topic {name}?"):
                raise ConfigError("purge cancelled; nothing was deleted")
        return await dl.purge(which)

    print(f"Purged {_run(s, name, partition, step)} dead letter(s) of topic {name}")


def _confirm(question: str) -> bool:
    """Ask on the terminal; no answer (end of input) counts as no."""
    try:
        return typer.confirm(question, default=False, err=True)
    except typer.Abort:
        print(file=sys.stderr)
        return False


def register(app: typer.Typer) -> None:
    """Add ``pipeline dlq ...`` to ``app``."""
    app.add_typer(dlq_app, name="dlq")
