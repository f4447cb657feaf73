"""Concurrent calls of one Lua script, sent together.

While one batch is on its way to the server, new calls queue up; they all go out in one
pipeline as soon as it is back. A lone caller waits one round trip, as with a plain call;
many concurrent callers (an agent's handlers, an API's requests) share a few round trips
instead of one each. Each call is still its own script run: atomic, with its own result or
error.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from pipeline.scripts import source

MAX_BATCH = 500


class Coalescer:
    """Calls ``lua/<name>.lua`` for many concurrent callers, a pipeline per round trip."""

    def __init__(self, redis: aioredis.Redis, name: str, max_batch: int = MAX_BATCH) -> None:
        self.redis = redis
        self.script = redis.register_script(source(name))
        self.max_batch = max_batch
        self._queue: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a sender of a loop that is gone never runs again
            self._loop, self._queue, self._sender = loop, [], None
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((keys, args, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all())
        return await future

    async def _send_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                results = await self._send(batch)
            except Exception as exc:  # noqa: BLE001 - every caller of the batch gets it
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:
                for *_, future in batch:
                    future.cancel()
                raise
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled meanwhile
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _send(self, batch: list[tuple[list[Any], list[Any], Any]]) -> list[Any]:
        results = await self._pipeline(batch)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:  # the server lost its scripts (restart, SCRIPT FLUSH): they did not run
            await self.redis.script_load(self.script.script)
            again = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[tuple[list[Any], list[Any], Any]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
