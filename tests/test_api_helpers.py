"""Shared pieces of the API tests (no tests here): an app over the test's server, served
in-process through httpx's ASGI transport with its lifespan run, and ledger figures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI

from pipeline.api import create_app
from pipeline.compat import seed
from pipeline.keys import Keys
from pipeline.settings import Settings

SEED = seed()
LEDGER = Keys("reservations", 0).stream
EXPRESS_JSON = "application/json; charset=utf-8"


@asynccontextmanager
async def serving(redis: aioredis.Redis, settings: Settings, **kwargs: Any
                  ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app (start-up and shutdown run) and a client talking to it in-process."""
    app = create_app(redis, settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client


async def ledger_length(redis: aioredis.Redis) -> int:
    return int(await redis.xlen(LEDGER))


def compact(body: Any) -> bytes:
    """``JSON.stringify(body)``."""
    return json.dumps(body, separators=(",", ":")).encode()


PROBLEM = "application/problem+json"


def problem(r: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """The problem+json body of ``r``, checked: status, content type, title and detail, and
    the problem type when ``slug`` is given."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if slug is not None:
        assert body["type"] == f"urn:pipeline:problem:{slug}"
    return body
