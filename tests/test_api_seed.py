"""The seed's six routes, byte for byte: bodies, key order, ``"50"`` as a string, status 200
and Express's content type, in every state (sold out, blocked, unknown and malformed ids)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis.asyncio as aioredis

from pipeline.keys import Keys, job_topic
from pipeline.reservations import SEAT_QUEUE, Inventory
from pipeline.settings import Settings
from pipeline.testing import wait_for
from tests.test_api_helpers import EXPRESS_JSON, SEED, compact, ledger_length, serving

pytestmark = pytest.mark.timeout(60)
ITEMS = SEED["products"]["items"]
NOT_FOUND = b'{"status":"Product not found"}'
MALFORMED_IDS = ["1abc", "01", "+1", "-1", "1.0", "1e0", "0x1", "%201", "1%20", "abc",
                 "99999999999999999999", "9" * 400, "%E2%91%A0", "１"]


async def get(client: httpx.AsyncClient, path: str) -> bytes:
    r = await client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text)
    assert r.headers["content-type"] == EXPRESS_JSON
    assert r.headers["content-length"] == str(len(r.content))
    return r.content


async def test_list_products_is_the_seed_list_in_its_key_order(client: httpx.AsyncClient) -> None:
    body = await get(client, "/list_products")
    assert body == compact(ITEMS)
    assert body.startswith(
        b'[{"itemId":1,"itemName":"Suitcase 250","price":50,"initialAvailableQuantity":4},')


async def test_one_product_has_its_current_quantity_last(client: httpx.AsyncClient) -> None:
    for item in ITEMS:
        body = await get(client, f"/list_products/{item['itemId']}")
        expected = {**item, "currentQuantity": item["initialAvailableQuantity"]}
        assert body == compact(expected)
    assert await get(client, "/list_products/4") == (
        b'{"itemId":4,"itemName":"Suitcase 1050","price":550,'
        b'"initialAvailableQuantity":5,"currentQuantity":5}')


@pytest.mark.parametrize("item_id", ["0", "5", "999999999999999999", *MALFORMED_IDS])
async def test_unknown_and_malformed_product_ids_are_not_found(
        client: httpx.AsyncClient, item_id: str) -> None:
    assert await get(client, f"/list_products/{item_id}") == NOT_FOUND


async def test_reserving_a_product_until_it_is_sold_out(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    for _ in range(2):
        assert await get(client, "/reserve_product/3") == (
            b'{"status":"Reservation confirmed","itemId":3}')
    for _ in range(2):
        assert await get(client, "/reserve_product/3") == (
            b'{"status":"Not enough stock available","itemId":3}')
    assert await get(client, "/list_products/3") == (
        b'{"itemId":3,"itemName":"Suitcase 650","price":350,'
        b'"initialAvailableQuantity":2,"currentQuantity":0}')
    # the others are untouched; the listing shows initial quantities only
    assert await get(client, "/list_products") == compact(ITEMS)
    assert await get(client, "/list_products/1") == compact({**ITEMS[0], "currentQuantity": 4})


@pytest.mark.parametrize("item_id", MALFORMED_IDS)
async def test_a_malformed_id_reserves_nothing_and_writes_nothing(
        client: httpx.AsyncClient, redis: aioredis.Redis, item_id: str) -> None:
    before = await ledger_length(redis)
    assert await get(client, f"/reserve_product/{item_id}") == NOT_FOUND
    assert await ledger_length(redis) == before
    assert await get(client, "/list_products/1") == compact({**ITEMS[0], "currentQuantity": 4})


async def test_an_unknown_product_is_not_found_and_recorded_as_a_rejection(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    before = await ledger_length(redis)
    assert await get(client, "/reserve_product/5") == NOT_FOUND
    assert await ledger_length(redis) == before + 1, "the decider records every decision"


async def test_available_seats_is_fifty_as_a_string(client: httpx.AsyncClient) -> None:
    assert await get(client, "/available_seats") == b'{"numberOfAvailableSeats":"50"}'


async def test_reserve_seat_queues_a_job(client: httpx.AsyncClient, redis: aioredis.Redis
                                         ) -> None:
    assert await get(client, "/reserve_seat") == b'{"status":"Reservation in process"}'
    assert await redis.xlen(Keys(job_topic(SEAT_QUEUE), 0).stream) == 1
    # queued, not decided: the count changes only when the queue is processed
    assert await get(client, "/available_seats") == b'{"numberOfAvailableSeats":"50"}'


async def test_reserve_seat_is_blocked_when_no_seat_is_left(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    decision = await Inventory(redis).decide("take-all", "seats", 50)
    assert decision.status == "confirmed"
    assert await get(client, "/available_seats") == b'{"numberOfAvailableSeats":"0"}'
    queued = await redis.xlen(Keys(job_topic(SEAT_QUEUE), 0).stream)
    assert await get(client, "/reserve_seat") == b'{"status":"Reservation are blocked"}'
    assert await redis.xlen(Keys(job_topic(SEAT_QUEUE), 0).stream) == queued


async def test_reserve_seat_fails_when_the_job_cannot_be_queued(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    # a real Redis error: the job counter holds something INCR refuses
    await redis.set(Keys(job_topic(SEAT_QUEUE), 0).seq, "not a number")
    assert await get(client, "/reserve_seat") == b'{"status":"Reservation failed"}'


async def test_two_app_instances_agree_on_the_blocked_state(
        redis: aioredis.Redis, settings: Settings, server: object) -> None:
    other_redis = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        async with serving(redis, settings) as (_, a), serving(other_redis, settings) as (_, b):
            assert await get(a, "/reserve_seat") == b'{"status":"Reservation in process"}'
            assert await get(b, "/reserve_seat") == b'{"status":"Reservation in process"}'
            await Inventory(redis).decide("take-all", "seats", 50)
            for c in (a, b):
                assert await get(c, "/reserve_seat") == b'{"status":"Reservation are blocked"}'
                assert await get(c, "/available_seats") == b'{"numberOfAvailableSeats":"0"}'
    finally:
        await other_redis.aclose()


async def test_start_up_never_resets_stock_or_seats(
        redis: aioredis.Redis, settings: Settings) -> None:
    async with serving(redis, settings) as (_, c):
        await get(c, "/reserve_product/1")
        await Inventory(redis).decide("some-seats", "seats", 7)
    async with serving(redis, settings) as (_, c):
        assert await get(c, "/list_products/1") == compact({**ITEMS[0], "currentQuantity": 3})
        assert await get(c, "/available_seats") == b'{"numberOfAvailableSeats":"43"}'


async def test_process_decides_the_queued_seat_jobs_and_prints_the_seed_lines(
        client: httpx.AsyncClient, redis: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = Inventory(redis)
    await inventory.decide("most-seats", "seats", 48)  # two are left
    for _ in range(3):
        assert await get(client, "/reserve_seat") == b'{"status":"Reservation in process"}'
    for _ in range(3):  # idempotent: one worker, however often it is asked
        assert await get(client, "/process") == b'{"status":"Queue processing"}'

    async def all_decided() -> bool:
        found = [await inventory.get_decision(f"{SEAT_QUEUE}:{n}") for n in (1, 2, 3)]
        return all(d is not None for d in found)

    await wait_for(all_decided, message="three seat jobs decided")
    assert await get(client, "/available_seats") == b'{"numberOfAvailableSeats":"0"}'
    assert await get(client, "/reserve_seat") == b'{"status":"Reservation are blocked"}'
    stream = Keys(job_topic(SEAT_QUEUE), 0).stream
    groups = await redis.xinfo_groups(stream)
    assert len(groups) == 1
    assert len(await redis.xinfo_consumers(stream, groups[0]["name"])) == 1
    lines = capsys.readouterr().out.splitlines()
    # handlers run concurrently: which job finds no seat left is not fixed, only how many
    completed = [n for n in (1, 2, 3)
                 if f"Seat reservation job {SEAT_QUEUE}:{n} completed" in lines]
    failed = [n for n in (1, 2, 3) if f"Seat reservation job {SEAT_QUEUE}:{n} failed: "
              "Not enough seats available" in lines]
    assert len(completed) == 2 and len(failed) == 1 and len(lines) == 3, lines


async def test_concurrent_reservations_never_oversell(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    bodies = await asyncio.gather(*(get(client, "/reserve_product/4") for _ in range(60)))
    assert bodies.count(b'{"status":"Reservation confirmed","itemId":4}') == 5
    assert bodies.count(b'{"status":"Not enough stock available","itemId":4}') == 55
    assert await Inventory(redis).available("4") == 0
