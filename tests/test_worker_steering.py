"""Steering a running worker in-process: pause/resume, stop without finishing what is queued,
and the counts it keeps (handled, failed, handler latency)."""

from __future__ import annotations

import asyncio

from pipeline.errors import Fail
from pipeline.keys import Keys
from pipeline.testing import running, wait_for
from pipeline.worker import Worker
from tests.helpers import TOPIC, Ping, Recorder, agent, produce

K = Keys(TOPIC)


async def _owned(redis, consumer: str) -> list[str]:
    rows = await redis.xpending_range(K.stream, "tester", min="-", max="+", count=1000,
                                      consumername=consumer)
    return [r["message_id"].decode() for r in rows]


async def test_a_paused_worker_reads_nothing_and_resumes_where_it_stopped(redis, settings):
    rec = Recorder()
    async with running(agent(rec, concurrency=2), redis, settings) as worker:
        await produce(redis, range(3))
        await wait_for(lambda: len(rec.calls) == 3)
        worker.pause()
        assert worker.paused
        await produce(redis, range(3, 10))
        # nothing new runs while paused; what a read under way returned is held, not run
        await asyncio.sleep(0.5)
        assert rec.ns() == [0, 1, 2]
        lag = (await redis.xinfo_groups(K.stream))[0]["lag"]
        assert lag + len(worker._held) == 7 and lag >= 6
        worker.resume()
        await wait_for(lambda: len(rec.calls) == 10)
    assert rec.ns() == list(range(10))
    assert (await redis.xpending(K.stream, "tester"))["pending"] == 0


async def test_entries_held_during_a_pause_keep_their_lease(redis, settings):
    """Entries read before the pause wait in the worker; the heartbeat keeps them leased, so
    a second consumer does not steal them, and they run after resume."""
    s = settings.model_copy(update={"lease_ms": 400, "concurrency": 1, "prefetch": 5})
    gate = asyncio.Event()

    async def behaviour(event: Ping, ctx) -> None:
        if event.n == 0:
            await gate.wait()

    rec = Recorder(behaviour)
    async with running(agent(rec, concurrency=1), redis, s) as worker:
        await produce(redis, range(5))
        await wait_for(lambda: len(rec.calls) == 1)   # n=0 runs, 1-4 wait in the worker
        await wait_for(lambda: len(worker._held) == 5)
        worker.pause()
        gate.set()
        await wait_for(lambda: len(worker._held) == 4)
        other = Recorder()
        async with running(agent(other), redis, s):
            await asyncio.sleep(1.5)  # several leases long
            assert other.calls == []
        assert sorted(await _owned(redis, worker.consumer)) == sorted(
            h.entry_id for h in worker._held.values())
        worker.resume()
        await wait_for(lambda: len(rec.calls) == 5)
    assert rec.ns() == [0, 1, 2, 3, 4]


async def test_stop_without_finishing_queued_hands_entries_back_at_once(redis, settings):
    s = settings.model_copy(update={"lease_ms": 60_000, "concurrency": 1, "prefetch": 10})
    gate = asyncio.Event()

    async def behaviour(event: Ping, ctx) -> None:
        await gate.wait()

    rec = Recorder(behaviour)
    worker = Worker(agent(rec, concurrency=1), redis, s)
    task = asyncio.create_task(worker.run())
    await produce(redis, range(6))
    await wait_for(lambda: len(rec.calls) == 1 and len(worker._held) == 6)
    worker.stop(finish_queued=False)
    await asyncio.sleep(0.2)
    gate.set()
    stats = await asyncio.wait_for(task, 10)
    assert stats.acked == 1 and rec.ns() == [0]
    # the five not started are pending but idle past the lease: another consumer takes them
    # now, not a minute later, and their delivery count was not raised by the hand-back
    rows = await redis.xpending_range(K.stream, "tester", min="-", max="+", count=10)
    assert len(rows) == 5 and all(r["times_delivered"] == 1 for r in rows)
    assert all(r["time_since_delivered"] >= 60_000 for r in rows)
    other = Recorder()
    async with running(agent(other), redis, s):
        await wait_for(lambda: len(other.calls) == 5, timeout=5)
    assert other.ns() == [1, 2, 3, 4, 5]


async def test_stats_count_failures_and_handler_latency(redis, settings):
    async def behaviour(event: Ping, ctx) -> None:
        if event.n % 2:
            raise Fail("odd")
        await asyncio.sleep(0.02)

    rec = Recorder(behaviour)
    async with running(agent(rec), redis, settings) as worker:
        await produce(redis, range(6))
        await wait_for(lambda: worker.stats.handled == 6)
    st = worker.stats
    assert (st.acked, st.dead, st.failed) == (3, 3, 3)
    assert st.latency.count == 6
    buckets = dict(st.latency.cumulative())
    assert buckets["+Inf"] == 6
    # three runs slept 20 ms: they are above the 10 ms bound, the failures below it
    assert buckets["0.01"] == 3 and buckets["0.025"] + 0 >= 3
    assert st.latency.total >= 0.06
