"""Connecting to Redis: the embedded server or ``REDIS_URL``, and the connection state.

The state is logged once per change ("connected" / "not connected: <error>"); in console
mode the seed's two lines are printed. Callers that lose the server back off and retry.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.errors import ConfigError, ServerError
from pipeline.logging import get_logger
from pipeline.server import Embedded, ensure_embedded, running
from pipeline.settings import Settings

CONNECTED_LINE = "Redis client connected to the server"
NOT_CONNECTED_LINE = "Redis client not connected to the server: {error}"

#: errors that mean "the server is gone for now", as opposed to a bug or a bad command
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
)

log = get_logger("pipeline.connection")


@dataclass
class Endpoint:
    """Where the server is. ``embedded`` is set when no URL was given."""

    url: str
    embedded: Embedded | None = None
    settings: Settings | None = None

    def revive(self) -> None:
        """In embedded mode, restart the server if its owner is gone (take over ownership)."""
        if self.embedded is not None and self.settings is not None:
            self.embedded = ensure_embedded(self.settings.data_dir, self.settings.appendfsync)
            self.url = self.embedded.url


async def keep_embedded(endpoint: Endpoint, every_s: float = 0.25) -> None:
    """Run beside a long-lived command (``serve``, the watchers): whenever the embedded
    server is gone (its owner exited) start it again, taking over ownership as a worker does,
    so clients on its socket reconnect. Returns at once with ``REDIS_URL``."""
    if endpoint.embedded is None or endpoint.settings is None:
        return
    data_dir = endpoint.settings.data_dir.resolve()
    while True:
        await asyncio.sleep(every_s)
        if await asyncio.to_thread(running, data_dir):
            continue
        try:
            await asyncio.to_thread(endpoint.revive)
            log.info("embedded_server_restarted", data_dir=str(data_dir),
                     pid=endpoint.embedded.pid if endpoint.embedded else None)
        except ServerError as exc:
            log.warning("embedded_server_not_restarted", error=str(exc))


def resolve(settings: Settings) -> Endpoint:
    """``REDIS_URL`` wins; otherwise start or reuse the embedded server for ``data_dir``."""
    if settings.redis_url:
        url = settings.redis_url
        check_url(url)
        return Endpoint(url, None, settings)
    embedded = ensure_embedded(settings.data_dir, settings.appendfsync)
    return Endpoint(embedded.url, embedded, settings)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str) -> None:
    """Raise ``ConfigError`` for a URL redis-py would choke on later."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL {redact(url)!r} must start with redis://, rediss:// or unix://")
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"invalid REDIS_URL {redact(url)!r}: {exc}") from None
    db = parts.path.lstrip("/")
    if url.startswith("redis") and db and not db.isdigit():
        raise ConfigError(f"invalid REDIS_URL {redact(url)!r}: the database must be a number")


def client(url: str, settings: Settings, **kwargs: object) -> aioredis.Redis:
    """An asyncio client whose socket timeout always exceeds the BLOCK we use."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=min(5.0, settings.socket_timeout),
        health_check_interval=0,
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass
class ConnectionState:
    """Tracks connected / not connected and reports only changes."""

    echo: TextIO | None = None
    connected: bool | None = None
    on_change: list[Callable[[bool], None]] = field(default_factory=list)

    def up(self) -> None:
        if self.connected is not True:
            self.connected = True
            log.info("connected")
            if self.echo is not None:
                print(CONNECTED_LINE, file=self.echo, flush=True)
            for cb in self.on_change:
                cb(True)

    def down(self, error: BaseException) -> None:
        if self.connected is not False:
            self.connected = False
            text = str(error) or type(error).__name__
            log.warning("not_connected", error=text)
            if self.echo is not None:
                print(NOT_CONNECTED_LINE.format(error=text), file=self.echo, flush=True)
            for cb in self.on_change:
                cb(False)


class Backoff:
    """Exponential backoff with full jitter for reconnects: 0.05 s doubling up to ``cap``."""

    def __init__(self, base: float = 0.05, cap: float = 5.0) -> None:
        self.base, self.cap, self.tries = base, cap, 0

    def reset(self) -> None:
        self.tries = 0

    async def sleep(self) -> None:
        delay = min(self.cap, self.base * (2 ** min(self.tries, 16)))
        self.tries += 1
        await asyncio.sleep(random.uniform(delay / 2, delay))


def console_echo(settings: Settings) -> TextIO | None:
    """Where to print the seed's connection lines: stderr when it is a terminal."""
    if settings.log_format == "console" or (
        settings.log_format == "auto" and sys.stderr.isatty()
    ):
        return sys.stderr
    return None
