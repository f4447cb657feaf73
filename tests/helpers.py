"""Small shared pieces for tests: a test event type and a recording agent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from pipeline.agent import Agent, Context
from pipeline.producer import Outgoing, Producer
from schemas.base import EventModel, register

TOPIC = "test.pings"


@register
class Ping(EventModel):
    EVENT_TYPE = "test.ping"
    n: int


@dataclass
class Recorder:
    """Records each call; ``behaviour`` decides what a call does."""

    behaviour: Callable[[Ping, Context], Awaitable[None]] | None = None
    calls: list[tuple[int, int]] = field(default_factory=list)  # (n, attempt)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, event: EventModel, ctx: Context) -> None:
        assert isinstance(event, Ping)
        self.calls.append((event.n, ctx.attempt))
        self.started.set()
        if self.behaviour is not None:
            await self.behaviour(event, ctx)

    def ns(self) -> list[int]:
        return sorted(n for n, _ in self.calls)


def agent(handler: Any, **kwargs: Any) -> Agent:
    return Agent(name="tester", topic=TOPIC, handler=handler, **kwargs)


async def produce(redis: aioredis.Redis, ns: range | list[int], topic: str = TOPIC) -> list[str]:
    producer = Producer(redis, topic)
    out = await producer.publish_many(Outgoing(Ping(n=n), f"ping-{n}") for n in ns)
    return [p.entry_id for p in out]
