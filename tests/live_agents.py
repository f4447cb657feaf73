"""A test agent for the live-event tests: a job queue whose handler reports several progress
steps before it succeeds, and fails permanently for one phone number.

Run in process (``pipeline.testing.running(agent(QUEUE), ...)``) or as
``pipeline worker tests.live_agents:agent --queue <queue>``.
"""

from __future__ import annotations

from pipeline.agent import Agent, Context
from pipeline.errors import Fail
from pipeline.jobs import JobHooks
from pipeline.keys import job_topic
from schemas.base import EventModel
from schemas.jobs import JobRequested

QUEUE = "live_q"
STEPS = (10, 40, 70, 90)
FAILING = "4150000000"


async def report_steps(event: EventModel, ctx: Context) -> None:
    assert isinstance(event, JobRequested)
    for percent in STEPS:
        ctx.progress(percent)
    if event.payload.phone_number == FAILING:
        raise Fail(f"Phone number {FAILING} is blacklisted")


def agent(queue: str = QUEUE) -> Agent:
    return Agent(name="live", topic=job_topic(queue), handler=report_steps, hooks=JobHooks())
