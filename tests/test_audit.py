"""The audit (the ledger folded in Python, compared with the write and read models) and the
replay (the read model rebuilt from the ledger, swapped in, the projector's group moved)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from agents.inventory_projector import agent as projector
from agents.inventory_projector import projection
from pipeline import audit as audit_module
from pipeline.audit import audit
from pipeline.codec import encode
from pipeline.replay import replay
from pipeline.reservations import SEATS, Inventory
from pipeline.scripts import Scripts
from pipeline.testing import running, wait_for
from schemas.reservations import ReservationConfirmed

pytestmark = pytest.mark.timeout(60)

PIPELINE = Path(sys.executable).parent / "pipeline"
INVENTORY = "pl:{reservations:0}:proj:inventory"
CUSTOMERS = "pl:{reservations:0}:proj:customers"
CHECKPOINT = "pl:{reservations:0}:proj:inventory:checkpoint"
GROUP = projection.group


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["REDIS_URL"] = url
    return subprocess.run([str(PIPELINE), *args], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


async def business(inv: Inventory, n: int = 40) -> None:
    for i in range(n):
        await inv.decide(f"r{i}", ("1", "2", "3", "4", SEATS)[i % 5], 1 + i % 2,
                         customer=f"c{i % 3}")
    await inv.cancel("r1")
    await inv.add_stock("3", 2)


async def last_entry(redis: aioredis.Redis) -> str:
    return str((await redis.xrevrange("pl:{reservations:0}:stream", count=1))[0][0].decode())


async def caught_up(redis: aioredis.Redis) -> bool:
    checkpoint = await redis.get(CHECKPOINT)
    pending = int((await redis.xpending("pl:{reservations:0}:stream", GROUP))["pending"])
    return checkpoint is not None and checkpoint.decode() == await last_entry(redis) \
        and pending == 0


async def project(inv: Inventory, settings) -> None:
    async with running(projector, inv.redis, settings):
        await wait_for(lambda: caught_up(inv.redis), message="the projector to catch up")


async def read_model(redis: aioredis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    inventory = await redis.hgetall(INVENTORY)
    customers = await redis.hgetall(CUSTOMERS)
    return ({k.decode(): int(v) for k, v in inventory.items()},
            {k.decode(): int(v) for k, v in customers.items() if int(v)})


def test_the_audit_reads_what_the_projector_writes():
    assert (audit_module.PROJECTOR_GROUP, audit_module.PROJECTION) == (GROUP, projection.name)
    assert set(projection.models) == {audit_module.PROJECTION, audit_module.CUSTOMERS}


# -- agreement -----------------------------------------------------------------------------------


async def test_an_untouched_system_audits_ok(inv, settings):
    await business(inv)
    await project(inv, settings)
    report = await audit(inv.redis)
    assert report.ok, report.differences
    assert report.ledger.counts == await inv.counts() == report.read_counts
    assert report.ledger.entries == await inv.redis.xlen(inv.k.ledger)
    assert {k: v for k, v in report.ledger.customers.items() if v} == \
        (await read_model(inv.redis))[1]


async def test_the_cli_prints_a_table_and_audit_ok(inv, settings, server):
    await business(inv)
    await project(inv, settings)
    done = cli(server.url, "audit")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("audit: OK")
    assert "Suitcase" not in done.stdout and "seats" in done.stdout


async def test_a_projector_that_lags_or_holds_entries_is_no_difference(inv, settings):
    await business(inv)
    await project(inv, settings)
    # entries it has not read yet, and entries it read but has not applied yet (pending)
    for i in range(10):
        await inv.decide(f"late{i}", "2", 1)
    await inv.redis.xreadgroup(GROUP, projection.consumer, {inv.k.ledger: ">"}, count=4)
    report = await audit(inv.redis)
    assert report.ok, report.differences
    assert (report.projector_pending, report.lag) == (4, 6)
    assert report.read_counts != report.write_counts  # it is behind, and that is fine


# -- differences ---------------------------------------------------------------------------------


async def test_a_tampered_read_model_is_found_and_the_cli_exits_1(inv, settings, server):
    await business(inv)
    await project(inv, settings)
    await inv.redis.hset(INVENTORY, "2", 99)
    await inv.redis.hset(CUSTOMERS, "mallory", 3)
    report = await audit(inv.redis)
    found = {(d.model, d.key): (d.expected, d.actual) for d in report.differences}
    assert found == {("read", "2"): ((await inv.counts())["2"], 99),
                     ("read customers", "mallory"): (None, 3)}
    done = cli(server.url, "audit")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "audit: 2 differences" in done.stdout and "mallory" in done.stdout


async def test_a_tampered_write_model_is_found_and_the_cli_exits_1(inv, settings, server):
    await business(inv)
    await project(inv, settings)
    await inv.redis.hincrby(inv.k.stock, SEATS, 5)
    await inv.redis.hset(inv.k.stock, "7", 1)
    report = await audit(inv.redis)
    found = {(d.model, d.key) for d in report.differences}
    assert found == {("write", SEATS), ("write", "7")}
    done = cli(server.url, "audit", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    body = json.loads(done.stdout)
    assert body["ok"] is False and {d["key"] for d in body["differences"]} == {SEATS, "7"}


async def test_a_tampered_catalog_is_found(inv):
    await inv.redis.hset(inv.k.catalog, "1", json.dumps(
        {"resource_id": "1", "kind": "product", "name": "Suitcase 250", "price": 1,
         "quantity": 4}))
    report = await audit(inv.redis)
    assert [(d.model, d.key) for d in report.differences] == [("write catalog", "1")]


async def test_an_entry_forged_onto_the_ledger_is_found(inv, settings):
    await business(inv)
    await project(inv, settings)
    # a confirmation nobody decided: the counts no longer follow from the ledger
    forged = ReservationConfirmed(reservation_id="forged", resource_id="2", quantity=1,
                                  customer=None, remaining=0)
    await inv.redis.xadd(inv.k.ledger, encode(forged))
    await inv.redis.xadd(inv.k.ledger, {"id": "x", "type": "no.such", "v": "1", "data": "{}"})
    report = await audit(inv.redis)
    models = sorted(d.model for d in report.differences)
    assert models == ["ledger", "ledger", "write"], report.differences


# -- as of a point in time -----------------------------------------------------------------------


async def test_audit_until_an_earlier_entry_shows_the_counts_as_of_then(inv, server):
    await inv.decide("a", "1", 3)
    await inv.decide("b", SEATS, 10, customer="zed")
    then = await last_entry(inv.redis)
    counts_then = await inv.counts()
    await inv.decide("c", "1", 1)
    await inv.decide("d", SEATS, 40)
    await inv.cancel("b")
    report = await audit(inv.redis, until=then)
    assert report.ok and report.as_of == then
    assert report.ledger.counts == counts_then == {"1": 1, "2": 10, "3": 2, "4": 5, SEATS: 40}
    assert report.ledger.customers == {"zed": 1}
    done = cli(server.url, "audit", "--until", then, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"] == counts_then


async def test_audit_until_a_time_counts_every_entry_of_that_millisecond(inv):
    await inv.decide("a", "4", 2)
    then = await last_entry(inv.redis)
    ms = int(then.split("-")[0])
    iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    by_time = await audit(inv.redis, until=iso)
    by_id = await audit(inv.redis, until=f"{ms}-18446744073709551615")
    assert by_time.ledger.counts == by_id.ledger.counts
    assert by_time.ledger.last_id == then  # nothing came after it
    assert by_time.ledger.counts["4"] == 3
    before = await audit(inv.redis, until=datetime.fromtimestamp(
        (ms - 1) / 1000, UTC).isoformat(timespec="milliseconds"))
    assert before.ledger.last_id < then


async def test_a_bad_until_is_a_one_line_error(inv, server):
    done = cli(server.url, "audit", "--until", "yesterday")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: invalid --until 'yesterday'")


# -- replay --------------------------------------------------------------------------------------


async def test_replay_rebuilds_a_tampered_read_model(inv, settings):
    await business(inv)
    await project(inv, settings)
    expected = await read_model(inv.redis)
    await inv.redis.hset(INVENTORY, "2", 99)
    await inv.redis.delete(CUSTOMERS)
    result = await replay(inv.redis, projection)
    assert result.entries == await inv.redis.xlen(inv.k.ledger)
    assert await read_model(inv.redis) == expected
    assert (await audit(inv.redis)).ok


async def test_replay_then_resume_applies_nothing_twice(inv, settings):
    await business(inv)
    await project(inv, settings)
    # a projector that crashed holding entries (pending) while more came that nobody read
    for i in range(8):
        await inv.decide(f"x{i}", SEATS, 1, customer="cy")
    await inv.redis.xreadgroup(GROUP, projection.consumer, {inv.k.ledger: ">"}, count=5)
    for i in range(3):
        await inv.decide(f"y{i}", "2", 1)
    result = await replay(inv.redis, projection)
    assert result.acked_pending == 5
    assert result.position == await last_entry(inv.redis)
    rebuilt = await read_model(inv.redis)
    assert rebuilt[0] == await inv.counts()
    # the projector resumes: neither its old pending entries nor the unread ones again
    await project(inv, settings)
    assert await read_model(inv.redis) == rebuilt
    # and what comes next is applied once
    await inv.decide("z", "4", 2, customer="cy")
    await project(inv, settings)
    assert (await read_model(inv.redis))[0] == await inv.counts()
    assert (await audit(inv.redis)).ok


async def test_replay_under_a_projector_holding_a_batch_then_resume_applies_nothing_twice(
        inv, procs):
    await business(inv, 200)
    holder = procs.worker("tests.projector_agents:holding", env={"HOLD_AFTER": "50"})

    async def holding() -> bool:
        assert holder.alive, procs.report()
        checkpoint = await inv.redis.get(CHECKPOINT)
        return checkpoint is not None and checkpoint.decode() == \
            (await inv.redis.xrange(inv.k.ledger, count=50))[-1][0].decode()

    await wait_for(holding, timeout=30, message="the holder to apply 50 and hold the rest")
    result = await replay(inv.redis, projection)
    assert result.acked_pending > 100
    holder.kill()
    resumed = procs.worker("agents.inventory_projector")

    async def ready() -> bool:
        assert resumed.alive, procs.report()
        return "worker_started" in resumed.output()

    await wait_for(ready, timeout=30, message="the projector to resume")
    await inv.decide("after", "2", 1, customer="c0")
    await wait_for(lambda: caught_up(inv.redis), timeout=30, message="the resumed projector")
    report = await audit(inv.redis)
    assert report.ok, (report.differences, procs.report())
    assert report.read_counts == await inv.counts()


async def test_the_swap_refuses_while_the_ledger_has_moved_on(inv):
    await inv.redis.hset(f"{INVENTORY}:shadow", "1", 123)
    stale = (await inv.redis.xrange(inv.k.ledger, count=1))[0][0].decode()
    keys = [inv.k.ledger, CHECKPOINT, INVENTORY, f"{INVENTORY}:shadow", CUSTOMERS,
            f"{CUSTOMERS}:shadow"]
    done, tip = await Scripts(inv.redis)("replay_swap", keys, [GROUP, stale, 1])
    assert (done, tip.decode()) == (0, await last_entry(inv.redis))
    assert await inv.redis.exists(INVENTORY) == 0
    assert await inv.redis.hget(f"{INVENTORY}:shadow", "1") == b"123"


async def test_replay_of_an_unknown_projection_is_a_one_line_error(server):
    done = cli(server.url, "replay", "nope")
    assert done.returncode == 1
    assert done.stderr.strip() == \
        "error: no projection 'nope': give a name such as inventory, or module:attribute"
