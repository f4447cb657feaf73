"""Delivery rules 1-9 of DESIGN.md, in-process, against a real server.

Fault tests that kill processes are in test_faults.py.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pipeline.connection import ConnectionState
from pipeline.errors import Fail, Retry
from pipeline.keys import Keys
from pipeline.producer import Producer
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from pipeline.worker import Worker
from tests.helpers import TOPIC, Ping, Recorder, agent, produce

K = Keys(TOPIC)


async def pending(redis: aioredis.Redis, group: str = "tester") -> int:
    return int((await redis.xpending(K.stream, group))["pending"])


# -- rule 1: group from 0 with MKSTREAM; only BUSYGROUP tolerated ----------------------------


async def test_entries_written_before_the_group_existed_are_processed(redis, settings):
    await produce(redis, range(5))
    rec = Recorder()
    async with running(agent(rec), redis, settings):
        await wait_for(lambda: len(rec.calls) == 5)
    assert rec.ns() == [0, 1, 2, 3, 4]


async def test_a_second_worker_joins_an_existing_group(redis, settings):
    rec = Recorder()
    async with running(agent(rec), redis, settings), running(agent(rec), redis, settings):
        await produce(redis, range(20))
        await wait_for(lambda: len(rec.calls) == 20)
    assert rec.ns() == list(range(20))


async def test_group_creation_errors_other_than_busygroup_are_raised(redis, settings):
    await redis.set(K.stream, "not a stream")
    worker = Worker(agent(Recorder()), redis, settings)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await worker.run()


# -- rule 2: ack only after success, atomically with the handler's effects ---------------------


async def test_effects_are_applied_with_the_ack_and_only_on_success(redis, settings):
    async def behaviour(event: Ping, ctx) -> None:
        ctx.effects.command("INCRBY", ctx.keys.base + ":count", 1)
        if event.n == 1 and ctx.attempt == 1:
            raise RuntimeError("flaky")

    rec = Recorder(behaviour)
    await produce(redis, [0, 1])
    async with running(agent(rec), redis, settings):
        await wait_for(lambda: len(rec.calls) == 3)
        await wait_for(lambda: _eq(redis.get(K.base + ":count"), b"2"))
    assert await pending(redis) == 0
    assert sorted(rec.calls) == [(0, 1), (1, 1), (1, 2)]


async def _eq(coro, expected):
    return (await coro) == expected


async def test_an_entry_is_not_acked_while_its_handler_runs(redis, settings):
    gate = asyncio.Event()

    async def behaviour(event: Ping, ctx) -> None:
        await gate.wait()

    rec = Recorder(behaviour)
    await produce(redis, [7])
    async with running(agent(rec), redis, settings):
        await wait_for(lambda: rec.calls)
        assert await pending(redis) == 1
        gate.set()
        await wait_for(lambda: _eq(pending(redis), 0))


# -- rule 3: retries through the delayed ZSET by Redis TIME; dead letters ---------------------


async def test_a_retry_is_scheduled_by_the_server_clock_and_runs_again(redis, settings):
    s = settings.model_copy(update={"promote_interval_ms": 10_000})
    seen_delayed: list[float] = []

    async def behaviour(event: Ping, ctx) -> None:
        if ctx.attempt == 1:
            raise Retry("later", delay_ms=60_000)

    rec = Recorder(behaviour)
    await produce(redis, [1])
    async with running(agent(rec), redis, s):
        before = await redis.time()
        await wait_for(lambda: redis.zcard(K.delayed))
        after = await redis.time()
        [(member, score)] = await redis.zrange(K.delayed, 0, -1, withscores=True)
        seen_delayed.append(score)
        lo = before[0] * 1000 + before[1] // 1000 - 1000 + 60_000
        hi = after[0] * 1000 + after[1] // 1000 + 60_000
        assert lo <= score <= hi
        assert b'"attempt", "2"' in member
        # make it due now and let the promoter move it back
        await redis.zadd(K.delayed, {member: 0})
    s2 = settings
    async with running(agent(rec), redis, s2):
        await wait_for(lambda: len(rec.calls) == 2)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert rec.calls == [(1, 1), (1, 2)]
    assert await redis.zcard(K.delayed) == 0


async def test_attempts_beyond_max_attempts_go_to_the_dead_letter_stream(redis, settings):
    s = settings.model_copy(update={"max_attempts": 3})

    async def behaviour(event: Ping, ctx) -> None:
        raise ConnectionRefusedError("smtp down")

    rec = Recorder(behaviour)
    await produce(redis, [1])
    async with running(agent(rec), redis, s):
        await wait_for(lambda: redis.xlen(K.dead))
    [(_, dead)] = await redis.xrange(K.dead)
    assert [a for _, a in rec.calls] == [1, 2, 3]
    assert dead[b"reason"] == b"max_attempts"
    assert b"ConnectionRefusedError: smtp down" in dead[b"error"]
    assert b"Traceback" in dead[b"traceback"]
    assert dead[b"attempts"] == b"3"
    assert dead[b"raw:id"] == b"ping-1"
    assert dead[b"raw:type"] == b"test.ping"


async def test_a_permanent_failure_is_dead_lettered_at_once(redis, settings):
    async def behaviour(event: Ping, ctx) -> None:
        raise Fail("no such account")

    rec = Recorder(behaviour)
    await produce(redis, [1])
    async with running(agent(rec), redis, settings):
        await wait_for(lambda: redis.xlen(K.dead))
        await wait_for(lambda: _eq(pending(redis), 0))
    [(_, dead)] = await redis.xrange(K.dead)
    assert rec.calls == [(1, 1)]
    assert dead[b"reason"] == b"permanent_failure"
    assert dead[b"error"] == b"no such account"


MALFORMED = [
    {"id": "m1", "type": "test.ping", "v": "1", "data": "{not json"},
    {"id": "m2", "type": "no.such.type", "v": "1", "data": "{}"},
    {"id": "m3", "type": "test.ping", "v": "1", "data": "{}"},
    {"id": "m4", "type": "test.ping", "v": "1", "data": '{"n": "1abc"}'},
    {"id": "m5", "type": "test.ping", "v": "1", "data": '{"n": 1, "extra": true}'},
    {"hello": "world"},
    {"id": "m7", "type": "test.ping", "v": "x", "data": '{"n": 1}'},
    {"id": "m8", "type": "test.ping", "v": "1", "data": b"\xff\xfe"},
]


async def test_malformed_entries_are_dead_lettered_with_their_raw_fields(redis, settings):
    rec = Recorder()
    for fields in MALFORMED:
        await redis.xadd(K.stream, fields)
    await produce(redis, [42])
    async with running(agent(rec), redis, settings):
        await wait_for(lambda: _eq(redis.xlen(K.dead), len(MALFORMED)))
        await wait_for(lambda: rec.calls)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert rec.calls == [(42, 1)]
    dead = [fields for _, fields in await redis.xrange(K.dead)]
    assert all(d[b"reason"] == b"decode_error" for d in dead)
    for original, d in zip(MALFORMED, dead, strict=True):
        raw = {k[4:]: v for k, v in d.items() if k.startswith(b"raw:")}
        assert raw == {k.encode(): v if isinstance(v, bytes) else v.encode()
                       for k, v in original.items()}
    errors = [d[b"error"].decode() for d in dead]
    assert "unknown event type 'no.such.type'" in errors[1]
    assert "n: Field required" in errors[2]
    assert "n: Input should be a valid integer" in errors[3]


async def test_a_handler_past_its_timeout_is_cancelled_and_retried(redis, settings):
    s = settings.model_copy(update={"handler_timeout_s": 0.2, "max_attempts": 2})

    async def hang(event: Ping, ctx) -> None:
        if ctx.attempt == 1:
            await asyncio.sleep(30)

    rec = Recorder(hang)
    await produce(redis, [1])
    async with running(agent(rec), redis, s):
        await wait_for(lambda: len(rec.calls) == 2)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert rec.calls == [(1, 1), (1, 2)]
    assert await redis.xlen(K.dead) == 0


# -- rule 4: lease extension and fencing -------------------------------------------------------


async def test_a_handler_slower_than_the_lease_keeps_its_entry(redis, settings):
    s = settings.model_copy(update={"lease_ms": 600})
    done = asyncio.Event()

    async def slow(event: Ping, ctx) -> None:
        await asyncio.sleep(2.0)  # more than three leases: only the heartbeat keeps it ours
        done.set()

    rec = Recorder(slow)
    await produce(redis, [1])
    stolen = []
    async with running(agent(rec), redis, s) as worker:
        await wait_for(lambda: rec.calls)
        while not done.is_set():  # a peer that reclaims everything idle past the lease
            reply = await redis.execute_command(
                "XAUTOCLAIM", K.stream, "tester", "thief", s.lease_ms, "0-0", "JUSTID"
            )
            stolen += reply[1]
            await asyncio.sleep(0.02)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert stolen == [], "a live entry was reclaimed by a peer"
    assert worker.stats.acked == 1 and worker.stats.lost == 0


async def test_a_result_whose_lease_was_lost_is_discarded(redis, settings):
    s = settings.model_copy(update={"lease_ms": 60_000})
    gate = asyncio.Event()

    async def behaviour(event: Ping, ctx) -> None:
        await gate.wait()
        ctx.effects.command("SET", ctx.keys.base + ":written", "yes")

    rec = Recorder(behaviour)
    [entry_id] = await produce(redis, [1])
    async with running(agent(rec), redis, s) as worker:
        await wait_for(lambda: rec.calls)
        # another consumer takes the entry over (as XAUTOCLAIM would after a lost lease)
        await redis.xclaim(K.stream, "tester", "thief", 0, [entry_id])
        gate.set()
        await wait_for(lambda: worker.stats.lost == 1)
    assert worker.stats.acked == 0
    assert await redis.get(K.base + ":written") is None
    [row] = await redis.xpending_range(K.stream, "tester", "-", "+", 10)
    assert row["consumer"] == b"thief"


async def test_an_entry_idle_longer_than_the_lease_is_reclaimed(redis, settings):
    [entry_id] = await produce(redis, [5])
    await redis.xgroup_create(K.stream, "tester", id="0")
    await redis.xreadgroup("tester", "crashed-consumer", {K.stream: ">"})
    rec = Recorder()
    async with running(agent(rec), redis, settings) as worker:
        await wait_for(lambda: rec.calls, timeout=10)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert rec.calls == [(5, 1)]
    assert worker.stats.reclaimed == 1


# -- rule 5: poison entries ---------------------------------------------------------------------


async def test_an_entry_delivered_more_than_max_deliveries_is_dead_lettered_unrun(redis, settings):
    s = settings.model_copy(update={"max_deliveries": 3})
    [entry_id] = await produce(redis, [9])
    await redis.xgroup_create(K.stream, "tester", id="0")
    await redis.xreadgroup("tester", "victim", {K.stream: ">"})
    for _ in range(2):  # each XCLAIM counts a delivery: 3 so far
        await redis.xclaim(K.stream, "tester", "victim", 0, [entry_id])
    rec = Recorder()
    async with running(agent(rec), redis, s):
        await wait_for(lambda: redis.xlen(K.dead), timeout=10)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert rec.calls == []
    [(_, dead)] = await redis.xrange(K.dead)
    assert dead[b"reason"] == b"max_deliveries"
    assert dead[b"deliveries"] == b"4"


# -- rule 6: entries deleted while pending ------------------------------------------------------


async def test_an_own_pending_entry_deleted_meanwhile_is_acked_and_skipped(redis, settings):
    ids = await produce(redis, [1, 2])
    await redis.xgroup_create(K.stream, "tester", id="0")
    await redis.xreadgroup("tester", "same-name", {K.stream: ">"})
    await redis.xdel(K.stream, ids[0])
    rec = Recorder()
    async with running(agent(rec), redis, settings, consumer="same-name") as worker:
        await wait_for(lambda: rec.calls)
        await wait_for(lambda: _eq(pending(redis), 0))
    assert rec.calls == [(2, 1)]
    assert worker.stats.deleted == 1


async def test_a_reclaimed_entry_deleted_meanwhile_does_not_break_the_loop(redis, settings):
    ids = await produce(redis, [1, 2])
    await redis.xgroup_create(K.stream, "tester", id="0")
    await redis.xreadgroup("tester", "gone", {K.stream: ">"})
    await redis.xdel(K.stream, ids[0])
    rec = Recorder()
    async with running(agent(rec), redis, settings) as worker:
        await wait_for(lambda: rec.calls, timeout=10)
        await wait_for(lambda: _eq(pending(redis), 0))
        await produce(redis, [3])
        await wait_for(lambda: len(rec.calls) == 2)
    assert rec.ns() == [2, 3]
    assert worker.stats.deleted == 1


# -- rule 7: consumers and trimming -------------------------------------------------------------


async def test_consumer_names_are_unique(redis, settings):
    names = {Worker(agent(Recorder()), redis, settings).consumer for _ in range(50)}
    assert len(names) == 50


async def test_trimming_keeps_every_entry_a_group_has_not_acked(redis, settings):
    ids = await produce(redis, range(10))
    await redis.xgroup_create(K.stream, "a", id="0")
    await redis.xgroup_create(K.stream, "b", id="0")
    await redis.xreadgroup("a", "c", {K.stream: ">"}, count=10)
    await redis.xack(K.stream, "a", *ids[:10])
    await redis.xreadgroup("b", "c", {K.stream: ">"}, count=6)
    await redis.xack(K.stream, "b", *ids[:3], ids[4])  # ids[3] still pending in b
    from pipeline.scripts import Scripts

    removed = await Scripts(redis)("trim", [K.stream], [0])
    left = [e[0].decode() for e in await redis.xrange(K.stream)]
    assert removed == 3
    assert left == ids[3:]


async def test_a_worker_forgets_its_consumer_on_a_clean_stop(redis, settings):
    rec = Recorder()
    await produce(redis, [1])
    async with running(agent(rec), redis, settings) as worker:
        await wait_for(lambda: _eq(pending(redis), 0))
        names = [c["name"] for c in await redis.xinfo_consumers(K.stream, "tester")]
        assert worker.consumer.encode() in names
    assert await redis.xinfo_consumers(K.stream, "tester") == []


# -- rule 8: graceful shutdown ------------------------------------------------------------------


async def test_stop_finishes_in_flight_handlers_and_acks_them(redis, settings):
    async def slow(event: Ping, ctx) -> None:
        await asyncio.sleep(0.3)

    rec = Recorder(slow)
    await produce(redis, range(4))
    worker = Worker(agent(rec, concurrency=4), redis, settings)
    task = asyncio.create_task(worker.run())
    await wait_for(lambda: len(rec.calls) == 4)
    worker.stop()
    stats = await asyncio.wait_for(task, 10)
    assert stats.acked == 4
    assert await pending(redis) == 0


# -- rule 9: idempotent produce -----------------------------------------------------------------


async def test_publishing_the_same_event_id_twice_appends_one_entry(redis):
    producer = Producer(redis, TOPIC)
    first = await producer.publish(Ping(n=1), event_id="evt-1")
    again = await producer.publish(Ping(n=2), event_id="evt-1")
    assert first.new and not again.new
    assert again.entry_id == first.entry_id
    assert await redis.xlen(K.stream) == 1


# -- blocking reads never trip the socket timeout -----------------------------------------------


async def test_a_block_longer_than_the_socket_timeout_does_not_raise(server, settings):
    s = settings.model_copy(update={"socket_timeout": 1.0, "block_ms": 3000})
    client = aioredis.Redis.from_url(server.url, socket_timeout=s.socket_timeout)
    state = ConnectionState()
    changes: list[bool] = []
    state.on_change.append(changes.append)
    rec = Recorder()
    try:
        async with running(agent(rec), client, s, state=state):
            await asyncio.sleep(2.5)  # two socket timeouts of an idle stream: nothing may trip
            await produce(client, [1])
            await wait_for(lambda: rec.calls)
    finally:
        await client.aclose()
    assert changes == [True], f"connection state flapped: {changes}"
    assert s.effective_block_ms < 1000


def test_settings_clamp_block_below_the_socket_timeout():
    assert Settings(socket_timeout=1, block_ms=5000).effective_block_ms == 500
    assert Settings(socket_timeout=10, block_ms=2000).effective_block_ms == 2000
