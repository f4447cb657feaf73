"""Test-only agents run by worker subprocesses in ``tests/test_faults.py``.

Run one as ``pipeline worker tests.fault_agents:agent`` with ``PYTHONPATH`` holding the
repository root. What its handler does is decided by the task (``mode``, ``sleep_ms``) and
by the worker's environment (``FAULT_HOLD=1``: block forever after starting, until killed;
``FAULT_TRACE=<file>``: append ``<n>`` to that file when a handler finishes, which the tests
can watch while the server is down).

Every run leaves traces in Redis the tests can observe instead of sleeping:
``runs:<n>`` counts how often a handler started on task ``n`` (written directly, at once),
``done:<n>`` counts completions, written as an effect, so in the same atomic step as the ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Literal

from redis.exceptions import RedisError

from pipeline.agent import Agent, Context
from pipeline.keys import Keys
from schemas.base import EventModel, register

TOPIC = "test.faults"
GROUP = "faulty"
KEYS = Keys(TOPIC, 0)


@register
class FaultTask(EventModel):
    EVENT_TYPE = "test.fault_task"
    n: int
    #: "exit": the handler kills its own process (a poison entry)
    mode: Literal["ok", "exit"] = "ok"
    sleep_ms: int = 0


def runs_key(n: int) -> str:
    return f"{KEYS.base}:test:runs:{n}"


def done_key(n: int) -> str:
    return f"{KEYS.base}:test:done:{n}"


async def handle(event: EventModel, ctx: Context) -> None:
    assert isinstance(event, FaultTask)
    # best effort: in the server-restart test the server may be away for a moment, and a
    # marker is not what that test is about
    with contextlib.suppress(RedisError, OSError):
        await ctx.redis.incr(runs_key(event.n))
    if event.mode == "exit":
        os._exit(1)  # as a segfault or the OOM killer would: no cleanup, no settle
    if os.environ.get("FAULT_HOLD") == "1":
        await asyncio.Event().wait()  # until the process is killed
    if event.sleep_ms:
        await asyncio.sleep(event.sleep_ms / 1000)
    ctx.effects.command("INCRBY", done_key(event.n), 1)
    trace = os.environ.get("FAULT_TRACE")
    if trace:
        with open(trace, "a") as fh:  # noqa: ASYNC230 - one short line, local disk
            fh.write(f"{event.n}\n")


agent = Agent(name="faulty", topic=TOPIC, group=GROUP, handler=handle)
