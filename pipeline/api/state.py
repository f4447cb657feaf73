"""What one app instance holds: the Redis client, the inventory, the ``/process`` processor
and the metrics. Everything that must agree across server processes lives in Redis; this
object only holds handles to it."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
from starlette.requests import Request

from pipeline.api.metrics import Metrics
from pipeline.api.processing import QueueProcessor
from pipeline.reservations import SEAT_QUEUE, SEATS, Inventory, Resource
from pipeline.settings import Settings


@dataclass
class Api:
    """The app's handles; built by ``create_app``, reached in a route by ``Api.of(request)``."""

    redis: aioredis.Redis
    settings: Settings
    resources: list[Resource]
    seat_agent: str
    inventory: Inventory = field(init=False)
    processor: QueueProcessor = field(init=False)
    metrics: Metrics = field(default_factory=Metrics)
    started: bool = False

    def __post_init__(self) -> None:
        self.inventory = Inventory(self.redis)
        self.processor = QueueProcessor(self.redis, self.settings, self.seat_agent, SEAT_QUEUE)

    @staticmethod
    def of(request: Request) -> Api:
        api = request.app.state.api
        assert isinstance(api, Api)
        return api

    async def start(self) -> None:
        """Define what is not defined yet; never resets stock or seats (state survives a
        restart; ``pipeline inventory reset`` resets on purpose)."""
        if not self.started:
            await self.inventory.ensure_defined(self.resources)
            self.started = True

    async def stop(self) -> None:
        """Stop this process's seat worker, if it runs here, and release its lock."""
        await self.processor.close()

    async def seats_left(self) -> int:
        """Seats left in the write model (0 when seats are not defined)."""
        return await self.inventory.available(SEATS) or 0
