"""The versioned API: status codes, problem details, idempotent reservations, and bad
requests that are refused with a clear 4xx while nothing at all is written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from pipeline.api.inputs import MAX_BODY
from pipeline.reservations import Inventory
from pipeline.server import EmbeddedServer
from tests.test_api_helpers import LEDGER, ledger_length, problem

pytestmark = pytest.mark.timeout(60)


async def test_products_are_listed_with_what_is_available(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/products")
    assert r.status_code == 200
    assert r.json()[0] == {"id": 1, "name": "Suitcase 250", "price": 50,
                           "initial_quantity": 4, "available": 4}
    assert [p["id"] for p in r.json()] == [1, 2, 3, 4]


async def test_one_product_or_a_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/products/2")
    assert r.status_code == 200 and r.json()["available"] == 10
    problem(await client.get("/v1/products/9"), 404, "unknown-product")
    for bad in ("abc", "1abc", "01", "-1", "99999999999999999999"):
        problem(await client.get(f"/v1/products/{bad}"), 422, "invalid-request")


async def test_a_confirmed_reservation_is_201_and_can_be_read_back(
        client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/reservations", json={"resource_id": "3", "quantity": 2,
                                                     "customer": "ada"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "confirmed" and body["remaining"] == 0 and body["reason"] is None
    assert r.headers["location"] == f"/v1/reservations/{body['reservation_id']}"
    again = await client.get(r.headers["location"])
    assert again.status_code == 200 and again.json() == body


async def test_not_enough_is_409_and_recorded(client: httpx.AsyncClient,
                                              redis: aioredis.Redis) -> None:
    before = await ledger_length(redis)
    body = problem(await client.post("/v1/reservations", json={"resource_id": 3, "quantity": 3}),
                   409, "not-enough")
    assert body["reservation"]["status"] == "rejected"
    assert await ledger_length(redis) == before + 1
    read = await client.get(f"/v1/reservations/{body['reservation']['reservation_id']}")
    assert read.status_code == 200 and read.json()["reason"] == "not_enough"


async def test_an_unknown_resource_is_404(client: httpx.AsyncClient) -> None:
    problem(await client.post("/v1/reservations", json={"resource_id": "77"}), 404,
            "unknown-resource")


async def test_an_unknown_reservation_is_404(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/reservations/nope"), 404, "unknown-reservation")


async def test_seats_blocked_is_409(client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    r = await client.post("/v1/reservations", json={"resource_id": "seats", "quantity": 50})
    assert r.status_code == 201
    seats = (await client.get("/v1/seats")).json()
    assert seats == {"available": 0, "initial": 50, "blocked": True}
    problem(await client.post("/v1/reservations", json={"resource_id": "seats"}), 409, "blocked")


async def test_the_idempotency_key_is_the_reservation_id_and_repeats_the_outcome(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/v1/reservations", json={"resource_id": "1"}, headers=headers)
    length = await ledger_length(redis)
    second = await client.post("/v1/reservations", json={"resource_id": "1"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert first.json()["reservation_id"] == "order-42"
    assert second.headers["idempotent-replayed"] == "true"
    assert await ledger_length(redis) == length, "a replay writes nothing"
    assert await Inventory(redis).available("1") == 3, "reserved once"


async def test_an_idempotency_key_reused_for_another_resource_is_refused(
        client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-43"}
    await client.post("/v1/reservations", json={"resource_id": "1"}, headers=headers)
    problem(await client.post("/v1/reservations", json={"resource_id": "2"}, headers=headers),
            422, "idempotency-key-reused")


def _json(body: Any) -> dict[str, Any]:
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


async def _too_big() -> AsyncIterator[bytes]:
    yield b'{"resource_id": "1", "customer": "'
    for _ in range(MAX_BODY // 1024 + 1):
        yield b"x" * 1024
    yield b'"}'


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int, str]] = {
    "quantity zero": (_json({"resource_id": "1", "quantity": 0}), 422, "invalid-request"),
    "quantity negative": (_json({"resource_id": "1", "quantity": -1}), 422, "invalid-request"),
    "quantity huge": (_json({"resource_id": "1", "quantity": 10**30}), 422, "invalid-request"),
    "quantity over 1000": (_json({"resource_id": "1", "quantity": 1001}), 422,
                           "invalid-request"),
    "quantity as text": (_json({"resource_id": "1", "quantity": "1"}), 422, "invalid-request"),
    "quantity as float": (_json({"resource_id": "1", "quantity": 1.0}), 422, "invalid-request"),
    "quantity as bool": (_json({"resource_id": "1", "quantity": True}), 422, "invalid-request"),
    "id not an integer": (_json({"resource_id": "1abc"}), 422, "invalid-request"),
    "id with a leading zero": (_json({"resource_id": "01"}), 422, "invalid-request"),
    "id negative": (_json({"resource_id": -1}), 422, "invalid-request"),
    "id huge": (_json({"resource_id": 10**30}), 422, "invalid-request"),
    "id missing": (_json({"quantity": 1}), 422, "invalid-request"),
    "unknown field": (_json({"resource_id": "1", "colour": "red"}), 422, "invalid-request"),
    "not an object": (_json([{"resource_id": "1"}]), 422, "invalid-request"),
    "not JSON": ({"content": b"{", "headers": {"content-type": "application/json"}}, 400,
                 "malformed-json"),
    "NaN": ({"content": b'{"resource_id": "1", "quantity": NaN}',
             "headers": {"content-type": "application/json"}}, 400, "malformed-json"),
    "nested too deeply": ({"content": b"[" * 60_000, "headers": {"content-type":
                           "application/json"}}, 400, "malformed-json"),
    "not UTF-8": ({"content": b'{"resource_id": "\xff"}',
                   "headers": {"content-type": "application/json"}}, 400, "malformed-json"),
    "text/plain": ({"content": b'{"resource_id": "1"}', "headers": {"content-type": "text/plain"}},
                   415, "unsupported-media-type"),
    "form": ({"data": {"resource_id": "1"}}, 415, "unsupported-media-type"),
    "no content type": ({"content": b'{"resource_id": "1"}'}, 415, "unsupported-media-type"),
    "latin-1": ({"content": b'{"resource_id": "1"}',
                 "headers": {"content-type": "application/json; charset=latin-1"}}, 415,
                "unsupported-media-type"),
    "oversized": ({"content": b'{"resource_id": "1", "customer": "' + b"x" * MAX_BODY + b'"}',
                   "headers": {"content-type": "application/json"}}, 413, "payload-too-large"),
    "oversized, chunked": ({"content": _too_big, "headers": {"content-type": "application/json"}},
                           413, "payload-too-large"),
    "bad idempotency key": ({**_json({"resource_id": "1"}),
                             "headers": {"content-type": "application/json",
                                         "idempotency-key": "not a key!"}}, 422,
                            "invalid-request"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
async def test_a_bad_request_gets_a_clear_4xx_and_nothing_is_written(
        client: httpx.AsyncClient, redis: aioredis.Redis, case: str) -> None:
    kwargs, status, slug = BAD_REQUESTS[case]
    if callable(kwargs.get("content")):
        kwargs = {**kwargs, "content": kwargs["content"]()}
    keys_before = sorted(await redis.keys("*"))
    length = await ledger_length(redis)
    r = await client.post("/v1/reservations", **kwargs)
    problem(r, status, slug)
    assert await ledger_length(redis) == length
    assert sorted(await redis.keys("*")) == keys_before, "no key was created"
    assert await Inventory(redis).available("1") == 4


async def test_validation_problems_name_each_field(client: httpx.AsyncClient) -> None:
    body = problem(await client.post("/v1/reservations",
                                     json={"resource_id": "x", "quantity": 0, "extra": 1}), 422)
    assert {e["field"] for e in body["errors"]} == {"resource_id", "quantity", "extra"}


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/nothing-here"), 404)
    problem(await client.delete("/v1/products"), 405)


async def test_streams_show_length_and_groups(client: httpx.AsyncClient,
                                              redis: aioredis.Redis) -> None:
    await client.post("/v1/reservations", json={"resource_id": "1"})
    await redis.xgroup_create(LEDGER, "watcher", id="0", mkstream=True)
    r = await client.get("/v1/streams")
    assert r.status_code == 200
    ledger = next(s for s in r.json() if s["stream"] == LEDGER)
    assert ledger["topic"] == "reservations" and ledger["partition"] == 0
    assert ledger["length"] == await ledger_length(redis)
    assert ledger["delayed"] == 0 and ledger["dead"] == 0
    assert ledger["groups"] == [{"group": "watcher", "consumers": 0, "pending": 0,
                                 "lag": ledger["length"], "last_delivered_id": "0-0",
                                 "members": [], "handled_per_min": None,
                                 "failed_per_min": None, "handled_per_s": None}]


async def test_streams_list_each_groups_consumers(client: httpx.AsyncClient,
                                                 redis: aioredis.Redis) -> None:
    await client.post("/v1/reservations", json={"resource_id": "1"})
    await redis.xgroup_create(LEDGER, "watcher", id="0", mkstream=True)
    await redis.xreadgroup("watcher", "c1", {LEDGER: ">"}, count=1)
    ledger = next(s for s in (await client.get("/v1/streams")).json()
                  if s["stream"] == LEDGER)
    [group] = ledger["groups"]
    assert group["consumers"] == 1
    assert [(m["name"], m["pending"]) for m in group["members"]] == [("c1", 1)]


async def test_metrics_count_requests_by_route_and_decisions(client: httpx.AsyncClient) -> None:
    await client.get("/reserve_product/1")
    await client.get("/list_products/1abc")
    await client.post("/v1/reservations", json={"resource_id": "2", "quantity": 11})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert ('pipeline_http_requests_total{method="GET",route="/list_products/{itemId}",'
            'status="200"} 1.0') in text
    assert ('pipeline_reservation_decisions_total{kind="product",reason="",status="confirmed"} '
            '1.0') in text
    assert ('pipeline_reservation_decisions_total{kind="product",reason="not_enough",'
            'status="rejected"} 1.0') in text


async def test_the_openapi_document_lists_every_route(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/list_products", "/list_products/{itemId}", "/reserve_product/{itemId}",
                 "/available_seats", "/reserve_seat", "/process", "/v1/products",
                 "/v1/products/{product_id}", "/v1/reservations",
                 "/v1/reservations/{reservation_id}", "/v1/seats", "/v1/streams", "/metrics"):
        assert path in paths, path
    body = paths["/v1/reservations"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["additionalProperties"] is False


async def test_redis_out_of_reach_is_a_503_problem(
        client: httpx.AsyncClient, server: EmbeddedServer) -> None:
    server.stop()
    body = problem(await client.get("/v1/seats"), 503, "redis-unavailable")
    assert "try again" in body["detail"]
    problem(await client.get("/available_seats"), 503, "redis-unavailable")


async def test_a_replayed_key_of_a_cancelled_reservation_says_so(
        client: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    headers = {"Idempotency-Key": "order-44"}
    first = await client.post("/v1/reservations", json={"resource_id": "2"}, headers=headers)
    assert first.status_code == 201
    await Inventory(redis).cancel("order-44")
    again = await client.post("/v1/reservations", json={"resource_id": "2"}, headers=headers)
    body = problem(again, 409, "cancelled")
    assert body["reservation"]["status"] == "cancelled"
    assert await Inventory(redis).available("2") == 10, "cancelled, not reserved again"
    read = await client.get("/v1/reservations/order-44")
    assert read.status_code == 200 and read.json()["status"] == "cancelled"
