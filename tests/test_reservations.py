"""The write side of reservations: the decider (lua/decide.lua), cancellations, inventory
definition, against a real server. The projector and the audit have their own files; the
2,000 concurrent reservations from several processes are in test_reservation_load.py."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.codec import decode
from pipeline.errors import NotFound, ValidationFailed
from pipeline.reservations import (
    SEATS,
    SEED_RESOURCES,
    Inventory,
    ReservationConflict,
    Resource,
)
from schemas.reservations import (
    InventoryDefined,
    ReservationCancelled,
    ReservationConfirmed,
    ReservationRejected,
    ReservationRequested,
    StockAdded,
)

pytestmark = pytest.mark.timeout(30)


async def ledger(inv: Inventory) -> list[object]:
    return [decode(fields).data for _, fields in await inv.redis.xrange(inv.k.ledger)]


async def ledger_len(inv: Inventory) -> int:
    return int(await inv.redis.xlen(inv.k.ledger))


# -- the seed's inventory ----------------------------------------------------------------------


async def test_the_seed_inventory_is_four_products_and_fifty_seats_in_order(inv):
    catalog = await inv.catalog()
    assert [(r.resource_id, r.name, r.price, r.quantity) for r in catalog] == [
        ("1", "Suitcase 250", 50, 4), ("2", "Suitcase 450", 100, 10),
        ("3", "Suitcase 650", 350, 2), ("4", "Suitcase 1050", 550, 5), ("seats", "Seats", 0, 50),
    ]
    assert await inv.counts() == {"1": 4, "2": 10, "3": 2, "4": 5, "seats": 50}
    assert await inv.available("9") is None
    assert await inv.resource("2") == Resource("2", "product", "Suitcase 450", 100, 10)


async def test_inventory_is_defined_by_events_on_the_ledger(inv):
    events = await ledger(inv)
    assert [type(e) for e in events] == [InventoryDefined] * 5
    assert events[4] == InventoryDefined(resource_id="seats", kind="seats", name="Seats",
                                         price=0, quantity=50)


async def test_ensure_defined_never_resets_a_count(inv):
    await inv.decide("r1", "2", 3)
    assert await inv.ensure_defined(SEED_RESOURCES) == []
    assert await inv.available("2") == 7
    assert await ledger_len(inv) == 6  # 5 definitions + 1 decision: nothing appended


async def test_ensure_defined_adds_only_what_is_missing(inv):
    extra = Resource("5", "product", "Suitcase 2000", 900, 1)
    assert await inv.ensure_defined([*SEED_RESOURCES, extra]) == ["5"]
    assert [r.resource_id for r in await inv.catalog()] == ["1", "2", "3", "4", "seats", "5"]


async def test_reset_puts_every_count_back_and_says_so_on_the_ledger(inv):
    await inv.decide("r1", "2", 3)
    await inv.decide("r2", SEATS, 5)
    assert await inv.reset(SEED_RESOURCES) == ["1", "2", "3", "4", "seats"]
    assert await inv.counts() == {"1": 4, "2": 10, "3": 2, "4": 5, "seats": 50}
    assert [type(e) for e in (await ledger(inv))[-5:]] == [InventoryDefined] * 5
    # the definition order is kept across a reset
    assert [r.resource_id for r in await inv.catalog()] == ["1", "2", "3", "4", "seats"]


async def test_add_stock_is_an_event_too(inv):
    assert await inv.add_stock("3", 5) == 7
    assert (await ledger(inv))[-1] == StockAdded(resource_id="3", quantity=5)
    with pytest.raises(NotFound, match="no resource 'nope'"):
        await inv.add_stock("nope", 1)


# -- deciding ------------------------------------------------------------------------------------


async def test_a_confirmation_takes_stock_and_records_what_is_left(inv):
    d = await inv.decide("r1", "1", 3, customer="ann")
    assert (d.status, d.reason, d.remaining, d.duplicate) == ("confirmed", None, 1, False)
    assert await inv.available("1") == 1
    entry = await inv.redis.xrange(inv.k.ledger, d.entry_id, d.entry_id)
    assert decode(entry[0][1]).data == ReservationConfirmed(
        reservation_id="r1", resource_id="1", quantity=3, customer="ann", remaining=1)


async def test_a_decided_reservation_id_is_not_decided_again(inv):
    first = await inv.decide("r1", "3", 1)
    again = await inv.decide("r1", "3", 1)
    assert again.duplicate and not first.duplicate
    assert (again.status, again.entry_id, again.remaining) == ("confirmed", first.entry_id, 1)
    assert await inv.available("3") == 1  # taken once
    assert await ledger_len(inv) == 6  # one outcome


async def test_reusing_a_reservation_id_for_another_request_is_refused(inv):
    await inv.decide("r1", "3", 1)
    with pytest.raises(ReservationConflict, match="already used for 1 of '3'"):
        await inv.decide("r1", "4", 1)
    assert await inv.available("4") == 5
    assert await ledger_len(inv) == 6


async def test_too_little_stock_is_rejected_and_nothing_is_taken(inv):
    d = await inv.decide("r1", "3", 3)
    assert (d.status, d.reason, d.remaining) == ("rejected", "not_enough", 2)
    assert await inv.available("3") == 2
    assert (await ledger(inv))[-1] == ReservationRejected(
        reservation_id="r1", resource_id="3", quantity=3, customer=None, reason="not_enough")


async def test_an_unknown_resource_is_rejected_on_the_ledger(inv):
    d = await inv.decide("r1", "1abc", 1)
    assert (d.status, d.reason, d.remaining) == ("rejected", "unknown_resource", None)
    assert (await ledger(inv))[-1] == ReservationRejected(
        reservation_id="r1", resource_id="1abc", quantity=1, customer=None,
        reason="unknown_resource")


async def test_seats_are_blocked_when_none_is_left(inv):
    assert not await inv.blocked()
    assert (await inv.decide("all", SEATS, 50)).status == "confirmed"
    assert await inv.blocked()
    d = await inv.decide("one-more", SEATS, 1)
    assert (d.status, d.reason) == ("rejected", "blocked")


async def test_asking_for_more_seats_than_are_left_is_not_enough_not_blocked(inv):
    await inv.decide("most", SEATS, 49)
    d = await inv.decide("two", SEATS, 2)
    assert (d.status, d.reason) == ("rejected", "not_enough")


async def test_a_sold_out_product_is_not_enough_not_blocked(inv):
    await inv.decide("both", "3", 2)
    assert (await inv.decide("r2", "3", 1)).reason == "not_enough"


async def test_concurrent_decisions_never_take_more_than_there_is(inv):
    # 300 reservations of 1 against 2 in stock, 75 in flight at a time (the client's pool
    # holds 100 connections): exactly 2 confirmed
    decisions = []
    for start in range(0, 300, 75):
        decisions += await asyncio.gather(
            *(inv.decide(f"r{n}", "3", 1) for n in range(start, start + 75)))
    confirmed = [d for d in decisions if d.status == "confirmed"]
    assert len(confirmed) == 2
    assert sorted(d.remaining for d in confirmed) == [0, 1]
    assert await inv.available("3") == 0
    assert await ledger_len(inv) == 5 + 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("r1", "1", 0), "invalid quantity 0"),
        (("r1", "1", -1), "invalid quantity -1"),
        (("r1", "1", 1001), "invalid quantity 1001"),
        (("r1", "1", 10**30), "invalid quantity"),
        (("r1", "1", True), "invalid quantity True"),
        (("r1", "1", "1"), "invalid quantity '1'"),
        (("r1", "1", 1.0), "invalid quantity 1.0"),
        (("", "1", 1), "invalid reservation id ''"),
        (("r 1", "1", 1), "invalid reservation id 'r 1'"),
        (("x" * 129, "1", 1), "invalid reservation id"),
        (("r1", "", 1), "invalid resource id ''"),
        (("r1", "1 ", 1), "invalid resource id '1 '"),
        (("r1", 1, 1), "invalid resource id 1"),
    ],
)
async def test_malformed_input_is_refused_and_nothing_is_written(inv, args, message):
    before = await inv.counts()
    with pytest.raises(ValidationFailed, match=message):
        await inv.decide(*args)
    assert await ledger_len(inv) == 5
    assert await inv.counts() == before


async def test_a_malformed_customer_is_refused(inv):
    with pytest.raises(ValidationFailed, match="invalid customer ''"):
        await inv.decide("r1", "1", 1, customer="")
    assert await ledger_len(inv) == 5


# -- cancelling -----------------------------------------------------------------------------------


async def test_cancelling_a_confirmation_gives_the_stock_back(inv):
    await inv.decide("r1", "4", 2, customer="bo")
    d = await inv.cancel("r1")
    assert (d.status, d.remaining, d.duplicate, d.customer) == ("cancelled", 5, False, "bo")
    assert await inv.available("4") == 5
    assert (await ledger(inv))[-1] == ReservationCancelled(
        reservation_id="r1", resource_id="4", quantity=2, customer="bo")
    assert (await inv.get_decision("r1")) == d.__class__(**{**d.__dict__, "duplicate": True})


async def test_cancelling_twice_gives_the_stock_back_once(inv):
    await inv.decide("r1", "4", 2)
    first = await inv.cancel("r1")
    again = await inv.cancel("r1")
    assert again.duplicate and again.entry_id == first.entry_id
    assert await inv.available("4") == 5
    assert await ledger_len(inv) == 7


async def test_a_cancelled_reservation_id_is_not_decided_again(inv):
    await inv.decide("r1", "4", 2)
    await inv.cancel("r1")
    d = await inv.decide("r1", "4", 2)
    assert (d.status, d.duplicate) == ("cancelled", True)
    assert await inv.available("4") == 5


async def test_only_a_confirmed_reservation_can_be_cancelled(inv):
    await inv.decide("r1", "3", 5)
    with pytest.raises(ReservationConflict, match="was rejected"):
        await inv.cancel("r1")
    with pytest.raises(NotFound, match="no reservation 'nope'"):
        await inv.cancel("nope")
    assert await inv.available("3") == 2
    assert await ledger_len(inv) == 6


async def test_a_reservation_made_before_a_reset_cannot_be_cancelled(inv):
    await inv.decide("r1", "1", 4)
    await inv.reset(SEED_RESOURCES)
    with pytest.raises(ReservationConflict, match="before its resource was reset"):
        await inv.cancel("r1")
    assert await inv.available("1") == 4


async def test_decisions_can_be_read_back(inv):
    assert await inv.get_decision("r1") is None
    d = await inv.decide("r1", "2", 1, customer="c")
    assert await inv.get_decision("r1") == d.__class__(**{**d.__dict__, "duplicate": True})


# -- the seat queue ----------------------------------------------------------------------------


async def test_a_queued_seat_request_is_an_event_on_the_reserve_seat_queue(inv):
    first = await inv.queue_seat()
    second = await inv.queue_seat(customer="zoe")
    assert (first, second) == ("reserve_seat:1", "reserve_seat:2")
    entries = await inv.redis.xrange("pl:{jobs:reserve_seat:0}:stream")
    assert [decode(f).data for _, f in entries] == [
        ReservationRequested(reservation_id="reserve_seat:1", resource_id=SEATS),
        ReservationRequested(reservation_id="reserve_seat:2", resource_id=SEATS, customer="zoe"),
    ]
    assert await inv.available(SEATS) == 50  # queued, not decided


async def test_concurrent_seat_requests_queue_in_the_order_of_their_ids(inv):
    # the seed's queue is first come, first served: the agent decides in stream order, so
    # a request's number must be its place on the stream (seen: 51 and 52 seated, 24 refused)
    ids = await asyncio.gather(*(inv.queue_seat() for _ in range(300)))
    entries = await inv.redis.xrange("pl:{jobs:reserve_seat:0}:stream")
    queued = [decode(f).data.reservation_id for _, f in entries]
    assert sorted(ids, key=lambda i: int(i.rsplit(":", 1)[1])) == queued


# -- concurrent decisions share round trips (pipeline.coalesce) ------------------------------


async def test_decisions_still_work_after_the_server_forgot_its_scripts(inv):
    await inv.decide("before", "1", 1)
    await inv.redis.script_flush()
    decisions = await asyncio.gather(*(inv.decide(f"after{n}", "2", 1) for n in range(20)))
    assert [d.status for d in decisions].count("confirmed") == 10
    assert await inv.available("2") == 0


async def test_one_failing_decision_does_not_fail_the_others_sent_with_it(inv):
    from redis.exceptions import ResponseError

    await inv.redis.hset(inv.k.stock, "4", "not a number")
    results = await asyncio.gather(
        inv.decide("a", "1", 1), inv.decide("b", "4", 1), inv.decide("c", "2", 1),
        return_exceptions=True)
    assert isinstance(results[1], ResponseError) and "not a number" in str(results[1])
    assert [r.status for r in (results[0], results[2])] == ["confirmed", "confirmed"]
    assert await inv.get_decision("b") is None
