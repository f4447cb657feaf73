"""``pipeline serve`` as a real process on a free port, over loopback: the seed's routes,
state that survives a restart, one seat worker across two server processes, and a taken
port as a one-line error. Nothing sleeps: the tests poll with deadlines."""

from __future__ import annotations

import socket

import httpx
import pytest
import redis.asyncio as aioredis

from pipeline.keys import Keys, job_topic
from pipeline.reservations import SEAT_QUEUE
from pipeline.testing import wait_for
from tests.processes import Servers

pytestmark = pytest.mark.timeout(90)


async def body(url: str) -> bytes:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    return r.content


async def test_the_real_server_answers_over_loopback_and_a_restart_keeps_state(
        servers: Servers) -> None:
    first = await servers.ready(servers.start())
    assert await body(f"{first.url}/reserve_product/1") == (
        b'{"status":"Reservation confirmed","itemId":1}')
    assert await body(f"{first.url}/reserve_product/1abc") == b'{"status":"Product not found"}'
    assert first.stop() == 0, first.output()

    second = await servers.ready(servers.start())
    assert await body(f"{second.url}/list_products/1") == (
        b'{"itemId":1,"itemName":"Suitcase 250","price":50,'
        b'"initialAvailableQuantity":4,"currentQuantity":3}')
    assert await body(f"{second.url}/available_seats") == b'{"numberOfAvailableSeats":"50"}'
    assert second.stop() == 0, second.output()


async def test_two_server_processes_run_one_seat_worker_between_them(
        servers: Servers, redis: aioredis.Redis) -> None:
    a = await servers.ready(servers.start())
    b = await servers.ready(servers.start())
    for s in (a, b, a):
        assert await body(f"{s.url}/reserve_seat") == b'{"status":"Reservation in process"}'
    for s in (a, b, a, b):
        assert await body(f"{s.url}/process") == b'{"status":"Queue processing"}'

    async def seats_left() -> bool:
        return await body(f"{b.url}/available_seats") == b'{"numberOfAvailableSeats":"47"}'

    await wait_for(seats_left, timeout=30, message="three seats reserved")
    stream = Keys(job_topic(SEAT_QUEUE), 0).stream
    consumers = [c for g in await redis.xinfo_groups(stream)
                 for c in await redis.xinfo_consumers(stream, g["name"])]
    assert len(consumers) == 1, consumers
    lines = a.output() + b.output()
    for n in (1, 2, 3):
        assert lines.count(f"Seat reservation job {SEAT_QUEUE}:{n} completed\n") == 1, lines
    assert a.stop() == 0 and b.stop() == 0


async def test_a_taken_port_is_a_one_line_error(servers: Servers) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = servers.start("--port", str(port))
        assert served.popen.wait(30) == 2
    out = served.output().strip().splitlines()
    assert out[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}: "), out
    assert len([line for line in out if line.startswith("error:")]) == 1


@pytest.mark.parametrize("spec, message", [
    ("nosuch", "error: --seat-agent: cannot import agent module 'nosuch'"),
    ("agents.notifications", "error: --seat-agent agents.notifications consumes "
                             "jobs:push_notification_code_2, not the seat queue"),
])
async def test_a_seat_agent_that_cannot_serve_is_refused_at_start(servers: Servers, spec: str,
                                                                  message: str) -> None:
    served = servers.start("--port", "0", "--seat-agent", spec)
    assert served.popen.wait(30) == 2
    out = served.output().strip().splitlines()
    assert len(out) == 1 and out[0].startswith(message), out
