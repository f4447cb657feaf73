"""What one app instance holds: the Redis client, the inventory, the ``/process`` processor
and the metrics. Everything that must agree across server processes lives in Redis; this
object only holds handles to it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

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
    #: set when the server begins to shut down: open event streams end (clients reconnect)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.inventory = Inventory(self.redis)
        self.processor = QueueProcessor(self.redis, self.settings, self.seat_agent, SEAT_QUEUE)

    @staticmethod
    def of(request: Request) -> Api:
        return Api.of_app(request.app)

    @staticmethod
    def of_app(app: Any) -> Api:
        """The handles of an app made by ``create_app``."""
        api = app.state.api
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
        self.closing.set()
        await self.processor.close()

    async def seats_left(self) -> int:
        """Seats left in the write model (0 when seats are not defined)."""
        return await self.inventory.available(SEATS) or 0
