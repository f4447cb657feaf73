"""The seed's seat queue: ``/reserve_seat`` queues a seat job on ``reserve_seat``; the seat
agent (``agents.reservations``, run by ``/process``) decides it with the decider.

A seat job is a ``ReservationRequested`` for one seat on the job topic ``jobs:reserve_seat``;
its job id (``reserve_seat:<n>``, readable like Kue's) is both the event id and the
reservation id, so a retried enqueue or a redelivered job never reserves twice.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from schemas.reservations import ReservationRequested

from pipeline.keys import Keys, job_topic
from pipeline.producer import Producer

SEAT_QUEUE = "reserve_seat"
SEATS = "seats"


class SeatQueue:
    """Queues seat reservation jobs."""

    def __init__(self, redis: aioredis.Redis, queue: str = SEAT_QUEUE) -> None:
        self.redis = redis
        self.queue = queue
        self.keys = Keys(job_topic(queue), 0)
        self.producer = Producer(redis, job_topic(queue))

    async def enqueue(self, customer: str | None = None) -> str:
        """Queue one seat job; returns its id. Raises what Redis raises (the caller answers
        ``Reservation failed``)."""
        job_id = f"{self.queue}:{int(await self.redis.incr(self.keys.seq))}"
        event = ReservationRequested(reservation_id=job_id, resource_id=SEATS, quantity=1,
                                     customer=customer)
        await self.producer.publish(event, event_id=job_id)
        return job_id
