"""``/process``'s processor: one worker in the whole deployment, elected by a Redis lock
with a lease; a standby takes over when the holder stops or loses its lease."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pipeline.agent import Agent, Context
from pipeline.api.processing import QueueProcessor, lock_key
from pipeline.errors import ConfigError
from pipeline.keys import job_topic
from pipeline.settings import Settings
from pipeline.testing import wait_for
from schemas.base import EventModel
from tests.helpers import Ping, produce

QUEUE = "api_processing_test"
SPEC = "tests.test_api_processing:agent"
pytestmark = pytest.mark.timeout(60)


async def _record(event: EventModel, ctx: Context) -> None:
    assert isinstance(event, Ping)
    # which consumer handled it: proves how many workers ran
    await ctx.redis.hset("handled", str(event.n), ctx.envelope.id)
    await ctx.redis.sadd("consumers", str(ctx.log._context.get("consumer", "?")))


agent = Agent(name="api-processing-test", topic=job_topic(QUEUE), handler=_record, concurrency=2)


def processor(redis: aioredis.Redis, settings: Settings) -> QueueProcessor:
    return QueueProcessor(redis, settings, SPEC, QUEUE, lease_ms=600)


async def test_ensure_starts_one_worker_and_a_second_call_does_nothing(
        redis: aioredis.Redis, settings: Settings) -> None:
    p = processor(redis, settings)
    try:
        assert p.ensure() is True
        assert p.ensure() is False
        await wait_for(lambda: p.running, message="worker running")
        await produce(redis, range(5), job_topic(QUEUE))
        await wait_for(lambda: _count(redis, "handled", 5), message="all 5 handled")
    finally:
        await p.close()
    assert not p.running
    assert not await redis.exists(lock_key(QUEUE)), "the lock is released on close"


async def _count(redis: aioredis.Redis, key: str, n: int) -> bool:
    return int(await redis.hlen(key)) == n


async def test_a_second_processor_stands_by_while_the_first_holds_the_lock(
        redis: aioredis.Redis, settings: Settings) -> None:
    first, second = processor(redis, settings), processor(redis, settings)
    try:
        first.ensure()
        await wait_for(lambda: first.running, message="first running")
        second.ensure()
        await produce(redis, range(20), job_topic(QUEUE))
        await wait_for(lambda: _count(redis, "handled", 20), message="all 20 handled")
        assert not second.running
        consumers = await redis.smembers("consumers")
        assert len(consumers) == 1 and b"?" not in consumers, "one worker handled them all"
    finally:
        await first.close()
        await second.close()


async def test_the_standby_takes_over_when_the_holder_stops(
        redis: aioredis.Redis, settings: Settings) -> None:
    first, second = processor(redis, settings), processor(redis, settings)
    try:
        first.ensure()
        await wait_for(lambda: first.running, message="first running")
        second.ensure()
        await first.close()
        await wait_for(lambda: second.running, timeout=10, message="standby took over")
        await produce(redis, range(3), job_topic(QUEUE))
        await wait_for(lambda: _count(redis, "handled", 3), message="handled by the standby")
    finally:
        await first.close()
        await second.close()


async def test_a_holder_that_loses_its_lease_stops_its_worker(
        redis: aioredis.Redis, settings: Settings) -> None:
    p = processor(redis, settings)
    try:
        p.ensure()
        await wait_for(lambda: p.running, message="running")
        # someone else now holds the lock (the lease ran out and was taken)
        await redis.set(lock_key(QUEUE), "someone-else", px=60_000)
        await wait_for(lambda: not p.running, timeout=10, message="worker stopped")
        assert await redis.get(lock_key(QUEUE)) == b"someone-else", "not released by us"
    finally:
        await p.close()


async def test_an_unknown_agent_is_an_error_now(
        redis: aioredis.Redis, settings: Settings) -> None:
    p = QueueProcessor(redis, settings, "agents.no_such_agent", QUEUE)
    with pytest.raises(ConfigError):
        p.ensure()
    assert not p.requested


async def test_a_drain_from_the_control_plane_ends_processing_until_the_next_ensure(
        redis: aioredis.Redis, settings: Settings) -> None:
    import asyncio

    from pipeline import control

    p = processor(redis, settings)
    try:
        p.ensure()
        await wait_for(lambda: p.running, message="worker running")
        # the worker's control listener is up once it counts as listening
        await wait_for(lambda: _listening(redis, agent.name), message="listening")
        await control.send(redis, "drain", group=agent.name)
        await wait_for(lambda: not p.requested, timeout=10, message="processing ended")
        await asyncio.sleep(1.5)  # more than two leases: it did not start again by itself
        assert not p.running and not p.requested
        assert p.ensure() is True  # the next /process starts it again
        await wait_for(lambda: p.running, message="running again")
        await produce(redis, range(2), job_topic(QUEUE))
        await wait_for(lambda: _count(redis, "handled", 2), message="handled after restart")
    finally:
        await p.close()


async def _listening(redis: aioredis.Redis, group: str) -> bool:
    from pipeline import control

    return (await control.listeners(redis, group) or 0) >= 1
