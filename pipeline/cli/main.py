"""The ``pipeline`` command: a thin shell over the library."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli import common, control, dlq, doctor, jobs, pubsub, reservations, serve, status
from pipeline.cli.common import (
    Options,
    connect,
    fail,
    keep_running_without_stdout,
    run,
    stdout_closed,
)
from pipeline.cli.shape import OneLineCommand, OneLineGroup, prepare
from pipeline.connection import CONNECTED_LINE, ConnectionState, console_echo
from pipeline.keys import check_name

app = typer.Typer(
    cls=OneLineGroup,
    help="An event-driven streams pipeline on Redis.\n\n"
    "Without REDIS_URL an embedded Valkey runs from ./.pipeline/.\n\n"
    "Example: pipeline demo",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    redis_url: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
        "--redis-url", help="Redis URL (redis://, rediss://, unix://); wins over REDIS_URL.")
    ] = None,
    data_dir: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--data-dir", help="Folder of the embedded server (default ./.pipeline).")] = None,
    log_format: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--log-format", help="auto | console | json")] = None,
    log_level: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--log-level", help="debug | info | warning | error")] = None,
) -> None:
    opts = Options()
    for name, value in (("redis_url", redis_url), ("data_dir", data_dir),
                        ("log_format", log_format), ("log_level", log_level)):
        if value is not None:
            opts.overrides[name] = value
    ctx.obj = opts


@app.command(cls=OneLineCommand)
def demo(
    ctx: typer.Context,
    part: Annotated[Optional[str], typer.Argument(  # noqa: UP045 - typer needs Optional
        help="'pubsub' plays the seed's publisher/subscriber instead.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the jobs.")] = 60,
) -> None:
    """Run the seed's 11 notification jobs and its product and seat servers end to end,
    then audit; or, with `pubsub`, the seed's pub/sub exercise.

    Example: pipeline demo   (or: pipeline demo pubsub)
    """
    if part is not None and part != "pubsub":
        raise fail(f"unknown demo {part!r}: run `pipeline demo` or `pipeline demo pubsub`", 2)
    if part == "pubsub":
        _demo_pubsub(ctx)
        return
    from pipeline.demo import print_summary, run_demo
    from pipeline.demo_reservations import print_reservation_summary, run_reservations

    overrides = ctx.find_root().obj.overrides if ctx.find_root().obj else {}
    if "log_level" not in overrides:
        overrides["log_level"] = "error"  # the demo's output is the seed's lines
    s = prepare(ctx)

    async def body() -> int:
        endpoint, redis = await connect(s)
        print(CONNECTED_LINE, flush=True)
        try:
            summary = await run_demo(redis, s, sys.stdout, timeout, endpoint)
            print_summary(summary, sys.stdout)
            reservations = await run_reservations(redis, s, sys.stdout, timeout)
            print_reservation_summary(reservations, sys.stdout)
        finally:
            await redis.aclose()
        ok = summary.done and summary.pending == 0 and reservations.audit_ok
        return 0 if ok else 1

    raise typer.Exit(run(body))


def _demo_pubsub(ctx: typer.Context) -> None:
    from pipeline.pubsub import play_seed

    s = prepare(ctx)

    async def body() -> int:
        _, redis = await connect(s)
        print(CONNECTED_LINE, flush=True)
        try:
            await play_seed(redis, echo=lambda t: print(t, flush=True))
        finally:
            await redis.aclose()
        return 0

    raise typer.Exit(run(body))


@app.command(cls=OneLineCommand)
def worker(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="Dotted path: module or module:attribute.")],
    queue: Annotated[Optional[str], typer.Option(help="Job queue to consume.")] = None,  # noqa: UP045
    concurrency: Annotated[Optional[int], typer.Option(min=1, max=100_000,  # noqa: UP045
                                                       help="Handlers run at once.")] = None,
    consumer: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Consumer name (default host-pid-random; give one only to resume its entries).")
    ] = None,
    metrics_port: Annotated[Optional[int], typer.Option(  # noqa: UP045
        min=0, max=65535, help="Serve Prometheus metrics at http://HOST:PORT/metrics "
        "(0: any free port, logged as metrics_listening).")] = None,
    metrics_host: Annotated[str, typer.Option(
        help="Address the metrics port listens on (0.0.0.0 in a container).")] = "127.0.0.1",
) -> None:
    """Run an agent in its consumer group until SIGTERM/SIGINT (then drain and exit 0).

    Example: pipeline worker agents.notifications --queue push_notification_code_2 --concurrency 2
    """
    from pipeline.metrics import MetricsServer
    from pipeline.registry import load_agent
    from pipeline.worker import Worker

    s = prepare(ctx)
    keep_running_without_stdout()  # a closed stdout must not fail the jobs that print

    async def body() -> int:
        if consumer is not None:
            check_name("consumer", consumer)
        the_agent = load_agent(agent, queue=queue, concurrency=concurrency)
        metrics = None
        if metrics_port is not None:
            metrics = MetricsServer(metrics_host, metrics_port)
            try:
                await metrics.start()
            except OSError as exc:
                raise fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: "
                           f"{exc.strerror or exc}", 2) from None
        try:
            endpoint, redis = await connect(s)
            state = ConnectionState(echo=console_echo(s))
            state.up()
            w = Worker(the_agent, redis, s, consumer=consumer, endpoint=endpoint, state=state)
            if metrics is not None:
                metrics.watch(w)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, w.stop)
            try:
                await w.run()
            finally:
                await redis.aclose()
        finally:
            if metrics is not None:
                await metrics.close()
        return 0

    raise typer.Exit(run(body))


for _module in (jobs, dlq, doctor, serve, reservations, pubsub, status, control):
    _module.register(app)


def _stdout_closed(_console: object) -> None:
    # rich's default (close stdout and SystemExit(1) from wherever it was printing, inside
    # a task even) becomes the BrokenPipeError every other write raises: handled once below
    raise BrokenPipeError


def main() -> None:
    from rich.console import Console

    Console.on_broken_pipe = _stdout_closed  # type: ignore[method-assign,assignment]
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C before a command's own handler is in place
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # stdout closed (`| head`) outside a command's run
        stdout_closed()
        raise SystemExit(0) from None


__all__ = ["app", "common", "main"]
