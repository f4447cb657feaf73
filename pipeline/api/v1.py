"""The versioned JSON API: products, reservations, seats and streams.

Errors are problem details (``application/problem+json``). A reservation is decided
synchronously by the decider; the client's ``Idempotency-Key`` is the reservation id, so a
retried POST returns the first outcome and reserves nothing twice. A request that is not
valid (ids, quantities, fields, size, content type) is refused before anything is written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import JSONResponse

from pipeline.api.inputs import ITEM_ID_PATTERN, KEY_PATTERN, read_json, validate
from pipeline.api.responses import PROBLEM_JSON, Problem
from pipeline.api.state import Api
from pipeline.codec import uuid7
from pipeline.reservations import SEATS, Decision, ReservationConflict
from pipeline.streams import StreamStats, stream_stats

router = APIRouter(prefix="/v1", tags=["v1"])
RESOURCE_PATTERN = r"^(0|[1-9][0-9]{0,17}|seats)$"
_PROBLEM = {"content": {PROBLEM_JSON: {}}, "description": "Problem details (RFC 9457)"}


class Product(BaseModel):
    """A product with its initial and current quantity."""

    id: int
    name: str
    price: int
    initial_quantity: int
    available: int


class Seats(BaseModel):
    """The seats: left, initial, and whether reservations are blocked (none left)."""

    available: int
    initial: int
    blocked: bool


class ReservationIn(BaseModel):
    """A reservation request. ``resource_id``: a product id (``"1"`` or ``1``) or ``"seats"``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    resource_id: str = Field(pattern=RESOURCE_PATTERN, examples=["1", "seats"])
    quantity: int = Field(default=1, ge=1, le=1000)
    customer: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("resource_id", mode="before")
    @classmethod
    def _product_number(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
            return str(value)
        return value


class Reservation(BaseModel):
    """A decided reservation (or its cancellation), as the ledger recorded it."""

    reservation_id: str
    resource_id: str
    quantity: int
    customer: str | None
    status: Literal["confirmed", "rejected", "cancelled"]
    #: unknown_resource | not_enough | blocked, for a rejection
    reason: str | None
    #: what was left of the resource right after (None for an unknown resource)
    remaining: int | None
    #: the ledger entry of the outcome
    entry_id: str


def _reservation(d: Decision) -> Reservation:
    return Reservation(reservation_id=d.reservation_id, resource_id=d.resource_id,
                       quantity=d.quantity, customer=d.customer, status=d.status,
                       reason=d.reason, remaining=d.remaining, entry_id=d.entry_id)


async def _products(api: Api) -> list[Product]:
    out = []
    for r in await api.inventory.catalog():
        if r.kind == "product":
            available = await api.inventory.available(r.resource_id) or 0
            out.append(Product(id=int(r.resource_id), name=r.name, price=r.price,
                               initial_quantity=r.quantity, available=available))
    return out


@router.get("/products", summary="Every product")
async def list_products(request: Request) -> list[Product]:
    return await _products(Api.of(request))


@router.get("/products/{product_id}", summary="One product",
            responses={404: _PROBLEM, 422: _PROBLEM})
async def get_product(
    request: Request, product_id: Annotated[str, Path(pattern=ITEM_ID_PATTERN)]
) -> Product:
    inventory = Api.of(request).inventory
    r = await inventory.resource(product_id)
    available = None if r is None or r.kind != "product" else await inventory.available(product_id)
    if r is None or available is None:
        raise Problem(404, "unknown-product", "Not found", f"no product {product_id}")
    return Product(id=int(r.resource_id), name=r.name, price=r.price,
                   initial_quantity=r.quantity, available=available)


@router.get("/seats", summary="Seats left")
async def seats(request: Request) -> Seats:
    api = Api.of(request)
    initial = next((r.quantity for r in await api.inventory.catalog() if r.resource_id == SEATS),
                   0)
    left = await api.seats_left()
    return Seats(available=left, initial=initial, blocked=left <= 0)


_REJECTIONS = {
    "not_enough": (409, "not-enough", "Not enough available"),
    "blocked": (409, "blocked", "Reservations are blocked"),
    "unknown_resource": (404, "unknown-resource", "Not found"),
}


@router.post(
    "/reservations", status_code=201, summary="Reserve, decided now",
    responses={404: _PROBLEM, 409: _PROBLEM, 413: _PROBLEM, 415: _PROBLEM, 422: _PROBLEM,
               400: _PROBLEM},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": ReservationIn.model_json_schema()}}}},
)
async def reserve(
    request: Request,
    key: Annotated[str | None, Header(alias="Idempotency-Key", pattern=KEY_PATTERN)] = None,
) -> JSONResponse:
    """Confirmed: 201. Not enough left or seats blocked: 409. Unknown resource: 404. The
    rejections are decisions too: recorded on the ledger and repeated for the same key."""
    reservation_id = key or uuid7()
    body = validate(ReservationIn, await read_json(request))
    api = Api.of(request)
    try:
        decision = await api.inventory.decide(reservation_id, body.resource_id, body.quantity,
                                              body.customer)
    except ReservationConflict as exc:
        raise Problem(422, "idempotency-key-reused", "Invalid request",
                      f"Idempotency-Key {reservation_id}: {exc}") from None
    kind = "seats" if body.resource_id == SEATS else "product"
    if not decision.duplicate:
        api.metrics.decided(kind, decision.status, decision.reason)
    headers = {"Location": f"/v1/reservations/{reservation_id}"}
    if decision.duplicate:
        headers["Idempotent-Replayed"] = "true"
    if decision.status == "confirmed":
        return JSONResponse(_reservation(decision).model_dump(), 201, headers)
    if decision.status == "cancelled":  # a replayed key whose reservation was cancelled since
        status, slug, title = 409, "cancelled", "Reservation cancelled"
    else:
        status, slug, title = _REJECTIONS.get(decision.reason or "", (409, "rejected",
                                                                      "Rejected"))
    raise Problem(status, slug, title,
                  f"reservation {reservation_id} of {body.quantity} x {body.resource_id}: "
                  f"{decision.reason}", headers, reservation=_reservation(decision).model_dump())


@router.get("/reservations/{reservation_id}", summary="One decided reservation",
            responses={404: _PROBLEM, 422: _PROBLEM})
async def get_reservation(
    request: Request, reservation_id: Annotated[str, Path(pattern=KEY_PATTERN)]
) -> Reservation:
    decision = await Api.of(request).inventory.get_decision(reservation_id)
    if decision is None:
        raise Problem(404, "unknown-reservation", "Not found", f"no reservation {reservation_id}")
    return _reservation(decision)


@router.get("/streams", summary="Streams: length, lag, pending, delayed and dead counts")
async def streams(request: Request) -> list[StreamStats]:
    return await stream_stats(Api.of(request).redis, consumers=True)
