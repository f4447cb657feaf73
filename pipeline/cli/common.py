"""What every command shares: settings from the environment plus global options, a client,
and turning library errors into one line and a non-zero exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
import typer
from pydantic import ValidationError
from redis.exceptions import RedisError

from pipeline import logging as plog
from pipeline.connection import (
    CONNECTION_ERRORS,
    Endpoint,
    client,
    keep_embedded,
    redact,
    resolve,
)
from pipeline.errors import ConfigError, InvalidName, PipelineError
from pipeline.settings import Settings

T = TypeVar("T")


class Options:
    """Global options given before the command."""

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {}


def settings(ctx: typer.Context, **more: Any) -> Settings:
    """Settings from ``PIPELINE_*`` / ``REDIS_URL``, then global options, then ``more``."""
    opts: Options = ctx.find_root().obj or Options()
    values = {**opts.overrides, **{k: v for k, v in more.items() if v is not None}}
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {err['msg']}") from None


def setup_logging(s: Settings) -> None:
    plog.configure(s.log_format, s.log_level)


async def connect(s: Settings) -> tuple[Endpoint, aioredis.Redis]:
    """Resolve the server (embedded unless REDIS_URL) and check it answers."""
    endpoint = await asyncio.to_thread(resolve, s)
    redis = client(endpoint.url, s)
    try:
        await redis.ping()
    except CONNECTION_ERRORS as exc:
        await redis.aclose()
        raise ConfigError(f"cannot reach Redis at {redact(endpoint.url)}: {exc}") from None
    except RedisError as exc:  # something answered, not as Redis does (an HTTP port, say)
        await redis.aclose()
        raise ConfigError(f"{redact(endpoint.url)} does not answer as a Redis server does: "
                          f"{exc}") from None
    return endpoint, redis


def fail(message: str, code: int = 1) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def stdout_closed() -> None:
    """stdout was closed (``pipeline status --json | head``): the reader has what it wanted.
    Stop quietly (exit 0), and keep the interpreter's last flush from complaining."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _DropWhenClosed:
    """``sys.stdout`` of a long-running command (worker, serve): once its reader has gone
    (``| head -1``), further output is dropped, logged once, instead of a BrokenPipeError
    raised inside a handler's print, which would fail (retry, then dead-letter) the job."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._closed = False

    def _gone(self) -> None:
        if not self._closed:
            self._closed = True
            stdout_closed()
            plog.get_logger("pipeline.cli").warning("stdout_closed",
                                                    detail="further output is dropped")

    def write(self, text: str) -> int:
        try:
            return int(self._inner.write(text))
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError:
            self._gone()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def keep_running_without_stdout() -> None:
    """For long-running commands: a closed stdout drops output, it never fails work."""
    if not isinstance(sys.stdout, _DropWhenClosed):
        sys.stdout = _DropWhenClosed(sys.stdout)


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; library errors become ``error: <reason>`` and exit 1."""
    try:
        return asyncio.run(coro_fn())
    except BrokenPipeError:  # here, not only in ``main``: click turns EPIPE into exit 1
        stdout_closed()
        raise typer.Exit(0) from None
    except InvalidName as exc:
        raise fail(str(exc), 2) from None  # a usage error, as a bad option value
    except PipelineError as exc:
        raise fail(str(exc)) from None
    except CONNECTION_ERRORS as exc:
        raise fail(f"lost the Redis connection: {exc}") from None
    except RedisError as exc:
        raise fail(f"Redis error: {exc}") from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


async def with_client(s: Settings, body: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """Run ``body`` with a client. In embedded mode: say so on stderr when no server was
    running in the data folder (this command started one: workers run from another folder,
    or with ``REDIS_URL``, do not see what it does), and keep the server up while ``body``
    runs (a watcher outlives the command that owned the server)."""
    endpoint, redis = await connect(s)
    keeper = asyncio.create_task(keep_embedded(endpoint))
    try:
        if endpoint.embedded is not None and endpoint.embedded.owned is not None:
            print(started_note(s), file=sys.stderr, flush=True)
        return await body(redis)
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await redis.aclose()


def started_note(s: Settings) -> str:
    return (f"note: no server was running for {s.data_dir.resolve()}, so this command "
            "started one; workers run from another folder or with REDIS_URL do not see it")


async def until_stopped(work: Awaitable[T]) -> T | None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives (then cancel it and return None:
    a watcher's normal end, exit 0). The cancel is repeated until ``work`` has ended, so
    one swallowed by a reconnect in progress cannot leave the command running."""
    task: asyncio.Future[T] = asyncio.ensure_future(work)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        both: set[asyncio.Future[Any]] = {task, stopper}
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
        return None
    finally:
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def read_json_file(path: Path) -> Any:
    import json

    if str(path) == "-":
        path = Path("stdin")
        text = sys.stdin.read()
    else:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"no such file: {path}") from None
        except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:  # [[[[... deeper than the parser's stack
        raise ConfigError(f"{path} is not valid JSON here: nested too deeply") from None
