"""Test-only agents for ``tests/test_control.py``: two consumer groups (``ctl_a``, ``ctl_b``)
over one topic, so that each group handles every entry, with a handler that sleeps as long as
its task asks, or until the test opens a gate (so that work is in flight when a command
arrives).

Run one as ``pipeline worker tests.control_agents:agent_a`` with the repository on
``PYTHONPATH``. Traces the tests read instead of sleeping: ``runs:<group>:<n>`` counts how
often a handler started on task ``n`` (written at once), ``done:<group>:<n>`` counts
completions, written as an effect: in the same atomic step as the ack.
"""

from __future__ import annotations

import asyncio

from pipeline.agent import Agent, Context, Handler
from pipeline.keys import Keys
from schemas.base import EventModel, register

TOPIC = "test.control"
KEYS = Keys(TOPIC, 0)
GROUP_A, GROUP_B = "ctl_a", "ctl_b"
GATE = f"{KEYS.base}:test:gate"


@register
class ControlTask(EventModel):
    EVENT_TYPE = "test.control_task"
    n: int
    sleep_ms: int = 0
    #: wait until the test opens the gate (sets ``GATE``)
    gate: bool = False


def runs_key(group: str, n: int) -> str:
    return f"{KEYS.base}:test:runs:{group}:{n}"


def done_key(group: str, n: int) -> str:
    return f"{KEYS.base}:test:done:{group}:{n}"


def _handler(group: str) -> Handler:
    async def handle(event: EventModel, ctx: Context) -> None:
        assert isinstance(event, ControlTask)
        await ctx.redis.incr(runs_key(group, event.n))
        while event.gate and not await ctx.redis.exists(GATE):
            await asyncio.sleep(0.02)
        if event.sleep_ms:
            await asyncio.sleep(event.sleep_ms / 1000)
        ctx.effects.command("INCRBY", done_key(group, event.n), 1)

    return handle


agent_a = Agent(name="ctl-a", topic=TOPIC, group=GROUP_A, handler=_handler(GROUP_A))
agent_b = Agent(name="ctl-b", topic=TOPIC, group=GROUP_B, handler=_handler(GROUP_B))
