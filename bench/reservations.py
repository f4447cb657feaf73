"""Reservations: decider, projector and audit throughput against raw redis-py (not a test).

Prints one JSON object. Every figure is measured in the same run, on one embedded server
started in a temporary folder (the ledger is the real one, so never a server given by URL):

- ``agent``: N seat requests queued (``ReservationRequested`` on a bench queue), then the seat
  agent (``agents.reservations``: one ``lua/decide.lua`` call per request, settle per batch)
  drains them. Baseline: one redis-py consumer, XREADGROUP COUNT 1000, one minimal
  decide-and-append Lua call per entry, all of a batch pipelined with its XACK.
  Half the requests find stock, so both outcomes are timed, and oversell is checked.
- ``projector``: the inventory projector folds the ledger (``--fold`` entries) from its
  start. Baseline: XREADGROUP COUNT 1000, ``json.loads`` + one HINCRBY per entry, pipelined
  with the batch's XACK.
- ``audit``: the ledger is filled to ``--ledger`` entries (1,000,000 by default; server-side,
  not timed), then ``pipeline.audit.audit`` folds all of it and compares. Baseline: redis-py
  ``xrange`` pages of 10,000 read and nothing else (the read alone). ``replay`` (the full
  rebuild, pydantic-validated, into shadow keys and swapped) is timed on the same ledger.
- ``http``: a real ``pipeline serve`` subprocess (REDIS_URL: this server) on a free loopback
  port; ``--http-clients`` concurrent httpx clients (a keep-alive connection each) POST
  ``/v1/reservations`` (a fresh ``Idempotency-Key`` each) against a product with
  ``--http-stock`` units, until ``--http`` requests or ``--http-seconds`` elapsed. Reports
  decisions/s, p50/p99 latency, errors, and oversell (confirmed on the ledger <= stock).
  Baseline: as many decisions made with redis-py directly, ``lua/decide.lua`` by EVALSHA, at
  the same concurrency (one call per round trip); ``Inventory.decide`` in-process (calls
  coalesced) is reported beside it.

    python bench/reservations.py                       # about two minutes
    python bench/reservations.py --only http           # about half a minute
    python bench/reservations.py --agent 50000 --ledger 2000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents import reservations as seat_agent
from agents.inventory_projector import agent as projector
from agents.inventory_projector import projection
from pipeline.audit import audit
from pipeline.keys import Keys, job_topic
from pipeline.producer import Outgoing, Producer
from pipeline.replay import read_pages, replay
from pipeline.reservations import SEED_RESOURCES, Inventory, Resource, _common
from pipeline.scripts import source
from pipeline.settings import Settings
from pipeline.testing import start_server
from pipeline.worker import Worker
from schemas.reservations import ReservationRequested

POLL_S = 0.01
BATCH = 1000

RAW_DECIDE = """
local stock = redis.call('HGET', KEYS[2], ARGV[1])
local q = tonumber(ARGV[2])
if stock and tonumber(stock) >= q then
  local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -q)
  return redis.call('XADD', KEYS[1], '*', 'type', 'confirmed', 'id', ARGV[3], 'left', left)
end
return redis.call('XADD', KEYS[1], '*', 'type', 'rejected', 'id', ARGV[3])
"""

#: fill the ledger server-side: ARGV[1] count, ARGV[2] first n, ARGV[3..] resource ids.
#: Every 10th request is rejected; the others confirm 1 and record what is left.
FILL = """
local ledger, stock = KEYS[1], KEYS[2]
local count, first = tonumber(ARGV[1]), tonumber(ARGV[2])
local res = {}
for i = 3, #ARGV do res[#res + 1] = ARGV[i] end
for n = first, first + count - 1 do
  local r = res[(n % #res) + 1]
  local rid = 'fill-' .. n
  local common = '"reservation_id":"' .. rid .. '","resource_id":"' .. r .. '","quantity":1'
  if n % 10 == 9 then
    redis.call('XADD', ledger, '*', 'id', rid .. '/decision', 'type', 'reservation.rejected',
      'v', '1', 'data', '{' .. common .. ',"customer":null,"reason":"not_enough"}')
  else
    local left = redis.call('HINCRBY', stock, r, -1)
    redis.call('XADD', ledger, '*', 'id', rid .. '/decision', 'type', 'reservation.confirmed',
      'v', '1', 'data', '{' .. common .. ',"customer":"c' .. (n % 1000) .. '","remaining":'
      .. left .. '}')
  end
end
return first + count
"""


def settings_for(url: str, args: argparse.Namespace) -> Settings:
    return Settings(redis_url=url, log_level="error", log_format="json",
                    batch_size=BATCH, flush_ms=args.flush_ms)


class Contention:
    """CPU the host spent on anything but this process and the server, as a share of all
    cores, while a block ran: other sessions on a shared machine show up here."""

    def __init__(self, r: aioredis.Redis) -> None:
        self.r = r

    async def _sample(self) -> tuple[float, float, float, float]:
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        mine = sum(psutil.Process().cpu_times()[:2])
        info = await self.r.info("cpu")
        server = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return time.perf_counter(), busy, mine, server

    async def __aenter__(self) -> Self:
        self.start = await self._sample()
        return self

    async def __aexit__(self, *exc: object) -> None:
        end = await self._sample()
        wall, busy, mine, server = (b - a for a, b in zip(self.start, end, strict=True))
        self.share = round(max(0.0, busy - mine - server) / (wall * (os.cpu_count() or 1)), 3)


async def wait_until(check: Any, timeout: float) -> float:
    """Poll ``check`` every POLL_S; returns the seconds until it held."""
    t0 = time.perf_counter()
    while not await check():
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError("timed out")
        await asyncio.sleep(POLL_S)
    return time.perf_counter() - t0


async def group_done(r: aioredis.Redis, stream: str, group: str, n: int) -> bool:
    try:
        groups = await r.xinfo_groups(stream)
    except Exception:  # noqa: BLE001 - no stream or group yet
        return False
    for g in groups:
        if g["name"] in (group, group.encode()):
            return int(g.get("entries-read") or 0) >= n and int(g["pending"]) == 0 \
                and not g.get("lag")
    return False


# --------------------------------------------------------------------------- agent


async def queue_requests(r: aioredis.Redis, queue: str, resource: str, n: int) -> None:
    producer = Producer(r, job_topic(queue))
    for lo in range(0, n, BATCH):
        await producer.publish_many(
            Outgoing(ReservationRequested(reservation_id=f"{queue}:{i}", resource_id=resource,
                                          customer=f"c{i % 1000}"), f"{queue}:{i}")
            for i in range(lo, min(n, lo + BATCH)))


async def bench_agent(r: aioredis.Redis, url: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.agent
    inv = Inventory(r)
    resource = "bench-seats"
    await inv.reset([Resource(resource, "seats", "Bench seats", 0, n // 2)])
    queue = "bench_reserve_seat"
    await queue_requests(r, queue, resource, n)
    agent = seat_agent.agent(queue, echo=None, concurrency=args.concurrency)
    worker = Worker(agent, r, settings_for(url, args))
    await inv.ensure_defined(SEED_RESOURCES)  # what the agent's setup does: not timed
    tip = await r.xrevrange(inv.k.ledger, count=1)
    before = tip[0][0].decode()
    task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    seconds = await wait_until(
        lambda: group_done(r, Keys(job_topic(queue)).stream, agent.group, n), 600)
    worker.stop()
    await task
    outcomes = confirmed = 0
    async for page in read_pages(r, inv.k.ledger, f"({before}", "+"):
        for _, fields in page:
            outcomes += 1
            data = json.loads(fields[7])
            confirmed += fields[3] == b"reservation.confirmed" and data["resource_id"] == resource
    left = await inv.available(resource)

    # the baseline: the same requests, a minimal decide Lua per entry, pipelined per batch
    raw_queue = "bench_raw_seat"
    raw_stock, raw_ledger = "bench:raw:stock", "bench:raw:ledger"
    await r.hset(raw_stock, resource, n // 2)
    await queue_requests(r, raw_queue, resource, n)
    stream = Keys(job_topic(raw_queue)).stream
    await r.xgroup_create(stream, "raw", id="0")
    decide = r.register_script(RAW_DECIDE)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        reply = await r.xreadgroup("raw", "raw-1", {stream: ">"}, count=BATCH, block=100)
        entries = reply[0][1] if reply else []
        if not entries:
            continue
        pipe = r.pipeline(transaction=False)
        for _, fields in entries:
            data = json.loads(fields[b"data"])
            await decide(keys=[raw_ledger, raw_stock],
                         args=[data["resource_id"], data["quantity"], data["reservation_id"]],
                         client=pipe)
        pipe.xack(stream, "raw", *[e[0] for e in entries])
        await pipe.execute()
        done += len(entries)
    raw_seconds = time.perf_counter() - t0
    return {
        "requests": n, "stock": n // 2, "concurrency": args.concurrency,
        "decisions_per_s": round(n / seconds), "seconds": round(seconds, 3),
        "ledger_outcomes": outcomes, "confirmed": confirmed, "left": left,
        "oversold": max(0, confirmed - n // 2),
        "raw_per_s": round(n / raw_seconds),
        "ratio_to_raw": round((n / seconds) / (n / raw_seconds), 3),
    }


# --------------------------------------------------------------------------- projector


async def fill(r: aioredis.Redis, inv: Inventory, upto: int, resources: list[str]) -> int:
    """Append rejected/confirmed outcomes server-side until the ledger holds ``upto``."""
    script = r.register_script(FILL)
    have = int(await r.xlen(inv.k.ledger))
    n = int(await r.incrby("bench:fill:n", 0))
    while have < upto:
        count = min(20_000, upto - have)
        n = int(await script(keys=[inv.k.ledger, inv.k.stock], args=[count, n, *resources]))
        have += count
    await r.set("bench:fill:n", n)
    return have


async def bench_projector(r: aioredis.Redis, url: str, args: argparse.Namespace
                          ) -> dict[str, Any]:
    inv = Inventory(r)
    resources = [f"b{i}" for i in range(1, 5)]
    await inv.reset([Resource(x, "product", f"Bench {x}", 1, 10**9) for x in resources])
    total = await fill(r, inv, args.fold, resources)
    worker = Worker(projector, r, settings_for(url, args))
    task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    seconds = await wait_until(lambda: group_done(r, inv.k.ledger, projection.group, total), 600)
    worker.stop()
    await task

    # the baseline: json.loads + HINCRBY per entry, pipelined with the batch's XACK
    await r.xgroup_create(inv.k.ledger, "raw-fold", id="0")
    t0 = time.perf_counter()
    done = 0
    while done < total:
        reply = await r.xreadgroup("raw-fold", "raw-1", {inv.k.ledger: ">"}, count=BATCH,
                                   block=100)
        entries = reply[0][1] if reply else []
        if not entries:
            continue
        pipe = r.pipeline(transaction=False)
        for _, fields in entries:
            data = json.loads(fields[b"data"])
            if fields[b"type"] == b"reservation.confirmed":
                pipe.hincrby("bench:raw:fold", data["resource_id"], -data["quantity"])
        pipe.xack(inv.k.ledger, "raw-fold", *[e[0] for e in entries])
        await pipe.execute()
        done += len(entries)
    raw_seconds = time.perf_counter() - t0
    report = await audit(r)
    return {
        "entries": total, "folded_per_s": round(total / seconds), "seconds": round(seconds, 3),
        "raw_per_s": round(total / raw_seconds),
        "ratio_to_raw": round((total / seconds) / (total / raw_seconds), 3),
        "audit_ok_after": report.ok,
    }


# --------------------------------------------------------------------------- audit


async def bench_audit(r: aioredis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    inv = Inventory(r)
    resources = [f"b{i}" for i in range(1, 5)]
    await inv.ensure_defined([Resource(x, "product", f"Bench {x}", 1, 10**9) for x in resources])
    t0 = time.perf_counter()
    total = await fill(r, inv, args.ledger, resources)
    fill_s = time.perf_counter() - t0
    memory = (await r.info("memory"))["used_memory"]
    runs, other = [], []
    for _ in range(args.repeat):
        async with Contention(r) as busy:
            report = await audit(r)
        if not report.ok:
            raise RuntimeError(f"audit found differences: {report.differences[:5]}")
        runs.append(report.seconds)
        other.append(busy.share)
    seconds = sorted(runs)[len(runs) // 2]

    # the baseline: redis-py's xrange, pages of 10,000, read and parsed, nothing else
    raw_runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        start, seen = "-", 0
        while True:
            page = await r.xrange(inv.k.ledger, start, "+", count=10_000)
            seen += len(page)
            if len(page) < 10_000:
                break
            start = "(" + page[-1][0].decode()
        raw_runs.append(time.perf_counter() - t0)
    raw_seconds = sorted(raw_runs)[len(raw_runs) // 2]
    assert seen == total

    out: dict[str, Any] = {
        "entries": total, "fill_s": round(fill_s, 1),
        "server_used_memory_mb": round(memory / 2**20),
        "audit_events_per_s": round(total / seconds), "audit_s": round(seconds, 3),
        "audit_runs_s": [round(x, 3) for x in runs],
        "other_cpu_share_per_run": other,
        "raw_xrange_read_per_s": round(total / raw_seconds),
        "ratio_to_raw": round(raw_seconds / seconds, 3),
        "aim_events_per_s": 200_000,
    }
    if not args.no_replay:
        t0 = time.perf_counter()
        result = await replay(r, projection)
        replay_s = time.perf_counter() - t0
        out["replay_events_per_s"] = round(result.entries / replay_s)
        out["replay_s"] = round(replay_s, 2)
        out["audit_ok_after_replay"] = (await audit(r)).ok
    return out


# --------------------------------------------------------------------------- http


def percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def start_api(url: str, folder: Path) -> tuple[asyncio.subprocess.Process, int, Path]:
    """``pipeline serve --port 0`` (a free port, printed on its ready line), on loopback."""
    exe = shutil.which("pipeline", path=str(Path(sys.executable).parent)) or "pipeline"
    log = folder / "serve.log"
    env = {**os.environ, "REDIS_URL": url, "PIPELINE_LOG_LEVEL": "error"}
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            exe, "serve", "--host", "127.0.0.1", "--port", "0", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    except TimeoutError:
        line = ""
    if "Serving HTTP on" not in line:
        await stop_api(proc)
        raise RuntimeError(f"pipeline serve did not start: {line!r}\n{log.read_text()[-2000:]}")
    port = int(line.split("http://127.0.0.1:")[1].split()[0])
    return proc, port, log


async def stop_api(proc: asyncio.subprocess.Process) -> int | None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    return proc.returncode


async def load(n: int, seconds: float, clients: int,
               call: Any) -> tuple[float, list[float], dict[str, int]]:
    """``clients`` coroutines calling ``call(i, k)`` (request i, client k; returns an outcome
    name) until ``n`` calls
    were started or ``seconds`` passed. Returns the wall time, each call's latency, counts."""
    latencies: list[float] = []
    counts: dict[str, int] = {}
    state = {"next": 0}
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        while state["next"] < n and time.perf_counter() < deadline:
            i = state["next"]
            state["next"] += 1
            t = time.perf_counter()
            try:
                outcome = await call(i, k)
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                outcome = f"error:{type(exc).__name__}"
            latencies.append(time.perf_counter() - t)
            counts[outcome] = counts.get(outcome, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return time.perf_counter() - t0, latencies, counts


async def bench_http(r: aioredis.Redis, url: str, folder: Path, args: argparse.Namespace
                     ) -> dict[str, Any]:
    import httpx

    inv = Inventory(r)
    product, raw_product, inv_product = "900001", "900002", "900003"
    stock = args.http_stock
    await inv.reset([Resource(x, "product", f"Bench {x}", 1, stock)
                     for x in (product, raw_product, inv_product)])
    tip = await r.xrevrange(inv.k.ledger, count=1)
    before = tip[0][0].decode()
    proc, port, log = await start_api(url, folder)
    try:
        # one AsyncClient (a pool of one keep-alive connection) per client: a single pool
        # shared by 32 clients costs httpx ~8 ms of CPU per request here (~90/s, the load
        # generator's limit, not the server's); one pool each, ~2.5 ms
        base = f"http://127.0.0.1:{port}"
        https = [httpx.AsyncClient(base_url=base, timeout=30,
                                   limits=httpx.Limits(max_connections=1))
                 for _ in range(args.http_clients)]
        async with contextlib.AsyncExitStack() as stack:
            for h in https:
                await stack.enter_async_context(h)

            async def post(i: int, k: int) -> str:
                resp = await https[k].post(
                    "/v1/reservations", headers={"Idempotency-Key": f"bench-http-{i}"},
                    json={"resource_id": product, "quantity": 1, "customer": f"c{i % 1000}"})
                return {201: "confirmed", 409: "rejected"}.get(resp.status_code,
                                                               f"http:{resp.status_code}")

            # warm-up (connections, the server's first requests): decided, not timed
            _, _, warm = await load(args.http_clients * 4, 10, args.http_clients,
                                    lambda i, k: post(10**9 + i, k))
            async with Contention(r) as busy:
                cpu0 = sum(psutil.Process().cpu_times()[:2])
                seconds, lat, counts = await load(args.http, args.http_seconds,
                                                  args.http_clients, post)
                client_cpu = sum(psutil.Process().cpu_times()[:2]) - cpu0
    finally:
        code = await stop_api(proc)
    n = len(lat)
    errors = sum(v for k, v in counts.items() if k not in ("confirmed", "rejected"))
    confirmed = outcomes = 0
    async for page in read_pages(r, inv.k.ledger, f"({before}", "+"):
        for _, fields in page:
            data = json.loads(fields[7])
            if data["resource_id"] == product:
                outcomes += 1
                confirmed += fields[3] == b"reservation.confirmed"
    left = await inv.available(product)

    # the baseline: as many decisions, lua/decide.lua by EVALSHA from redis-py, same concurrency
    decide = r.register_script(source("decide"))
    await r.script_load(decide.script)

    def raw_call(resource: str, prefix: str) -> Any:
        async def call(i: int, _: int) -> str:
            rid = f"{prefix}-{i}"
            _, text = await r.evalsha(
                decide.sha, 4, inv.k.ledger, inv.k.stock, inv.k.catalog, inv.k.decision(rid),
                resource, 1, f"{rid}/decision", _common(rid, resource, 1, f"c{i % 1000}"))
            return "confirmed" if b'"confirmed"' in text else "rejected"
        return call

    async def inv_call(i: int, _: int) -> str:
        d = await inv.decide(f"bench-inv-{i}", inv_product, 1, f"c{i % 1000}")
        return d.status

    await load(args.http_clients * 4, 10, args.http_clients, raw_call(raw_product, "warm-raw"))
    raw_seconds, raw_lat, raw_counts = await load(n, 600, args.http_clients,
                                                  raw_call(raw_product, "bench-raw"))
    await load(args.http_clients * 4, 10, args.http_clients,
               lambda i, _: inv.decide(f"warm-inv-{i}", inv_product, 1, None))
    inv_seconds, inv_lat, inv_counts = await load(n, 600, args.http_clients, inv_call)
    ours, raw = n / seconds, n / raw_seconds
    return {
        "requests": n, "route": "POST /v1/reservations", "stock": stock,
        "clients": args.http_clients, "bounded_by": {"requests": args.http,
                                                     "seconds": args.http_seconds},
        "warmup_requests": sum(warm.values()),
        "decisions_per_s": round(ours), "seconds": round(seconds, 3),
        "p50_ms": percentile_ms(lat, 0.50), "p99_ms": percentile_ms(lat, 0.99),
        "outcomes": counts, "errors": errors,
        "ledger_outcomes": outcomes, "ledger_confirmed": confirmed, "left": left,
        "oversold": max(0, confirmed - stock), "stock_consistent": left == stock - confirmed,
        "load_generator_cpu_share": round(client_cpu / seconds, 3),
        "other_cpu_share": busy.share,
        "server_exit_code": code,
        "raw_evalsha_per_s": round(raw), "raw_p50_ms": percentile_ms(raw_lat, 0.50),
        "raw_p99_ms": percentile_ms(raw_lat, 0.99), "raw_outcomes": raw_counts,
        "ratio_to_raw": round(ours / raw, 3),
        "inventory_decide_per_s": round(n / inv_seconds),
        "inventory_decide_p50_ms": percentile_ms(inv_lat, 0.50),
        "inventory_decide_p99_ms": percentile_ms(inv_lat, 0.99),
        "inventory_decide_outcomes": inv_counts,
        "serve_log_tail": log.read_text()[-500:] or None,
    }


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-reservations-"))
    server = start_server(folder / "redis")
    r = aioredis.Redis.from_url(server.url, socket_timeout=120)
    try:
        version = (await r.info("server")).get("valkey_version") or \
            (await r.info("server")).get("redis_version")
        result: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "server": f"valkey {version} (embedded, unix socket)",
                        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        }
        if "agent" in args.only:
            result["agent"] = await bench_agent(r, server.url, args)
        if "projector" in args.only:
            result["projector"] = await bench_projector(r, server.url, args)
        if "audit" in args.only:
            result["audit"] = await bench_audit(r, args)
        if "http" in args.only:
            result["http"] = await bench_http(r, server.url, folder, args)
        return result
    finally:
        await r.aclose()
        server.stop()


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", type=int, default=20_000, help="seat requests for the agent")
    p.add_argument("--concurrency", type=int, default=seat_agent.CONCURRENCY)
    p.add_argument("--fold", type=int, default=200_000, help="ledger entries to project")
    p.add_argument("--ledger", type=int, default=1_000_000, help="ledger entries to audit")
    p.add_argument("--repeat", type=int, default=3, help="audit runs (median)")
    p.add_argument("--flush-ms", type=float, default=2.0)
    p.add_argument("--no-replay", action="store_true", help="skip timing the full replay")
    p.add_argument("--http", type=int, default=20_000, help="HTTP reservations (at most)")
    p.add_argument("--http-seconds", type=float, default=20.0, help="HTTP load time (at most)")
    p.add_argument("--http-clients", type=int, default=32, help="concurrent HTTP clients")
    p.add_argument("--http-stock", type=int, default=1_000_000, help="units of the product")
    p.add_argument("--only", nargs="+", default=["agent", "projector", "audit", "http"],
                   choices=["agent", "projector", "audit", "http"])
    return p.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse())), indent=2))
