"""Reservations on a ledger: the write side (inventory and the decider).

Every change of a count is one Lua script that also appends its event to the ledger (the
stream of topic ``reservations``, never trimmed), so the ledger alone rebuilds everything:

- ``<base>:stock``    HASH resource id -> available count (the write model; only these scripts
  change it, and ``lua/decide.lua`` never lets it go below zero)
- ``<base>:catalog``  HASH resource id -> JSON (kind, name, price, initial quantity, position,
  defined_entry)
- ``<base>:decision:<reservation id>`` the decision (idempotency: a decided id is not decided
  again, the stored outcome is returned)

Seats are *blocked* when none are left: read from Redis, so every process agrees.

Every ledger event is also published, by the same script, on the ledger's channel
``pl:events:reservations`` (the envelope as JSON, ``data`` an object) when someone
subscribes: live fan-out, lossy by nature; ``pipeline.live`` tails the ledger losslessly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from pipeline.coalesce import Coalescer
from pipeline.codec import uuid7
from pipeline.compat import seed
from pipeline.errors import NotFound, ValidationFailed
from pipeline.keys import Keys, job_topic
from pipeline.producer import Outgoing, Producer
from pipeline.scripts import Scripts
from schemas.reservations import MAX_QUANTITY, InventoryDefined, ReservationRequested, StockAdded

TOPIC = "reservations"
SEATS = "seats"
SEAT_QUEUE = "reserve_seat"
_RESOURCE = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_RESERVATION = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_MAX_COUNT = 10**12


class ReservationConflict(ValidationFailed):
    """A reservation id reused for another request, or a cancellation that cannot be done."""


@dataclass(frozen=True)
class Resource:
    """Something with a count: a product, or the seats."""

    resource_id: str
    kind: str
    name: str
    price: int
    quantity: int


@dataclass(frozen=True)
class Decision:
    """The outcome of a reservation (or of its cancellation)."""

    reservation_id: str
    resource_id: str
    status: Literal["confirmed", "rejected", "cancelled"]
    #: unknown_resource | not_enough | blocked | None
    reason: str | None
    #: stock left after this outcome (None when the resource is unknown)
    remaining: int | None
    #: the ledger entry of the outcome
    entry_id: str
    #: True when this reservation id was already decided (the same outcome is returned)
    duplicate: bool
    quantity: int = 1
    customer: str | None = None

    @classmethod
    def from_json(cls, text: bytes | str, duplicate: bool) -> Decision:
        d = json.loads(text)
        return cls(
            reservation_id=d["reservation_id"], resource_id=d["resource_id"],
            status=d["status"], reason=d["reason"], remaining=d["remaining"],
            entry_id=d["entry_id"], duplicate=duplicate, quantity=d["quantity"],
            customer=d["customer"],
        )


def seed_resources() -> list[Resource]:
    """The seed's four products (ids "1".."4") and its 50 seats."""
    data = seed()
    out = [
        Resource(str(p["itemId"]), "product", p["itemName"], p["price"],
                 p["initialAvailableQuantity"])
        for p in data["products"]["items"]
    ]
    out.append(Resource(SEATS, "seats", "Seats", 0, data["seats"]["initial"]))
    return out


SEED_RESOURCES: list[Resource] = seed_resources()


class LedgerKeys:
    """The keys of one ledger partition (all share its hash tag)."""

    def __init__(self, partition: int = 0) -> None:
        self.keys = Keys(TOPIC, partition)
        base = self.keys.base
        self.ledger = self.keys.stream
        #: the ledger's live channel (``pl:events:reservations``): every ledger event is
        #: published there too, in the same script, when someone subscribes
        self.channel = self.keys.channel
        self.stock = f"{base}:stock"
        self.catalog = f"{base}:catalog"
        self._decision = f"{base}:decision:"

    def decision(self, reservation_id: str) -> str:
        return self._decision + reservation_id


def _common(reservation_id: str, resource_id: str, quantity: int, customer: str | None) -> str:
    """The members every outcome event shares, as JSON (without the braces)."""
    return json.dumps(
        {"reservation_id": reservation_id, "resource_id": resource_id, "quantity": quantity,
         "customer": customer},
        separators=(",", ":"), ensure_ascii=False,
    )[1:-1]


def check_resource_id(resource_id: object) -> str:
    if not isinstance(resource_id, str) or not _RESOURCE.match(resource_id):
        raise ValidationFailed(
            f"invalid resource id {resource_id!r}: use 1-100 letters, digits, '_', '.' or '-'")
    return resource_id


def check_reservation_id(reservation_id: object) -> str:
    if not isinstance(reservation_id, str) or not _RESERVATION.match(reservation_id):
        raise ValidationFailed(
            f"invalid reservation id {reservation_id!r}: "
            "use 1-128 letters, digits, '_', '.', ':' or '-'")
    return reservation_id


def check_quantity(quantity: object, most: int = MAX_QUANTITY) -> int:
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= most:
        raise ValidationFailed(f"invalid quantity {quantity!r}: use an integer from 1 to {most}")
    return quantity


def check_customer(customer: object) -> str | None:
    if customer is None:
        return None
    if not isinstance(customer, str) or not 1 <= len(customer) <= 200:
        raise ValidationFailed(f"invalid customer {customer!r}: use 1-200 characters or none")
    return customer


def check_resource(r: Resource) -> Resource:
    check_resource_id(r.resource_id)
    try:
        InventoryDefined(resource_id=r.resource_id, kind=r.kind, name=r.name,  # type: ignore[arg-type]
                         price=r.price, quantity=r.quantity)
    except ValueError as exc:
        raise ValidationFailed(f"invalid resource {r.resource_id!r}: {exc}") from None
    return r


class Inventory:
    """The write side of one ledger partition: define inventory, decide, cancel, read counts."""

    def __init__(self, redis: aioredis.Redis, partition: int = 0) -> None:
        self.redis = redis
        self.partition = partition
        self.k = LedgerKeys(partition)
        self.scripts = Scripts(redis)
        # concurrent decisions of this process share round trips (each stays atomic)
        self._decide = Coalescer(redis, "decide")
        self._seat_producers: dict[str, Producer] = {}

    @property
    def keys(self) -> Keys:
        return self.k.keys

    # ------------------------------------------------------------------ inventory

    async def _define(self, mode: str, resources: Sequence[Resource]) -> list[str]:
        args: list[Any] = [mode, self.k.channel]
        for r in resources:
            check_resource(r)
            event = InventoryDefined(resource_id=r.resource_id, kind=r.kind,  # type: ignore[arg-type]
                                     name=r.name, price=r.price, quantity=r.quantity)
            members = json.dumps(
                {"resource_id": r.resource_id, "kind": r.kind, "name": r.name, "price": r.price,
                 "quantity": r.quantity}, separators=(",", ":"), ensure_ascii=False)[1:-1]
            args += (r.resource_id, r.quantity, uuid7(), event.model_dump_json(), members)
        defined = await self.scripts("define", [self.k.ledger, self.k.stock, self.k.catalog],
                                     args)
        return [_text(x) for x in defined]

    async def ensure_defined(self, resources: Sequence[Resource]) -> list[str]:
        """Define the resources that are not defined yet; never resets one that is (a
        restarted server keeps its counts). Returns the ids defined now."""
        return await self._define("ensure", resources)

    async def reset(self, resources: Sequence[Resource]) -> list[str]:
        """Define every resource again, on purpose: its stock goes back to its quantity.

        Confirmed reservations made before cannot be cancelled afterwards (their stock was
        reset); their decisions stay, so their ids are still not decided twice."""
        return await self._define("reset", resources)

    async def add_stock(self, resource_id: str, quantity: int) -> int:
        """Add to a defined resource; returns the new available count. Raises ``NotFound``."""
        check_resource_id(resource_id)
        check_quantity(quantity, _MAX_COUNT)
        event = StockAdded(resource_id=resource_id, quantity=quantity)
        out = await self.scripts("add_stock", [self.k.ledger, self.k.stock, self.k.catalog],
                                 [resource_id, quantity, uuid7(), event.model_dump_json(),
                                  self.k.channel])
        if int(out) < 0:
            raise NotFound(f"no resource {resource_id!r}: define it first")
        return int(out)

    # ------------------------------------------------------------------ decisions

    async def decide(self, reservation_id: str, resource_id: str, quantity: int = 1,
                     customer: str | None = None) -> Decision:
        """Confirm (taking stock) or reject (unknown_resource, not_enough, blocked) a
        reservation, and record it on the ledger, atomically.

        Idempotent on ``reservation_id``: a decided id returns its first decision with
        ``duplicate=True``. Raises ``ValidationFailed`` for malformed input (nothing is
        written) and ``ReservationConflict`` when the id was decided for another request."""
        check_reservation_id(reservation_id)
        check_resource_id(resource_id)
        check_quantity(quantity)
        check_customer(customer)
        dup, text = await self._decide(
            [self.k.ledger, self.k.stock, self.k.catalog, self.k.decision(reservation_id)],
            [resource_id, quantity, f"{reservation_id}/decision",
             _common(reservation_id, resource_id, quantity, customer), self.k.channel],
        )
        decision = Decision.from_json(text, bool(dup))
        if decision.duplicate and (decision.resource_id, decision.quantity, decision.customer) \
                != (resource_id, quantity, customer):
            raise ReservationConflict(
                f"reservation id {reservation_id!r} was already used for "
                f"{decision.quantity} of {decision.resource_id!r}; use a new id")
        return decision

    async def cancel(self, reservation_id: str) -> Decision:
        """Cancel a confirmed reservation: its quantity goes back, recorded on the ledger.

        Idempotent (a second cancel returns the first with ``duplicate=True``). Raises
        ``NotFound`` for an unknown id and ``ReservationConflict`` when it was rejected or
        made before its resource was reset."""
        check_reservation_id(reservation_id)
        code, text = await self.scripts(
            "cancel",
            [self.k.ledger, self.k.stock, self.k.catalog, self.k.decision(reservation_id)],
            [f"{reservation_id}/cancel", self.k.channel],
        )
        code = int(code)
        if code == -1:
            raise NotFound(f"no reservation {reservation_id!r}")
        if code == -2:
            raise ReservationConflict(
                f"reservation {reservation_id!r} was rejected; only a confirmed one can be "
                "cancelled")
        if code == -3:
            raise ReservationConflict(
                f"reservation {reservation_id!r} was made before its resource was reset; "
                "there is nothing to give back")
        return Decision.from_json(text, code == 1)

    async def get_decision(self, reservation_id: str) -> Decision | None:
        """The decision on ``reservation_id`` (or its cancellation), None when undecided."""
        check_reservation_id(reservation_id)
        text = await self.redis.get(self.k.decision(reservation_id))
        return None if text is None else Decision.from_json(text, True)

    # ------------------------------------------------------------------ reading

    async def available(self, resource_id: str) -> int | None:
        """The available count (write model); None for an unknown resource."""
        value = await self.redis.hget(self.k.stock, resource_id)
        return None if value is None else int(value)

    async def counts(self) -> dict[str, int]:
        """Every available count (write model), by resource id."""
        raw = await self.redis.hgetall(self.k.stock)
        return {_text(k): int(v) for k, v in raw.items()}

    async def blocked(self) -> bool:
        """Seat reservations are blocked: no seat is left (or seats are not defined)."""
        return not await self.available(SEATS)

    async def catalog(self) -> list[Resource]:
        """Every defined resource, in the order they were first defined."""
        raw = await self.redis.hgetall(self.k.catalog)
        rows = sorted((json.loads(v) for v in raw.values()),
                      key=lambda d: (d.get("position", 0), d["resource_id"]))
        return [Resource(d["resource_id"], d["kind"], d["name"], d["price"], d["quantity"])
                for d in rows]

    async def resource(self, resource_id: str) -> Resource | None:
        raw = await self.redis.hget(self.k.catalog, resource_id)
        if raw is None:
            return None
        d = json.loads(raw)
        return Resource(d["resource_id"], d["kind"], d["name"], d["price"], d["quantity"])

    # ------------------------------------------------------------------ the seat queue

    async def queue_seat(self, *, customer: str | None = None, queue: str = SEAT_QUEUE) -> str:
        """The seed's ``queue.create('reserve_seat')``: a seat request on the queue, decided
        later by ``agents.reservations``. Returns its job id ``<queue>:<n>`` (also the
        reservation id, so ``get_decision`` finds its outcome)."""
        check_customer(customer)
        producer = self._seat_producers.get(queue)
        if producer is None:
            producer = self._seat_producers[queue] = Producer(
                self.redis, job_topic(queue), scripts=self.scripts)

        def request(n: int) -> list[Outgoing]:
            job_id = f"{queue}:{n}"
            return [Outgoing(ReservationRequested(reservation_id=job_id, resource_id=SEATS,
                                                  quantity=1, customer=customer), job_id)]

        # numbered and queued in one step: request n is the n-th on the stream
        [queued] = await producer.publish_numbered(Keys(job_topic(queue), 0).seq, 1, request)
        return queued.event_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
