"""The seed's six routes (the Express products and seats servers), byte for byte.

Every body is the seed's, with its key order, ``"50"`` as a string, and status 200 even for
"not found" (the original set none). Counts come from Redis (the write model), so every
server process agrees, and a seat is "blocked" exactly when none are left.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from redis.exceptions import RedisError

from pipeline.api.inputs import item_id
from pipeline.api.responses import Problem, SeedJSON
from pipeline.api.state import Api
from pipeline.codec import uuid7
from pipeline.errors import ConfigError, PipelineError
from pipeline.logging import get_logger
from pipeline.reservations import Resource

log = get_logger("pipeline.api.seed")
router = APIRouter(tags=["seed"], default_response_class=SeedJSON)

NOT_FOUND = {"status": "Product not found"}
NOT_ENOUGH = "Not enough stock available"
CONFIRMED = "Reservation confirmed"
SEATS_BLOCKED = {"status": "Reservation are blocked"}
SEAT_IN_PROCESS = {"status": "Reservation in process"}
SEAT_FAILED = {"status": "Reservation failed"}
QUEUE_PROCESSING = {"status": "Queue processing"}


def _item(resource: Resource) -> dict[str, Any]:
    return {"itemId": int(resource.resource_id), "itemName": resource.name,
            "price": resource.price, "initialAvailableQuantity": resource.quantity}


async def _product(api: Api, text: str) -> Resource | None:
    n = item_id(text)
    resource = None if n is None else await api.inventory.resource(str(n))
    return resource if resource is not None and resource.kind == "product" else None


@router.get("/list_products", summary="Every product (the seed's four)")
async def list_products(request: Request) -> SeedJSON:
    api = Api.of(request)
    return SeedJSON([_item(r) for r in await api.inventory.catalog() if r.kind == "product"])


@router.get("/list_products/{itemId}", summary="One product with its current quantity")
async def get_product(request: Request, itemId: str) -> SeedJSON:
    api = Api.of(request)
    resource = await _product(api, itemId)
    current = None if resource is None else await api.inventory.available(resource.resource_id)
    if resource is None or current is None:
        return SeedJSON(NOT_FOUND)
    return SeedJSON({**_item(resource), "currentQuantity": current})


@router.get("/reserve_product/{itemId}", summary="Reserve one unit of a product, now")
async def reserve_product(request: Request, itemId: str) -> SeedJSON:
    n = item_id(itemId)
    if n is None:
        return SeedJSON(NOT_FOUND)  # not an id: nothing is decided, nothing is written
    api = Api.of(request)
    decision = await api.inventory.decide(uuid7(), str(n), 1)
    api.metrics.decided("product", decision.status, decision.reason)
    if decision.status == "confirmed":
        return SeedJSON({"status": CONFIRMED, "itemId": n})
    if decision.reason == "not_enough":
        return SeedJSON({"status": NOT_ENOUGH, "itemId": n})
    return SeedJSON(NOT_FOUND)


@router.get("/available_seats", summary="Seats left, as a string")
async def available_seats(request: Request) -> SeedJSON:
    left = await Api.of(request).seats_left()
    return SeedJSON({"numberOfAvailableSeats": str(left)})


@router.get("/reserve_seat", summary="Queue a seat reservation (blocked when none are left)")
async def reserve_seat(request: Request) -> SeedJSON:
    api = Api.of(request)
    if await api.seats_left() <= 0:
        return SeedJSON(SEATS_BLOCKED)
    try:
        job_id = await api.inventory.queue_seat()
    except (RedisError, OSError, PipelineError) as exc:
        log.warning("seat_job_not_queued", error=str(exc))
        return SeedJSON(SEAT_FAILED)
    api.metrics.seat_job_queued()
    log.debug("seat_job_queued", job_id=job_id)
    return SeedJSON(SEAT_IN_PROCESS)


@router.get("/process", summary="Process the seat queue (one worker in the whole deployment)")
async def process(request: Request) -> SeedJSON:
    try:
        Api.of(request).processor.ensure()
    except ConfigError as exc:  # the seat agent cannot be loaded: say so, not a bare 500
        raise Problem(500, "seat-agent-unavailable", "Seat agent unavailable", str(exc)) from None
    return SeedJSON(QUEUE_PROCESSING)
