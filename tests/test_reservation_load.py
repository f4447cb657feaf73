"""Reservations under real concurrency: several processes deciding at once, and the seat agent
(the seed's ``reserve_seat`` queue) run by several worker processes. Never more than the
stock, never below zero, every outcome on the ledger, and the audit agrees."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from agents import reservations as seat_agent
from agents.inventory_projector import agent as projector
from agents.inventory_projector import projection
from pipeline.audit import audit
from pipeline.codec import decode
from pipeline.keys import Keys, job_topic
from pipeline.producer import Producer
from pipeline.reservations import SEATS, Inventory, Resource
from pipeline.testing import running, wait_for
from schemas.reservations import ReservationConfirmed, ReservationRequested
from tests.processes import ROOT

PRODUCT = "2"  # the seed's Suitcase 450: 10 in stock
LOADERS = 4
EACH = 500


async def project(inv: Inventory, settings) -> None:
    async def caught_up() -> bool:
        last = await inv.redis.xrevrange(inv.k.ledger, count=1)
        checkpoint = await inv.redis.get(inv.keys.checkpoint(projection.name))
        return checkpoint == last[0][0]

    async with running(projector, inv.redis, settings):
        await wait_for(caught_up, timeout=30, message="the projector to catch up")


@pytest.mark.timeout(120)
async def test_2000_reservations_from_four_processes_at_once_confirm_exactly_the_stock(
        inv, procs, settings):
    go = "test:go"
    loaders = [procs.script(f"load{i}", ROOT / "tests" / "reserve_load.py", f"p{i}", str(EACH),
                            PRODUCT, go) for i in range(LOADERS)]

    async def all_ready() -> bool:
        for p in loaders:
            assert p.alive or p.popen.returncode == 0, procs.report()
        return int(await inv.redis.llen(f"{go}:ready")) == LOADERS

    await wait_for(all_ready, timeout=60, message="the load processes to connect")

    # a watcher samples the count while every process fires at once
    seen: list[int] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            seen.append(int(await inv.redis.hget(inv.k.stock, PRODUCT)))

    watcher = asyncio.create_task(watch())
    await inv.redis.rpush(go, *["go"] * LOADERS)

    async def all_done() -> bool:
        for p in loaders:
            assert p.alive or p.popen.returncode == 0, procs.report()
        return all(not p.alive for p in loaders)

    await wait_for(all_done, timeout=90, message="the load processes to finish")
    stop.set()
    await watcher

    results = [json.loads(p.output().strip().splitlines()[-1]) for p in loaders]
    confirmed = [rid for r in results for rid in r["confirmed"]]
    assert len(confirmed) == 10, procs.report()
    assert sum(r["rejected"] for r in results) == LOADERS * EACH - 10
    assert min(seen) >= 0 and seen[-1] == 0 and len(seen) > 1
    assert await inv.available(PRODUCT) == 0

    # the ledger holds every outcome, and the confirmations counted 9 down to 0
    outcomes = [decode(f).data for _, f in await inv.redis.xrange(inv.k.ledger)][5:]
    assert len(outcomes) == LOADERS * EACH
    remaining = sorted(e.remaining for e in outcomes if isinstance(e, ReservationConfirmed))
    assert remaining == list(range(10))
    assert sorted(e.reservation_id for e in outcomes
                  if isinstance(e, ReservationConfirmed)) == sorted(confirmed)

    await project(inv, settings)
    report = await audit(inv.redis)
    assert report.ok, report.differences
    assert report.ledger.counts[PRODUCT] == report.read_counts[PRODUCT] == 0


# -- the seat agent -------------------------------------------------------------------------------


SEAT_LINE = re.compile(r"^Seat reservation job (reserve_seat:\d+) (completed|failed: .*)$")


@pytest.mark.timeout(60)
async def test_the_seat_agent_prints_the_seeds_lines(inv, settings):
    await inv.reset([Resource(SEATS, "seats", "Seats", 0, 2)])
    ids = [await inv.queue_seat() for _ in range(3)]
    lines: list[str] = []
    async with running(seat_agent.agent(echo=lines.append, concurrency=1), inv.redis, settings):
        await wait_for(lambda: len(lines) == 3)
    assert lines == [
        f"Seat reservation job {ids[0]} completed",
        f"Seat reservation job {ids[1]} completed",
        f"Seat reservation job {ids[2]} failed: Not enough seats available",
    ]
    assert [(await inv.get_decision(i)).reason for i in ids] == [None, None, "blocked"]
    # a rejection is an outcome, not a failed job: nothing is dead-lettered
    assert await inv.redis.xlen(Keys(job_topic("reserve_seat")).dead) == 0


@pytest.mark.timeout(60)
async def test_a_seat_request_whose_id_was_used_for_something_else_is_dead_lettered(
        inv, settings):
    await inv.decide("reserve_seat:77", "1", 1)
    await Producer(inv.redis, job_topic("reserve_seat")).publish(
        ReservationRequested(reservation_id="reserve_seat:77", resource_id=SEATS),
        event_id="reserve_seat:77")
    dead = Keys(job_topic("reserve_seat")).dead
    async with running(seat_agent.agent(echo=None), inv.redis, settings):
        await wait_for(lambda: inv.redis.xlen(dead))
    entry = (await inv.redis.xrange(dead))[0][1]
    assert entry[b"reason"] == b"permanent_failure"
    assert b"already used for 1 of '1'" in entry[b"error"]
    assert await inv.available(SEATS) == 50


@pytest.mark.timeout(120)
async def test_queued_seat_requests_decided_by_two_worker_processes_never_oversell(
        inv, procs, settings):
    workers = [procs.worker("agents.reservations") for _ in range(2)]

    async def started() -> bool:
        for w in workers:
            assert w.alive, procs.report()
        return all("worker_started" in w.output() for w in workers)

    # both running (and past installing their SIGTERM handler) before the requests come
    await wait_for(started, timeout=60, message="both seat workers to start")
    ids = [await inv.queue_seat(customer=f"c{n % 9}") for n in range(120)]

    async def all_decided() -> bool:
        for w in workers:
            assert w.alive, procs.report()
        return int(await inv.redis.xlen(inv.k.ledger)) == 5 + len(ids)

    await wait_for(all_decided, timeout=60, message="every seat request to be decided")
    for w in workers:
        w.terminate()
    for w in workers:
        w.popen.wait(20)
        assert w.popen.returncode == 0, procs.report()

    printed = [m.groups() for w in workers for text in w.output().splitlines()
               if (m := SEAT_LINE.match(text))]
    assert sorted(job for job, _ in printed) == sorted(ids), procs.report()
    outcomes = [outcome for _, outcome in printed]
    assert outcomes.count("completed") == 50
    assert outcomes.count("failed: Not enough seats available") == 70
    assert await inv.available(SEATS) == 0

    await project(inv, settings)
    report = await audit(inv.redis)
    assert report.ok, report.differences
