"""A job agent the dashboard tests hold at a gate, so the page can be watched while jobs run.

Run it as ``pipeline worker tests.dashboard_agents:agent --queue Q`` with ``PYTHONPATH``
holding the repository root. Job ``Q:<n>`` reports progress 0, then 50, then waits until the
integer at ``gate_key(Q)`` is at least ``n`` before it completes (job records, counters and
lifecycle events are kept by ``JobHooks`` as for any job queue). Nothing sleeps for a set time
in the tests: they open the gate step by step and watch the page follow.
"""

from __future__ import annotations

import asyncio

from pipeline.agent import Agent, Context
from pipeline.errors import Fail
from pipeline.jobs import JobHooks
from pipeline.keys import Keys, job_topic
from schemas.base import EventModel
from schemas.jobs import JobRequested

QUEUE = "dashboard"


def gate_key(queue: str) -> str:
    return f"{Keys(job_topic(queue), 0).base}:test:gate"


async def handle(event: EventModel, ctx: Context) -> None:
    if not isinstance(event, JobRequested):
        raise Fail(f"not a job: {event.EVENT_TYPE}")
    n = int(event.job_id.rpartition(":")[2])
    ctx.progress(0)
    ctx.progress(50)
    while int(await ctx.redis.get(gate_key(event.queue)) or 0) < n:
        await asyncio.sleep(0.02)


agent = Agent(name="gated", topic=job_topic(QUEUE), handler=handle, concurrency=1,
              hooks=JobHooks())
