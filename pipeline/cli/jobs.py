"""``pipeline jobs create|show|list|watch``: job queues from the command line."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pipeline.cli.common import fail, read_json_file, run, until_stopped, with_client
from pipeline.cli.shape import OneLineCommand, OneLineGroup, console, prepare
from pipeline.connection import ConnectionState
from pipeline.errors import ConfigError
from pipeline.jobs import CREATED_LINE, STATES, Job, JobQueue, queue_of, validate_push_notifications
from pipeline.keys import check_name, job_topic
from pipeline.live import LiveEvent, Tail, check_since

CHUNK = 1000
LIST_EVERY_ID = 100


jobs_app = typer.Typer(
    name="jobs", cls=OneLineGroup, no_args_is_help=True,
    help="Create and inspect jobs.\n\nExample: pipeline jobs create --queue q --file jobs.json",
)


def _stamp(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _check_queue(queue: str) -> str:
    try:
        return check_name("queue", queue)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


async def _create_all(queue: JobQueue, payloads: Sequence[Any]) -> list[str]:
    """Create in chunks of ``CHUNK``; a progress bar for big files on a terminal."""
    chunks = [payloads[i : i + CHUNK] for i in range(0, len(payloads), CHUNK)]
    if len(payloads) <= CHUNK or not sys.stderr.isatty():
        return [job_id for chunk in chunks for job_id in await queue.create(chunk)]
    from rich.console import Console
    from rich.progress import Progress

    ids: list[str] = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"creating jobs on {queue.name}", total=len(payloads))
        for chunk in chunks:
            ids += await queue.create(chunk)
            progress.advance(task, len(chunk))
    return ids


@jobs_app.command("create", cls=OneLineCommand)
def create(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to put the jobs on.")],
    file: Annotated[Path, typer.Option(
        "--file", "-f", help="JSON array of {phoneNumber, message}; '-' reads stdin.")],
) -> None:
    """Create push-notification jobs from a JSON file (validated before anything is queued).

    Example: pipeline jobs create --queue push_notification_code_2 --file jobs.json
    """
    s = prepare(ctx)
    _check_queue(queue)

    async def body() -> list[str]:
        payloads = validate_push_notifications(read_json_file(file))

        async def go(redis: Any) -> list[str]:
            return await _create_all(JobQueue(redis, queue, dedup_ttl_s=s.dedup_ttl_s), payloads)

        return await with_client(s, go)

    ids = run(body)
    if not ids:
        print(f"No jobs in {file}: nothing created", file=sys.stderr)
    elif len(ids) <= LIST_EVERY_ID:
        for job_id in ids:
            print(CREATED_LINE.format(id=job_id))
    else:
        print(f"Notification jobs created: {len(ids)} on {queue} ({ids[0]} .. {ids[-1]})")


@jobs_app.command("show", cls=OneLineCommand)
def show(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="Job id, QUEUE:N.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
) -> None:
    """Show one job: state, progress, attempts, error, data and timestamps.

    Example: pipeline jobs show push_notification_code_2:1
    """
    s = prepare(ctx)
    try:
        queue = queue_of(job_id)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None

    async def body() -> Job:
        return await with_client(s, lambda redis: JobQueue(redis, queue).get(job_id))

    job = run(body)
    if as_json:
        print(json.dumps(dataclasses.asdict(job), indent=2))
        return
    rows = [("id", job.id), ("queue", job.type), ("state", job.state),
            ("progress", f"{job.progress}%"), ("attempts", str(job.attempts)),
            ("error", job.error or "-"), ("data", json.dumps(job.data)),
            ("created", _stamp(job.created_at)), ("updated", _stamp(job.updated_at))]
    for name, value in rows:
        print(f"{name + ':':<10} {value}")


@jobs_app.command("list", cls=OneLineCommand)
def list_jobs(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to list.")],
    state: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
        help=f"Only jobs in this state: {', '.join(STATES)}.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many jobs.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List a queue's jobs (oldest first) as a table.

    Example: pipeline jobs list --queue push_notification_code_2 --state failed
    """
    s = prepare(ctx)
    _check_queue(queue)
    if state is not None and state not in STATES:
        raise fail(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    if limit < 1:
        raise fail(f"--limit must be at least 1, not {limit}")

    async def body() -> list[Job]:
        return await with_client(s, lambda redis: JobQueue(redis, queue).list(state, limit))

    jobs = run(body)
    if as_json:
        print(json.dumps([dataclasses.asdict(j) for j in jobs], indent=2))
        return
    _print_table(jobs, queue, state)


def _print_table(jobs: list[Job], queue: str, state: str | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    if not jobs:
        out.print(f"no {state + ' ' if state else ''}jobs in queue {queue}")
        return
    table = Table(title=f"jobs in {queue}" + (f" ({state})" if state else ""))
    table.add_column("id", no_wrap=True, min_width=max(len(j.id) for j in jobs))
    table.add_column("state", no_wrap=True)
    table.add_column("progress", justify="right", no_wrap=True)
    table.add_column("attempts", justify="right", no_wrap=True)
    table.add_column("phone", no_wrap=True)
    table.add_column("error", overflow="fold")
    table.add_column("updated", no_wrap=True)
    for j in jobs:
        cells = (j.id, j.state, f"{j.progress}%", str(j.attempts),
                 str(j.data.get("phoneNumber", "")), j.error, _stamp(j.updated_at))
        table.add_row(*(escape(c) for c in cells))
    out.print(table)


#: the events after which a job runs no more (unless redriven)
FINAL_EVENTS = frozenset({"job.completed", "job.dead_lettered"})
FINAL_STATES = frozenset({"completed", "failed"})


def _detail(event_type: str, data: Any) -> str:
    """What a line shows after the event type: percent, error or reason."""
    if not isinstance(data, dict):
        return str(data)
    if event_type == "job.progress":
        return f"{data.get('percent')}%"
    if event_type == "job.retried":
        return (f"attempt {data.get('attempt')}, again in {data.get('delay_ms')} ms: "
                f"{data.get('error')}")
    if event_type == "job.failed":
        return f"attempt {data.get('attempt')}: {data.get('error')}"
    if event_type == "job.dead_lettered":
        return f"{data.get('reason')}: {data.get('error')}"
    if event_type == "job.completed" and data.get("attempt", 1) != 1:
        return f"attempt {data.get('attempt')}"
    return ""


def event_line(event: LiveEvent) -> str:
    """One readable line: time (from the entry id), job id, event type, and its detail."""
    data = event.envelope["data"]
    job_id = data.get("job_id", "-") if isinstance(data, dict) else "-"
    event_type = str(event.envelope["type"])
    detail = _detail(event_type, data)
    stamp = _stamp(int(event.entry_id.split("-", 1)[0]))
    return f"{stamp}  {job_id}  {event_type}" + (f"  {detail}" if detail else "")


def _job_of(event: LiveEvent) -> str | None:
    data = event.envelope["data"]
    job_id = data.get("job_id") if isinstance(data, dict) else None
    return job_id if isinstance(job_id, str) else None


async def _watch(tail: Tail, queue: JobQueue, job: str | None, as_json: bool, block_ms: int
                 ) -> None:
    """Print events until stopped or, with ``job``, until that job is done: its completed or
    dead_lettered event, with nothing of it after (a redriven job runs again)."""
    state = ConnectionState(connected=True)
    finished = False  # the job's last event shown is a final one
    record_final = False  # the job's record says it is done: catch up, then stop
    while True:
        batch = await tail.next(None if finished or record_final else block_ms, state)
        for event in batch:
            if job is not None and _job_of(event) != job:
                continue
            print(event.to_json() if as_json else event_line(event), flush=True)
            # only a --job watch ends (a queue watch that took a final event for its own
            # end would read without blocking, in a loop, until the next event)
            finished = job is not None and event.envelope["type"] in FINAL_EVENTS
            record_final = False
        if batch or job is None:
            continue
        if finished:
            return
        if record_final:
            # caught up after the record said done, without its final event: that event
            # is behind our start (the record is written in the same step as the event)
            print(f"job {job} had already finished before --since (or its events were "
                  f"trimmed): {(await queue.get(job)).state}", file=sys.stderr, flush=True)
            return
        record_final = (await queue.get(job)).state in FINAL_STATES


@jobs_app.command("watch", cls=OneLineCommand)
def watch(
    ctx: typer.Context,
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to watch.")],
    since: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
        help="now (default), 0 (from the beginning; the default with --job) or an entry id.")
    ] = None,
    job: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--job", help="Only this job's events; exit 0 once it completed or was dead-lettered.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Follow a queue's job events live, one line each: time, job, event, percent / error /
    reason. Read from the queue's events stream: nothing is missed while it runs.

    Ctrl-C or SIGTERM stops it (exit 0).

    Example: pipeline jobs watch --queue push_notification_code_2 --job push_notification_code_2:3
    """
    s = prepare(ctx)
    try:
        topic = job_topic(queue)
        start = check_since(since if since is not None else ("0" if job else "now"))
        if job is not None and queue_of(job) != queue:
            raise ConfigError(f"job {job!r} is not on queue {queue!r}")
    except ConfigError as exc:
        raise fail(str(exc), 2) from None

    async def body() -> int:
        async def go(redis: Any) -> int:
            jobs = JobQueue(redis, queue)
            if job is not None:
                await jobs.get(job)  # NotFound: a one-line error
            tail = await Tail.open(redis, [topic], start)
            try:
                await _watch(tail, jobs, job, as_json, s.effective_block_ms)
            finally:
                await tail.aclose()
            return 0

        await until_stopped(with_client(s, go))  # Ctrl-C or SIGTERM: a normal end
        return 0

    raise typer.Exit(run(body))


def register(app: typer.Typer) -> None:
    """Add ``pipeline jobs ...`` to ``app``."""
    app.add_typer(jobs_app, name="jobs")
