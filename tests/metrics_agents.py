"""A test-only agent for the metrics tests, run as ``pipeline worker tests.metrics_agents:agent``
(``PYTHONPATH`` holding the repository root). What it does with an entry is the entry's
``mode``: ``ok``; ``fail`` (a permanent failure: dead-lettered); ``retry_once`` (a transient
failure on the first attempt, done on the second); ``hold`` (never returns)."""

from __future__ import annotations

import asyncio
from typing import Literal

from pipeline.agent import Agent, Context
from pipeline.errors import Fail, Retry
from pipeline.keys import Keys
from schemas.base import EventModel, register

TOPIC = "test.metered"
GROUP = "metered"
KEYS = Keys(TOPIC, 0)


@register
class Metered(EventModel):
    EVENT_TYPE = "test.metered"
    n: int
    mode: Literal["ok", "fail", "retry_once", "hold"] = "ok"


async def handle(event: EventModel, ctx: Context) -> None:
    assert isinstance(event, Metered)
    if event.mode == "fail":
        raise Fail(f"task {event.n} fails")
    if event.mode == "retry_once" and ctx.attempt == 1:
        raise Retry(f"task {event.n} once more", delay_ms=0)
    if event.mode == "hold":
        await asyncio.Event().wait()  # until the process is killed


agent = Agent(name="metered", topic=TOPIC, group=GROUP, handler=handle)
