"""The main job, second half: the seed's product and seat servers, as events.

Resets the inventory to the seed's counts (on purpose, so every run starts alike), then
through the real HTTP app (in-process, no port): lists the products, fires more product
reservations than there is stock, all at once, and more seat requests than seats; asks
``/process`` to run the seat queue; runs the inventory projector; audits the ledger against
the write and read models; and prints the seed's responses, a table, and ``audit: OK``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx
import redis.asyncio as aioredis

from pipeline.audit import audit
from pipeline.errors import PipelineError
from pipeline.registry import load_agent
from pipeline.reservations import SEAT_QUEUE, SEED_RESOURCES, Inventory
from pipeline.settings import Settings
from pipeline.testing import running, wait_for

EXTRA_REQUESTS = 2  # per product and for the seats: more requests than stock


@dataclass
class ReservationSummary:
    confirmed: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    audit_ok: bool = False
    table: list[tuple[str, str, int, int, int]] = field(default_factory=list)


def _show(out: TextIO, route: str, body: str, times: int = 1) -> None:
    suffix = f"  (x{times})" if times > 1 else ""
    print(f"GET {route} -> {body}{suffix}", file=out, flush=True)


async def _fan_out(client: httpx.AsyncClient, routes: list[str]) -> list[str]:
    replies = await asyncio.gather(*(client.get(r) for r in routes))
    for reply in replies:
        if reply.status_code != 200:
            raise PipelineError(f"GET {reply.request.url.path} answered {reply.status_code}")
    return [reply.text for reply in replies]


async def run_reservations(redis: aioredis.Redis, settings: Settings, out: TextIO,
                           timeout: float = 60.0) -> ReservationSummary:
    from fastapi import FastAPI

    from pipeline.api.app import create_app

    summary = ReservationSummary()
    inventory = Inventory(redis)
    await inventory.reset(SEED_RESOURCES)
    print("Inventory reset to the seed's counts (4 products, 50 seats)", file=out, flush=True)
    app: FastAPI = create_app(redis, settings)
    projector = load_agent("agents.inventory_projector")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://demo") as client,
        running(projector, redis, settings),
    ):
        _show(out, "/list_products", (await client.get("/list_products")).text)
        await _products(client, inventory, out, summary)
        await _seats(client, inventory, out, summary, timeout)
        await _caught_up(redis, wait_for, timeout)
    report = await audit(redis)
    summary.audit_ok = report.ok
    for r in await inventory.catalog():
        left = report.write_counts.get(r.resource_id, -1)
        read = report.read_counts.get(r.resource_id, -1)
        summary.table.append((r.resource_id, r.name, r.quantity, left, read))
    return summary


async def _products(client: httpx.AsyncClient, inventory: Inventory, out: TextIO,
                    summary: ReservationSummary) -> None:
    routes = []
    for r in SEED_RESOURCES:
        if r.kind == "product":
            routes += [f"/reserve_product/{r.resource_id}"] * (r.quantity + EXTRA_REQUESTS)
    routes += ["/reserve_product/9", "/reserve_product/1abc"]
    bodies = await _fan_out(client, routes)
    seen: Counter[tuple[str, str]] = Counter(zip(routes, bodies, strict=True))
    # per route: the confirmations first, then the refusals (as the requests were granted)
    for (route, body), times in sorted(seen.items(),
                                       key=lambda kv: (kv[0][0], "confirmed" not in kv[0][1])):
        _show(out, route, body, times)
        (summary.confirmed if "confirmed" in body else summary.rejected)[route] += times
    _show(out, "/list_products/1", (await client.get("/list_products/1")).text)


async def _seats(client: httpx.AsyncClient, inventory: Inventory, out: TextIO,
                 summary: ReservationSummary, timeout: float) -> None:
    seats = next(r for r in SEED_RESOURCES if r.kind == "seats")
    _show(out, "/available_seats", (await client.get("/available_seats")).text)
    routes = ["/reserve_seat"] * (seats.quantity + EXTRA_REQUESTS)
    for body, times in Counter(await _fan_out(client, routes)).items():
        _show(out, "/reserve_seat", body, times)
    _show(out, "/process", (await client.get("/process")).text)

    async def processed() -> bool:
        return await _queue_drained(inventory.redis)

    await wait_for(processed, timeout=timeout, message="the seat queue to be processed")
    _show(out, "/available_seats", (await client.get("/available_seats")).text)
    _show(out, "/reserve_seat", (await client.get("/reserve_seat")).text)
    left = await inventory.available(seats.resource_id)
    summary.confirmed["/reserve_seat"] = seats.quantity - (left or 0)
    summary.rejected["/reserve_seat"] = len(routes) - summary.confirmed["/reserve_seat"]


async def _queue_drained(redis: aioredis.Redis) -> bool:
    """Has the seat agent's group read and settled every request on the seat queue?"""
    from pipeline.jobs import keys_for_queue

    stream = keys_for_queue(SEAT_QUEUE).stream
    groups: Any = await redis.xinfo_groups(stream)
    return any(g["name"] == b"reservations" and g["pending"] == 0 and g.get("lag") == 0
               for g in groups)


async def _caught_up(redis: aioredis.Redis, wait: Callable[..., Awaitable[Any]],
                     timeout: float) -> None:
    """Wait until the projector has applied the whole ledger."""
    inventory = Inventory(redis)
    keys = inventory.keys

    async def applied() -> bool:
        tip: Any = await redis.xrevrange(keys.stream, count=1)
        checkpoint = await redis.get(keys.checkpoint("inventory"))
        return bool(tip) and checkpoint == tip[0][0]

    await wait(applied, timeout=timeout, message="the projector to apply the whole ledger")


def print_reservation_summary(summary: ReservationSummary, out: TextIO) -> None:
    print(f"{'resource':<10}{'name':<16}{'initial':>8}{'left':>6}{'read model':>12}", file=out)
    for rid, name, initial, left, read in summary.table:
        print(f"{rid:<10}{name:<16}{initial:>8}{left:>6}{read:>12}", file=out)
    print(f"audit: {'OK' if summary.audit_ok else 'DIFFERENCES (run pipeline audit)'}", file=out)
