"""The app factory: the seed's routes, the versioned API, ``/metrics`` and the OpenAPI
document, over one Redis client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pipeline.api import dashboard, events, ops, responses, seed, v1
from pipeline.api.metrics import MetricsMiddleware
from pipeline.api.state import Api
from pipeline.reservations import SEED_RESOURCES, Resource
from pipeline.settings import Settings

DEFAULT_SEAT_AGENT = "agents.reservations"


def create_app(
    redis: aioredis.Redis,
    settings: Settings,
    *,
    seat_agent: str = DEFAULT_SEAT_AGENT,
    resources: Sequence[Resource] | None = None,
) -> FastAPI:
    """An app over ``redis``. On start-up it defines ``resources`` (default: the seed's four
    products and 50 seats) where they are not defined yet, never resetting a count; on
    shutdown it stops the seat worker if ``/process`` started one here.

    ``seat_agent`` is the dotted path of the agent ``/process`` runs (``pipeline`` never
    imports ``agents``). The caller owns ``redis`` and closes it after the app stops.
    """
    api = Api(redis, settings, list(SEED_RESOURCES if resources is None else resources),
              seat_agent)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await api.start()
        try:
            yield
        finally:
            await api.stop()

    app = FastAPI(
        title="redis-streams-pipeline",
        summary="Reservations as events: the seed's routes and a versioned JSON API.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = api
    app.add_exception_handler(responses.Problem, responses.on_problem)
    app.add_exception_handler(HTTPException, responses.on_http_error)
    app.add_exception_handler(RequestValidationError, responses.on_validation_error)
    for error in (RedisConnectionError, RedisTimeoutError):
        app.add_exception_handler(error, responses.on_redis_down)
    app.include_router(seed.router)
    app.include_router(v1.router)
    app.include_router(ops.router)
    app.include_router(events.router)
    app.include_router(dashboard.router)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=True,
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics(request: Request) -> Response:
        api = Api.of(request)
        return Response(await api.metrics.scrape(api.redis), media_type=api.metrics.content_type)

    app.add_middleware(MetricsMiddleware, metrics=api.metrics)
    return app
