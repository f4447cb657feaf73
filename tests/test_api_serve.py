"""``pipeline serve`` as a real process on a free port, over loopback: the seed's routes,
state that survives a restart, one seat worker across two server processes, and a taken
port as a one-line error. Nothing sleeps: the tests poll with deadlines."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from pipeline.keys import Keys, job_topic
from pipeline.reservations import SEAT_QUEUE
from pipeline.server import EmbeddedServer
from pipeline.testing import wait_for

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[1]
PIPELINE = Path(sys.executable).parent / "pipeline"
READY = re.compile(r"Serving HTTP on http://127\.0\.0\.1:(\d+) ")


@dataclass
class Served:
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def port(self) -> int | None:
        m = READY.search(self.output())
        return int(m.group(1)) if m else None

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """SIGTERM: a graceful stop."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(30)


class Servers:
    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.redis_url = folder, url
        self.started: list[Served] = []

    def start(self, *args: str) -> Served:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PIPELINE_") and k != "REDIS_URL"}
        env.update(PYTHONUNBUFFERED="1", REDIS_URL=self.redis_url, PIPELINE_LOG_FORMAT="json",
                   PIPELINE_LEASE_MS="1000", PIPELINE_BLOCK_MS="100",
                   PIPELINE_DATA_DIR=str(self.folder / "data"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        log = self.folder / f"serve-{len(self.started) + 1}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen([str(PIPELINE), "serve", *(args or ("--port", "0"))],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        served = Served(popen, log)
        self.started.append(served)
        return served

    async def ready(self, served: Served) -> Served:
        def check() -> bool:
            if served.popen.poll() is not None:
                raise AssertionError(f"serve exited {served.popen.returncode}:\n"
                                     f"{served.output()}")
            return served.port is not None

        await wait_for(check, timeout=30, message="the server's ready line")
        return served

    def close(self) -> None:
        for s in self.started:
            if s.popen.poll() is None:
                s.popen.kill()
                s.popen.wait(10)


@pytest.fixture
def servers(server: EmbeddedServer, tmp_path: Path) -> Iterator[Servers]:
    s = Servers(tmp_path, server.url)
    yield s
    s.close()


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
        assert served.popen.wait(30) == 1
    out = served.output().strip().splitlines()
    assert out[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}: "), out
    assert len([line for line in out if line.startswith("error:")]) == 1
