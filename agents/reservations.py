"""The seed's seat-reservation processor, as an agent over the ``reserve_seat`` queue.

Each queued request (``Inventory.queue_seat``, a ``reservation.requested`` event whose
reservation id is its job id) is decided by the ledger's decider (``lua/decide.lua``):
atomically, idempotently, never below zero. Prints the seed's lines,
``Seat reservation job <id> completed`` or ``Seat reservation job <id> failed: Not enough
seats available``. A rejection is an outcome, recorded on the ledger, not a failure of the
job: the entry is acked, not dead-lettered. Run it with ``pipeline worker agents.reservations``
(the API's ``/process`` runs it too).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import redis.asyncio as aioredis

from pipeline.agent import Agent, Context
from pipeline.compat import line
from pipeline.errors import Fail, ValidationFailed
from pipeline.keys import job_topic
from pipeline.reservations import SEAT_QUEUE, SEATS, SEED_RESOURCES, Decision, Inventory
from schemas.base import EventModel
from schemas.reservations import ReservationRequested

#: handlers at once; their decisions share round trips (see pipeline.coalesce)
CONCURRENCY = 200


def outcome_line(job_id: str, decision: Decision) -> str:
    """The seed's console line for a decided seat job."""
    if decision.status != "rejected":
        return line("seats", "completed", id=job_id)
    if decision.resource_id == SEATS or decision.reason == "blocked":
        error = line("seats", "not_enough_error")
    elif decision.reason == "not_enough":
        error = "Not enough stock available"
    else:
        error = f"Unknown resource {decision.resource_id}"
    return line("seats", "failed", id=job_id, error=error)


def _print(text: str) -> None:
    print(text, flush=True)


def agent(queue: str = SEAT_QUEUE, *, echo: Callable[[str], None] | None = _print,
          concurrency: int = CONCURRENCY) -> Agent:
    """The seat agent for ``queue``; ``echo`` gets the seed's lines (None: quiet)."""
    inventories: weakref.WeakKeyDictionary[aioredis.Redis, Inventory] = \
        weakref.WeakKeyDictionary()

    def inventory(redis: aioredis.Redis) -> Inventory:
        inv = inventories.get(redis)
        if inv is None:
            inv = inventories[redis] = Inventory(redis)
        return inv

    async def setup(redis: aioredis.Redis) -> None:
        # the seed's seats exist before the first request is decided (never resets them)
        await inventory(redis).ensure_defined(SEED_RESOURCES)

    async def reserve_seat(event: EventModel, ctx: Context) -> None:
        if not isinstance(event, ReservationRequested):
            raise Fail(f"not a reservation request: {event.EVENT_TYPE}")
        try:
            decision = await inventory(ctx.redis).decide(
                event.reservation_id, event.resource_id, event.quantity, event.customer)
        except ValidationFailed as exc:  # e.g. the id was decided for another request
            raise Fail(str(exc)) from None
        if echo is not None:
            echo(outcome_line(event.reservation_id, decision))

    return Agent(name="reservations", topic=job_topic(queue), handler=reserve_seat,
                 concurrency=concurrency, setup=setup)
