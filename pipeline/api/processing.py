"""``/process``: make sure one worker, in one process of the whole deployment, consumes the
seat queue with the seat agent.

A Redis lock with a lease (``SET NX PX`` with a random token, renewed every third of the
lease, released by token) elects that process. ``ensure()`` is idempotent: in the process
that holds the lock it does nothing more; in any other process it stands by, trying the lock
once per lease, so that if the holder dies (its lease runs out) a standby takes over and the
queue keeps moving, yet two workers never run at once. A holder that cannot renew stops its
worker before the lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as aioredis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from pipeline.connection import CONNECTION_ERRORS
from pipeline.keys import Keys, job_topic
from pipeline.logging import get_logger
from pipeline.registry import load_agent
from pipeline.settings import Settings
from pipeline.worker import Worker

log = get_logger("pipeline.api.processing")
#: errors that mean the lease may be gone
LEASE_ERRORS: tuple[type[BaseException], ...] = (LockError, *CONNECTION_ERRORS)


def lock_key(queue: str) -> str:
    """The lock that elects the one processor of ``queue``."""
    return f"{Keys(job_topic(queue), 0).base}:processor"


class QueueProcessor:
    """Runs ``agent_spec`` (a dotted path, see ``pipeline.registry``) over ``queue`` in this
    process while it holds the queue's processor lock."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, agent_spec: str,
                 queue: str, *, lease_ms: int | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.agent_spec = agent_spec
        self.queue = queue
        self.lease_s = (lease_ms or settings.lease_ms) / 1000
        self.worker: Worker | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def requested(self) -> bool:
        """True once ``ensure()`` was called (and until ``close()``)."""
        return self._task is not None and not self._task.done()

    @property
    def running(self) -> bool:
        """True while this process's worker runs (it holds the lock)."""
        return self.worker is not None

    def ensure(self) -> bool:
        """Start processing here, or stand by for it; returns False when already asked.

        Raises ``ConfigError`` when the agent cannot be loaded (checked before anything
        starts, so a typo is an error now, not a silent standby)."""
        if self.requested or self._closing:
            return False
        load_agent(self.agent_spec)
        self._task = asyncio.create_task(self._run(), name=f"process:{self.queue}")
        return True

    async def close(self) -> None:
        """Stop the worker (it drains) and release the lock; for the app's shutdown."""
        self._closing = True
        if self.worker is not None:
            self.worker.stop()
        if self._task is not None:
            if self.worker is None:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        lock = Lock(self.redis, lock_key(self.queue), timeout=self.lease_s, blocking=False,
                    thread_local=False, raise_on_release_error=False)
        while not self._closing:
            try:
                if await lock.acquire() and await self._hold(lock):
                    # drained or stopped by the control plane: processing ends here until
                    # the next /process (a standby taking over would undo the command)
                    log.info("processor_ended_by_control", queue=self.queue)
                    return
            except CONNECTION_ERRORS as exc:
                log.warning("processor_lock_unreachable", queue=self.queue, error=str(exc))
            if not self._closing:
                # standby (or a worker that stopped): try again within half a lease
                await asyncio.sleep(self.lease_s / 2)

    async def _hold(self, lock: Lock) -> bool:
        """Run the worker while the lease holds. True when the worker ended by itself (a
        control-plane drain or stop), not because the lease was lost or the app closes."""
        by_itself = False
        stopped_here = False
        worker = Worker(load_agent(self.agent_spec), self.redis, self.settings)

        def stop() -> None:
            nonlocal stopped_here
            stopped_here = True
            worker.stop()

        self.worker = worker
        log.info("processor_started", queue=self.queue, consumer=worker.consumer)
        run = asyncio.create_task(worker.run())
        try:
            while not run.done():
                if self._closing:
                    stop()
                await asyncio.wait([run], timeout=self.lease_s / 3)
                if run.done():
                    break
                try:
                    await lock.reacquire()
                except LEASE_ERRORS as exc:
                    # the lease may be gone: another process can take over; stop first
                    log.warning("processor_lease_lost", queue=self.queue, error=str(exc))
                    stop()
                    break
            try:
                await run
                by_itself = not stopped_here and not self._closing
            except Exception as exc:  # noqa: BLE001 - logged; the loop retries after a pause
                log.error("processor_worker_crashed", queue=self.queue, error=repr(exc))
        finally:
            if not run.done():
                stop()
                with contextlib.suppress(Exception):
                    await run
            self.worker = None
            with contextlib.suppress(*LEASE_ERRORS):
                await lock.release()
            log.info("processor_stopped", queue=self.queue)
        return by_itself
