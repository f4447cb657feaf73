"""The inventory projector: the ledger folded into read models, with the checkpoint in the
same atomic step as the ack; redelivery, restarts and SIGKILL mid-batch change nothing."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agents.inventory_projector import agent as projector
from agents.inventory_projector import projection
from pipeline.agent import Agent
from pipeline.projector import Projection, Writes, projector_agent
from pipeline.reservations import SEATS, SEED_RESOURCES, Inventory
from pipeline.testing import running, wait_for

pytestmark = pytest.mark.timeout(60)

INVENTORY = "pl:{reservations:0}:proj:inventory"
CUSTOMERS = "pl:{reservations:0}:proj:customers"
CHECKPOINT = "pl:{reservations:0}:proj:inventory:checkpoint"


async def read_model(redis: aioredis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    inventory = await redis.hgetall(INVENTORY)
    customers = await redis.hgetall(CUSTOMERS)
    return ({k.decode(): int(v) for k, v in inventory.items()},
            {k.decode(): int(v) for k, v in customers.items() if int(v)})


async def last_entry(redis: aioredis.Redis) -> str:
    last = await redis.xrevrange("pl:{reservations:0}:stream", count=1)
    return str(last[0][0].decode())


async def caught_up(redis: aioredis.Redis) -> bool:
    checkpoint = await redis.get(CHECKPOINT)
    pending = (await redis.xpending("pl:{reservations:0}:stream", projection.group))["pending"]
    return checkpoint is not None and checkpoint.decode() == await last_entry(redis) \
        and pending == 0


async def some_business(inv: Inventory) -> dict[str, int]:
    """Reservations, rejections, a cancellation and a restock; returns the customers' counts."""
    for n in range(4):
        await inv.decide(f"p1-{n}", "1", 1, customer="ann")
    await inv.decide("p1-late", "1", 1, customer="ann")  # rejected: none left
    await inv.decide("p2", "2", 3, customer="bob")
    await inv.decide("seat-1", SEATS, 2, customer="bob")
    await inv.decide("unknown", "9", 1, customer="cy")
    await inv.cancel("p1-0")
    await inv.add_stock("3", 4)
    return {"ann": 3, "bob": 2}


async def test_the_projector_folds_the_ledger_into_counts_and_customers(inv, settings):
    customers = await some_business(inv)
    async with running(projector, inv.redis, settings):
        await wait_for(lambda: caught_up(inv.redis), message="the projector to catch up")
    assert await read_model(inv.redis) == (await inv.counts(), customers)
    assert await inv.counts() == {"1": 1, "2": 7, "3": 6, "4": 5, "seats": 48}


async def test_the_checkpoint_is_the_last_entry_applied(inv, settings):
    await some_business(inv)
    async with running(projector, inv.redis, settings):
        await wait_for(lambda: caught_up(inv.redis))
        await inv.decide("more", "4", 1)
        last = await last_entry(inv.redis)
        await wait_for(lambda: caught_up(inv.redis))
    assert (await inv.redis.get(CHECKPOINT)).decode() == last


async def test_a_restarted_projector_applies_nothing_twice(inv, settings):
    customers = await some_business(inv)
    for _ in range(3):
        async with running(projector, inv.redis, settings):
            await wait_for(lambda: caught_up(inv.redis))
    assert await read_model(inv.redis) == (await inv.counts(), customers)


async def test_entries_delivered_before_a_crash_are_applied_once_on_redelivery(inv, settings):
    # a projector that read entries and died before settling: they are pending with its
    # (fixed) consumer name; the next one re-reads them first and applies each exactly once
    customers = await some_business(inv)
    stream = inv.k.ledger
    await inv.redis.xgroup_create(stream, projection.group, id="0", mkstream=True)
    delivered = await inv.redis.xreadgroup(projection.group, projection.consumer, {stream: ">"},
                                           count=7)
    assert len(delivered[0][1]) == 7
    async with running(projector, inv.redis, settings) as worker:
        await wait_for(lambda: caught_up(inv.redis))
    assert worker.consumer == projection.consumer
    assert await read_model(inv.redis) == (await inv.counts(), customers)


async def test_a_definition_in_the_middle_of_a_batch_is_applied_in_ledger_order(inv, settings):
    # a reset sets counts absolutely: applied out of order, the decisions around it would be
    # lost or counted twice
    for n in range(30):
        await inv.decide(f"a{n}", SEATS, 1)
    await inv.reset(SEED_RESOURCES)
    for n in range(20):
        await inv.decide(f"b{n}", SEATS, 1)
    async with running(projector, inv.redis, settings):
        await wait_for(lambda: caught_up(inv.redis))
    assert (await read_model(inv.redis))[0] == await inv.counts()
    assert (await inv.counts())[SEATS] == 30


async def test_after_a_crash_its_pending_entries_are_applied_before_newer_ones(inv, settings):
    # the crashed projector had read the decisions and a reset; newer decisions came after.
    # Under its fixed name the next projector re-reads those pending entries first: a fresh
    # consumer name would fold the newer entries first and the late reset would wipe them.
    for n in range(30):
        await inv.decide(f"a{n}", SEATS, 1)
    await inv.reset(SEED_RESOURCES)
    stream = inv.k.ledger
    await inv.redis.xgroup_create(stream, projection.group, id="0", mkstream=True)
    await inv.redis.xreadgroup(projection.group, projection.consumer, {stream: ">"}, count=1000)
    for n in range(20):
        await inv.decide(f"b{n}", SEATS, 1)
    async with running(projector, inv.redis, settings):
        await wait_for(lambda: caught_up(inv.redis))
    assert (await read_model(inv.redis))[0] == await inv.counts()


class Broken(Projection):
    name = "broken"
    topic = "reservations"
    models = ("broken",)

    def apply(self, event_type: str, data: Any, out: Writes) -> None:
        if event_type == "inventory.stock_added":
            raise ValueError("cannot fold this")
        out.hincrby("broken", "seen", 1)


async def test_an_event_a_projection_cannot_fold_is_dead_lettered_never_retried(inv, settings):
    # a retry would put a copy of the entry back on the ledger (and into every count)
    await inv.add_stock("1", 1)
    length = await inv.redis.xlen(inv.k.ledger)
    broken: Agent = projector_agent(Broken())
    async with running(broken, inv.redis, settings):
        await wait_for(lambda: inv.redis.xlen(inv.keys.dead))
        await wait_for(lambda: _no_pending(inv.redis, broken.group))
    dead = await inv.redis.xrange(inv.keys.dead)
    assert len(dead) == 1
    assert dead[0][1][b"reason"] == b"permanent_failure"
    assert b"cannot fold inventory.stock_added" in dead[0][1][b"error"]
    assert await inv.redis.xlen(inv.k.ledger) == length
    assert await inv.redis.zcard(inv.keys.delayed) == 0
    assert int(await inv.redis.hget("pl:{reservations:0}:proj:broken", "seen")) == 5


async def _no_pending(redis: aioredis.Redis, group: str) -> bool:
    return int((await redis.xpending("pl:{reservations:0}:stream", group))["pending"]) == 0


# -- real processes ------------------------------------------------------------------------------


async def test_a_projector_killed_mid_batch_and_restarted_has_exact_counts(inv, procs, settings):
    customers: dict[str, int] = {}
    for n in range(300):
        who = f"c{n % 7}"
        d = await inv.decide(f"r{n}", ("1", "2", "3", "4", SEATS)[n % 5], 1, customer=who)
        if d.status == "confirmed":
            customers[who] = customers.get(who, 0) + 1
    await inv.reset(SEED_RESOURCES[:1])

    # the first projector folds 120 entries, then hangs inside the batch it read
    first = procs.worker("tests.projector_agents:holding", env={"HOLD_AFTER": "120"})

    async def partly_applied() -> bool:
        assert first.alive, procs.report()
        try:
            summary = await inv.redis.xpending(inv.k.ledger, projection.group)
        except ResponseError:  # no group yet
            return False
        checkpoint = await inv.redis.get(CHECKPOINT)
        return checkpoint is not None and int(summary["pending"]) > 0

    await wait_for(partly_applied, timeout=30, message="the first projector to apply a part")
    applied = (await inv.redis.xrange(inv.k.ledger, count=120))[-1][0]
    await wait_for(lambda: _checkpoint_is(inv.redis, applied.decode()), timeout=10)
    first.kill()
    before = await read_model(inv.redis)
    assert before[0] != await inv.counts(), "the kill came too late to test anything"

    second = procs.worker("agents.inventory_projector")

    async def finished() -> bool:
        assert second.alive, procs.report()
        return await caught_up(inv.redis)

    await wait_for(finished, timeout=30, message="the restarted projector to catch up")
    assert await read_model(inv.redis) == (await inv.counts(), customers), procs.report()
    second.terminate()
    second.popen.wait(20)
    assert second.popen.returncode == 0, procs.report()


async def _checkpoint_is(redis: aioredis.Redis, entry_id: str) -> bool:
    value = await redis.get(CHECKPOINT)
    return value is not None and value.decode() == entry_id


def test_the_projection_is_a_pure_fold() -> None:
    # the same events give the same models, with no Redis at all (replay relies on it)
    from pipeline.projector import fold

    state = fold(projection, [
        ("inventory.defined", {"resource_id": "1", "quantity": 4}),
        ("reservation.confirmed", {"resource_id": "1", "quantity": 3, "customer": "a"}),
        ("reservation.rejected", {"resource_id": "1", "quantity": 3, "customer": "a"}),
        ("reservation.cancelled", {"resource_id": "1", "quantity": 3, "customer": "a"}),
        ("inventory.stock_added", {"resource_id": "1", "quantity": 2}),
    ])
    assert state == {"inventory": {"1": 6}, "customers": {"a": 0}}

