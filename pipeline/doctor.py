"""The doctor: is this server one the pipeline can run on, and how far away is it?

Every stream feature the runtime relies on is exercised for real on a scratch key (then
deleted), rather than inferred from a version number: a proxy, a managed service or a fork
may report a version and still lack a command or reply shape we depend on (XAUTOCLAIM's
third element, for example, arrived with Redis 7.0).
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pipeline.keys import Keys

#: the oldest servers the design targets (DESIGN.md)
TARGETS = {"redis": (7, 0), "valkey": (8, 0)}
_GROUP = "doctor"
_CJSON = "local t = cjson.decode(ARGV[1]); return cjson.encode({n = t.n + 1})"


@dataclass(frozen=True, slots=True)
class Check:
    """One feature tried on the server."""

    name: str
    ok: bool
    detail: str
    #: a missing required feature means the pipeline cannot run on this server
    required: bool = True


@dataclass(frozen=True, slots=True)
class Report:
    """What the doctor found."""

    server: str
    version: str
    mode: str
    checks: tuple[Check, ...]
    ping_median_ms: float
    ping_p99_ms: float

    @property
    def ok(self) -> bool:
        """True when every required feature works."""
        return all(c.ok for c in self.checks if c.required)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checks": [asdict(c) for c in self.checks], "ok": self.ok}


class _Broken(Exception):
    """A feature answered, but not as the runtime needs."""


def _expect(condition: bool, message: str) -> None:
    # not ``assert``: checks must still run under ``python -O``
    if not condition:
        raise _Broken(message)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


async def server_identity(redis: aioredis.Redis) -> tuple[str, str, str]:
    """(name, version, mode): Valkey reports ``server_name``; Redis does not."""
    info = await redis.info("server")
    name = _text(info.get("server_name") or "redis").lower()
    version = _text(info.get(f"{name}_version") or info.get("redis_version") or "unknown")
    mode = _text(info.get("server_mode") or info.get("redis_mode") or "standalone")
    return name, version, mode


async def _try(name: str, step: Callable[[], Awaitable[str]], required: bool = True) -> Check:
    try:
        return Check(name, True, await step(), required)
    except (ResponseError, _Broken, IndexError, TypeError, ValueError) as exc:
        return Check(name, False, f"{type(exc).__name__}: {exc}", required)


async def stream_checks(redis: aioredis.Redis) -> list[Check]:
    """Exercise each feature on a scratch stream, in the order the runtime uses them."""
    key = Keys(f"doctor-{secrets.token_hex(6)}").stream
    entry: dict[str, str] = {}

    async def group_create() -> str:
        await redis.xgroup_create(key, _GROUP, id="0", mkstream=True)
        kind = _text(await redis.type(key))
        _expect(kind == "stream", f"MKSTREAM made a {kind!r}, not a stream")
        return "group created on a new stream"

    async def xadd() -> str:
        entry["id"] = _text(await redis.xadd(key, {"f": "v"}))
        return f"appended {entry['id']}"

    async def xreadgroup() -> str:
        reply: Any = await redis.xreadgroup(_GROUP, "c1", {key: ">"}, count=1)
        got = _text(reply[0][1][0][0])
        _expect(got == entry.get("id"), f"read {got}, expected {entry.get('id')}")
        return "new entry delivered to the group"

    async def xpending_idle() -> str:
        rows = await redis.xpending_range(key, _GROUP, min="-", max="+", count=10, idle=0)
        _expect(len(rows) == 1 and _text(rows[0]["consumer"]) == "c1", f"got {rows!r}")
        return "pending entries filtered by idle time"

    async def xautoclaim() -> str:
        reply: Any = await redis.xautoclaim(key, _GROUP, "c2", 0, "0-0", count=10)
        _expect(len(reply) == 3, f"{len(reply)}-element reply (needs Redis >= 7.0)")
        _expect([_text(e[0]) for e in reply[1]] == [entry.get("id")], f"claimed {reply[1]!r}")
        return "3-element reply, entry reclaimed"

    async def lua_cjson() -> str:
        reply: Any = await redis.eval(_CJSON, 0, json.dumps({"n": 1}))
        _expect(json.loads(_text(reply)) == {"n": 2}, f"got {reply!r}")
        return "EVAL with cjson"

    async def server_time() -> str:
        seconds, micros = await redis.time()
        _expect(seconds > 1_600_000_000 and 0 <= micros < 1_000_000, f"got {seconds}, {micros}")
        return f"server clock {seconds - time.time():+.3f}s from ours"

    try:
        return [
            await _try("XGROUP CREATE MKSTREAM", group_create),
            await _try("XADD", xadd),
            await _try("XREADGROUP", xreadgroup),
            await _try("XPENDING IDLE", xpending_idle),
            await _try("XAUTOCLAIM", xautoclaim),
            await _try("Lua EVAL + cjson", lua_cjson),
            await _try("TIME", server_time),
        ]
    finally:
        await redis.delete(key)


async def ping_latency(redis: aioredis.Redis, count: int = 50) -> tuple[float, float]:
    """(median, p99) round trip of ``count`` PINGs, in milliseconds."""
    samples = []
    for _ in range(max(1, count)):
        started = time.perf_counter()
        await redis.ping()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p99 = samples[min(len(samples) - 1, max(0, -(-len(samples) * 99 // 100) - 1))]
    return statistics.median(samples), p99


async def diagnose(redis: aioredis.Redis, pings: int = 50) -> Report:
    """Check the server behind ``redis``; connection errors propagate (nothing to diagnose)."""
    name, version, mode = await server_identity(redis)
    target = TARGETS.get(name, TARGETS["redis"])
    supported = _version_tuple(version) >= target
    version_check = Check(
        "version", supported,
        f"{name} {version} (target >= {'.'.join(map(str, target))})", required=False,
    )
    checks = [version_check, *await stream_checks(redis)]
    median, p99 = await ping_latency(redis, pings)
    return Report(name, version, mode, tuple(checks), round(median, 3), round(p99, 3))
