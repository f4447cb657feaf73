"""Reservation events: the ledger of inventory and reservations.

Inventory is itself defined by events (``InventoryDefined``, ``StockAdded``), so the ledger
alone rebuilds every count. A reservation is requested (on a queue, e.g. the seed's
``reserve_seat``) and then decided: confirmed (stock taken), rejected (with a reason), and a
confirmed one may later be cancelled (stock returned).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.base import EventModel, register

#: resource ids: products are the seed's item ids as text ("1".."4"), seats are "seats"
ResourceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")]
#: reservation ids double as idempotency keys: a UUID, a job id ``reserve_seat:7``, ...
ReservationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]
Customer = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: at most 10**12: far beyond any stock, and exact in every JSON parser and in Lua's doubles
Count = Annotated[int, Field(ge=0, le=10**12)]
Quantity = Annotated[int, Field(ge=1, le=1000)]
Kind = Literal["product", "seats"]
RejectReason = Literal["unknown_resource", "not_enough", "blocked"]

MAX_QUANTITY = 1000


@register
class InventoryDefined(EventModel):
    """A resource is (re)defined: its available count becomes ``quantity``."""

    EVENT_TYPE = "inventory.defined"
    resource_id: ResourceId
    kind: Kind
    name: Name
    price: Count
    quantity: Count


@register
class StockAdded(EventModel):
    EVENT_TYPE = "inventory.stock_added"
    resource_id: ResourceId
    quantity: Annotated[int, Field(ge=1, le=10**12)]


@register
class ReservationRequested(EventModel):
    """A request to decide later (a queued seat reservation); the decider records the outcome."""

    EVENT_TYPE = "reservation.requested"
    reservation_id: ReservationId
    resource_id: ResourceId
    quantity: Quantity = 1
    customer: Customer | None = None


@register
class ReservationConfirmed(EventModel):
    """Stock taken; ``remaining`` is what was left of the resource right after."""

    EVENT_TYPE = "reservation.confirmed"
    reservation_id: ReservationId
    resource_id: ResourceId
    quantity: Quantity
    customer: Customer | None
    remaining: Count


@register
class ReservationRejected(EventModel):
    EVENT_TYPE = "reservation.rejected"
    reservation_id: ReservationId
    resource_id: ResourceId
    quantity: Quantity
    customer: Customer | None
    reason: RejectReason


@register
class ReservationCancelled(EventModel):
    """A confirmed reservation undone: its quantity goes back to the resource."""

    EVENT_TYPE = "reservation.cancelled"
    reservation_id: ReservationId
    resource_id: ResourceId
    quantity: Quantity
    customer: Customer | None


LEDGER_EVENTS = (InventoryDefined, StockAdded, ReservationConfirmed, ReservationRejected,
                 ReservationCancelled)
