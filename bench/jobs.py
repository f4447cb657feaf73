"""Throughput and memory of the job path, against a raw redis-py Streams baseline (not a test).

Prints one JSON object. Every scenario runs on the same server, in the same invocation:

- ``raw``: pipelined XADD (1,000 per round trip), then one consumer in its own process:
  XREADGROUP COUNT 1000 + one XACK per batch (asyncio redis-py with hiredis). The floor.
- ``minimal``: ``Producer.publish_many`` (idempotent produce) of a small registered event, then
  one ``Worker`` process running an ``Agent`` whose handler does nothing. Every delivery rule
  stays on (fenced Lua settle, heartbeat, reclaim loop, promoter).
- ``notifications``: ``JobQueue.create`` (job records + lifecycle events) and
  ``agents.notifications.agent`` with a ``NullSender`` (progress 0/50, records, events).

Drain time runs from the moment the parent tells the (already imported and connected) worker
process to start until the group shows 0 pending and 0 lag (polled every 20 ms with XINFO
GROUPS); the parent samples the worker's RSS with psutil at the same pace.

    python bench/jobs.py                   # all scenarios, N=200,000 (3-4 minutes on 2 cores)
    python bench/jobs.py --repeat 3        # medians of 3
    python bench/jobs.py --backlog-rss     # 1,000,000-entry backlog, RSS samples per 10 %
    python bench/jobs.py --scenario minimal --profile /tmp/prof   # cProfile the worker
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import redis
import redis.asyncio as aioredis
from pydantic import Field

from pipeline.keys import Keys, job_topic
from schemas.base import EventModel, register

PHONE = "4153518743"
MESSAGE = "This is the code 4321 to verify your account"
POLL_S = 0.02
PRODUCE_BATCH = 1000
MB = 1024 * 1024


@register
class BenchPing(EventModel):
    """The minimal scenario's event: the PEERS.md notification payload plus a sequence number."""

    EVENT_TYPE = "bench.ping"
    seq: int
    phone_number: str = Field(alias="phoneNumber")
    message: str


# --------------------------------------------------------------------------- names


def names(scenario: str, run: str) -> dict[str, str]:
    """Stream, group and topic/queue of one scenario run (unique per run: no FLUSHALL needed
    on a server given by URL)."""
    if scenario == "raw":
        keys = Keys(f"bench.raw.{run}")
        return {"stream": keys.stream, "group": "bench", "base": keys.base}
    if scenario == "minimal":
        keys = Keys(f"bench.minimal.{run}")
        return {"stream": keys.stream, "group": "bench-minimal", "base": keys.base,
                "topic": keys.topic}
    queue = f"bench_notifications_{run}"
    keys = Keys(job_topic(queue))
    return {"stream": keys.stream, "group": "notifications", "base": keys.base, "queue": queue}


# --------------------------------------------------------------------------- produce


async def produce(scenario: str, url: str, n: int, where: dict[str, str]) -> float:
    """Append ``n`` entries; returns seconds. Model/JSON building is inside the timing."""
    r = aioredis.Redis.from_url(url, socket_timeout=60)
    try:
        start = time.perf_counter()
        if scenario == "raw":
            for lo in range(0, n, PRODUCE_BATCH):
                pipe = r.pipeline(transaction=False)
                for seq in range(lo, min(n, lo + PRODUCE_BATCH)):
                    data = json.dumps({"seq": seq, "phoneNumber": PHONE, "message": MESSAGE})
                    pipe.xadd(where["stream"], {"id": str(uuid.uuid4()), "type": "bench.ping",
                                                "v": "1", "data": data})
                await pipe.execute()
        elif scenario == "minimal":
            from pipeline.codec import uuid7
            from pipeline.producer import Outgoing, Producer

            producer = Producer(r, where["topic"])
            for lo in range(0, n, PRODUCE_BATCH):
                await producer.publish_many(
                    Outgoing(BenchPing(seq=seq, phone_number=PHONE, message=MESSAGE), uuid7())
                    for seq in range(lo, min(n, lo + PRODUCE_BATCH))
                )
        else:
            from pipeline.jobs import JobQueue
            from schemas.jobs import PushNotification

            queue = JobQueue(r, where["queue"])
            for lo in range(0, n, PRODUCE_BATCH):
                await queue.create([
                    PushNotification(phone_number=PHONE, message=MESSAGE)
                    for _ in range(lo, min(n, lo + PRODUCE_BATCH))
                ])
        return time.perf_counter() - start
    finally:
        await r.aclose()


# --------------------------------------------------------------------------- worker process


class Counted:
    """Counts what the worker's client sends (commands and network writes), by patching
    redis-py's connection class in the worker process only."""

    commands = 0
    writes = 0

    @classmethod
    def install(cls) -> None:
        from redis.asyncio.connection import AbstractConnection

        pack, send = AbstractConnection.pack_command, AbstractConnection.send_packed_command

        def pack_command(self: Any, *args: Any) -> Any:
            cls.commands += 1
            return pack(self, *args)

        async def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> Any:
            cls.writes += 1
            return await send(self, *args, **kwargs)

        AbstractConnection.pack_command = pack_command  # type: ignore[method-assign]
        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]


async def child(spec: dict[str, Any]) -> None:
    """The worker process: get ready, wait for 'go', drain, wait for 'stop', report."""
    from pipeline.connection import client
    from pipeline.logging import configure
    from pipeline.settings import Settings
    from pipeline.worker import Worker

    configure("json", spec["log_level"], sys.stderr)
    Counted.install()
    loop = asyncio.get_running_loop()

    async def line() -> str:
        return (await loop.run_in_executor(None, sys.stdin.readline)).strip()

    scenario, where = spec["scenario"], spec["where"]
    settings = Settings(redis_url=spec["url"], concurrency=spec["concurrency"],
                        batch_size=spec["batch"], prefetch=spec["prefetch"],
                        flush_ms=spec["flush_ms"], log_level=spec["log_level"])
    r = client(spec["url"], settings, client_name=f"bench-{scenario}")
    await r.ping()
    worker: Worker | None = None
    if scenario == "minimal":
        from pipeline.agent import Agent

        async def nothing(event: EventModel, ctx: Any) -> None:
            return None

        agent = Agent(name="bench-minimal", topic=where["topic"], handler=nothing)
        worker = Worker(agent, r, settings)
    elif scenario == "notifications":
        from agents.notifications import agent as notifications_agent
        from agents.senders import NullSender
        from pipeline.keys import job_topic as topic_of

        agent = notifications_agent(where["queue"], sender=NullSender(),
                                    concurrency=spec["concurrency"])
        assert agent.topic == topic_of(where["queue"])
        worker = Worker(agent, r, settings)

    profiler = None
    if spec.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
    print("ready", flush=True)
    assert await line() == "go"
    c0, w0 = Counted.commands, Counted.writes
    t0 = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    timing: dict[str, float] = {}
    if worker is not None:
        task = asyncio.create_task(worker.run())
    else:
        task = asyncio.create_task(raw_consumer(r, where, spec["n"], spec["batch"], t0, timing))
    assert await line() == "stop"
    c1, w1 = Counted.commands, Counted.writes
    if worker is not None:
        worker.stop()
    stats = await task
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(spec["profile"])
    await r.aclose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        # the counts (the latency histogram is the worker's, for /metrics; not reported here)
        "stats": ({k: v for k, v in vars(stats).items() if isinstance(v, int)}
                  if worker is not None else stats),
        "client_commands": c1 - c0, "client_writes": w1 - w0,
        "maxrss_mb": usage.ru_maxrss / 1024, **timing,
    }), flush=True)


async def raw_consumer(r: aioredis.Redis, where: dict[str, str], n: int, batch: int,
                       t0: float, timing: dict[str, float]) -> dict[str, int]:
    """The baseline: XREADGROUP COUNT ``batch``, one XACK per batch, nothing else."""
    stream, group = where["stream"], where["group"]
    try:
        await r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    acked = 0
    while acked < n:
        reply = await r.xreadgroup(group, "raw-1", {stream: ">"}, count=batch, block=100)
        entries = _entries(reply, stream)
        if not entries:
            continue
        await r.xack(stream, group, *[e[0] for e in entries])
        acked += len(entries)
    timing["child_drain_s"] = time.perf_counter() - t0
    return {"acked": acked}


def _entries(reply: Any, stream: str) -> list[Any]:
    """XREADGROUP's entries (redis-py parses both protocols into [[stream, entries]])."""
    return reply[0][1] if reply else []


# --------------------------------------------------------------------------- drain (parent)


def group_state(r: redis.Redis, stream: str, group: str) -> tuple[int, int | None, int]:
    """(entries read, lag, pending) of the group; (0, None, 0) while it does not exist."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:
        return 0, None, 0
    for g in groups:
        if _text(g["name"]) == group:
            return int(g.get("entries-read") or 0), g.get("lag"), int(g["pending"])
    return 0, None, 0


def commandstats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    """command -> (calls, usec). A script's usec includes the commands it ran."""
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in r.info("commandstats").items()}


def host_busy() -> float:
    """CPU seconds all cores of this host have been busy (not idle, not waiting on I/O)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) \
        - getattr(t, "guest_nice", 0.0)


def server_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drain(scenario: str, url: str, n: int, where: dict[str, str], args: argparse.Namespace,
          workdir: Path, samples_every: float | None = None) -> dict[str, Any]:
    """Run one worker process over the backlog; time it, sample its RSS, count commands."""
    spec = {"scenario": scenario, "url": url, "n": n, "where": where,
            "concurrency": args.concurrency, "batch": args.batch, "prefetch": args.prefetch,
            "flush_ms": args.flush_ms, "log_level": args.log_level,
            "profile": str(Path(args.profile) / f"{scenario}.pstats") if args.profile else None}
    log = open(workdir / f"worker-{scenario}.log", "ab")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    r = redis.Redis.from_url(url, socket_timeout=30)
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"worker did not start; see {log.name}")
        ps = psutil.Process(proc.pid)
        rss_ready = ps.memory_info().rss
        before, cpu_srv0, cpu_w0 = commandstats(r), server_cpu(r), sum(ps.cpu_times()[:2])
        busy0, mine0 = host_busy(), sum(psutil.Process().cpu_times()[:2])
        polls = 0
        proc.stdin.write("go\n")
        proc.stdin.flush()
        t0 = time.perf_counter()
        rss: list[float] = []
        marks: dict[str, float] = {}
        progress_at: list[tuple[float, int]] = []
        steps: list[list[float]] = []
        next_step = 0.0
        deadline = t0 + args.timeout
        while True:
            read, lag, pending = group_state(r, where["stream"], where["group"])
            polls += 1
            now = time.perf_counter()
            done = read - pending
            rss.append(ps.memory_info().rss / MB)
            progress_at.append((now - t0, done))
            if "mid" not in marks and done >= n / 2:
                marks["mid"] = rss[-1]
            if samples_every is not None and done >= next_step * n:
                steps.append([round(100 * done / n, 1), round(now - t0, 2), round(rss[-1], 1)])
                next_step = done / n + samples_every
            if lag == 0 and pending == 0 and read >= n:
                elapsed = now - t0
                if samples_every is not None and (not steps or steps[-1][0] < 100):
                    steps.append([100.0, round(elapsed, 2), round(rss[-1], 1)])
                break
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited early; see {log.name}")
            if now > deadline:
                raise RuntimeError(f"drain not finished in {args.timeout}s ({done}/{n}); "
                                   f"see {log.name}")
            time.sleep(POLL_S)
        after, cpu_srv1, cpu_w1 = commandstats(r), server_cpu(r), sum(ps.cpu_times()[:2])
        busy1, mine1 = host_busy(), sum(psutil.Process().cpu_times()[:2])
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        report = json.loads(proc.stdout.readline())
        proc.wait(timeout=60)
    finally:
        r.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    delta = {k: after[k][0] - before.get(k, (0, 0))[0] for k in after}
    usec = {k: after[k][1] - before.get(k, (0, 0))[1] for k in after}
    delta["xinfo|groups"] = delta.get("xinfo|groups", 0) - polls
    for own in ("info", "xinfo|groups"):  # the parent's polling
        usec.pop(own, None)
    delta.pop("info", None)
    delta = {k: v for k, v in delta.items() if v > 0}
    total = sum(delta.values())
    top = sorted(delta.items(), key=lambda kv: -kv[1])[:8]
    top_usec = sorted(((k, v) for k, v in usec.items() if v > 0), key=lambda kv: -kv[1])[:4]
    result: dict[str, Any] = {
        "drain_s": round(elapsed, 3),
        "drain_per_s": round(n / elapsed),
        "steady_drain_per_s": _steady(progress_at, n),
        "worker_peak_rss_mb": round(max(rss), 1),
        "worker_rss_mb": {"ready": round(rss_ready / MB, 1), "start": round(rss[0], 1),
                          "middle": round(marks.get("mid", rss[-1]), 1), "end": round(rss[-1], 1)},
        "worker_maxrss_mb_getrusage": round(report["maxrss_mb"], 1),
        "worker_cpu_s": round(cpu_w1 - cpu_w0, 2),
        "server_cpu_s": round(cpu_srv1 - cpu_srv0, 2),
        # CPU the host spent on anything but this worker, the server and this parent while
        # draining, as a share of all cores: other sessions on a shared machine show up here
        "other_cpu_share": round(max(0.0, (busy1 - busy0) - (cpu_w1 - cpu_w0)
                                     - (cpu_srv1 - cpu_srv0) - (mine1 - mine0))
                                 / (elapsed * (os.cpu_count() or 1)), 3),
        "server_commands_per_job": round(total / n, 3),
        "server_commands_per_job_by_command": {k: round(v / n, 3) for k, v in top},
        "server_usec_per_job_by_command": {k: round(v / n, 2) for k, v in top_usec},
        "client_commands_per_job": round(report["client_commands"] / n, 4),
        "client_round_trips_per_job": round(report["client_writes"] / n, 4),
        "worker_stats": report["stats"],
    }
    if "child_drain_s" in report:
        result["raw_consumer_own_drain_s"] = round(report["child_drain_s"], 3)
    if steps:
        result["rss_samples_pct_s_mb"] = steps
    return result


def _steady(progress: list[tuple[float, int]], n: int) -> int | None:
    """Rate between 10 % and 90 % done: the drain without start-up and tail."""
    lo = next((p for p in progress if p[1] >= 0.1 * n), None)
    hi = next((p for p in progress if p[1] >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return round((hi[1] - lo[1]) / (hi[0] - lo[0]))


# --------------------------------------------------------------------------- checks and runs


def check(scenario: str, r: redis.Redis, where: dict[str, str], n: int,
          result: dict[str, Any]) -> None:
    """Refuse to report figures of a run that did not do the work."""
    stats = result["worker_stats"]
    if stats.get("acked") != n:
        raise RuntimeError(f"{scenario}: acked {stats.get('acked')} of {n}: {stats}")
    if scenario == "notifications":
        keys = Keys(job_topic(where["queue"]))
        pipe = r.pipeline(transaction=False)
        step = max(1, n // 200)
        for k in range(1, n + 1, step):
            pipe.hget(keys.job(f"{where['queue']}:{k}"), "state")
        states = {_text(s) for s in pipe.execute()}
        if states != {"completed"}:
            raise RuntimeError(f"notifications: sampled job states {states}")
        result["events_stream_len"] = r.xlen(keys.events)


def cleanup(r: redis.Redis, where: dict[str, str], embedded: bool) -> None:
    if embedded:
        r.flushall()
        return
    pattern = where["base"].replace("[", "\\[").replace("]", "\\]") + ":*"
    batch: list[bytes] = []
    for key in r.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch.clear()
    if batch:
        r.unlink(*batch)


def run_once(scenario: str, url: str, n: int, args: argparse.Namespace, workdir: Path,
             embedded: bool, run: str, samples_every: float | None = None) -> dict[str, Any]:
    where = names(scenario, run)
    r = redis.Redis.from_url(url, socket_timeout=60)
    try:
        produce_s = asyncio.run(produce(scenario, url, n, where))
        result = {"produce_s": round(produce_s, 3), "produce_per_s": round(n / produce_s)}
        result.update(drain(scenario, url, n, where, args, workdir, samples_every))
        check(scenario, r, where, n, result)
        return result
    finally:
        cleanup(r, where, embedded)
        r.close()


def median_of(runs: list[dict[str, Any]], *, top: bool = True) -> dict[str, Any]:
    """The median of every number across runs (nested dicts too); the rest from the first.
    At the top, each rate's per-run values are kept too, to show the spread."""
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if isinstance(value, bool) or not all(isinstance(v, int | float) for v in values):
            out[key] = median_of(values, top=False) if isinstance(value, dict) else value
        else:
            out[key] = statistics.median(values)  # type: ignore[type-var]
    if top:
        out["runs"] = len(runs)
        for key in ("produce_per_s", "drain_per_s", "worker_peak_rss_mb"):
            out[f"{key}_each_run"] = [run.get(key) for run in runs]
    return out


def ratios(results: dict[str, Any]) -> None:
    raw = results.get("raw")
    if raw is None:
        return
    for name, figures in results.items():
        if name == "raw":
            continue
        figures["ratio_to_raw"] = {
            key: round(figures[key] / raw[key], 3)
            for key in ("produce_per_s", "drain_per_s", "steady_drain_per_s",
                        "worker_peak_rss_mb")
            if figures.get(key) and raw.get(key)
        }


PEER_BEST_DRAIN = 1_250  # PEERS.md: taskiq/dramatiq/faststream, ~1,219-1,245 drain jobs/s


def aims(results: dict[str, Any]) -> dict[str, Any]:
    """The targets of DESIGN.md/PEERS.md, read off this run's figures."""
    out: dict[str, Any] = {}
    minimal, notes = results.get("minimal"), results.get("notifications")
    if minimal is not None:
        ratio = minimal.get("ratio_to_raw", {}).get("drain_per_s")
        if ratio is not None:
            out["minimal_drain_at_least_half_of_raw"] = {"ratio": ratio, "met": ratio >= 0.5}
        out["minimal_drain_at_least_50000_per_s"] = {
            "drain_per_s": minimal["drain_per_s"], "met": minimal["drain_per_s"] >= 50_000}
    if notes is not None:
        times = round(notes["drain_per_s"] / PEER_BEST_DRAIN, 2)
        out["notifications_vs_best_peer_1250_per_s"] = {
            "times": times, "met_10x": times >= 10}
    return out


def code_revision() -> dict[str, str]:
    """Which pipeline code ran: its folder, and its git revision (``-dirty`` with uncommitted
    changes under pipeline/, agents/ or schemas/) or the REVISION file of an exported tree."""
    import pipeline

    root = Path(pipeline.__file__).resolve().parent.parent
    out = {"source": str(root)}
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                                "pipeline", "agents", "schemas"],
                               capture_output=True, text=True, check=True).stdout.strip()
        out["revision"] = rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        revision = root / "REVISION"
        out["revision"] = revision.read_text().strip() if revision.exists() else "unknown"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="entries per scenario")
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario; medians reported")
    p.add_argument("--scenario", choices=["raw", "minimal", "notifications", "all"],
                   default=None, help="default: all (minimal only with --backlog-rss)")
    p.add_argument("--backlog-rss", action="store_true",
                   help="drain a 1,000,000-entry backlog and report RSS every 10 %%")
    p.add_argument("--redis-url", default=None, help="use this server instead of an embedded one")
    p.add_argument("--concurrency", type=int, default=200, help="handler slots (ours)")
    p.add_argument("--batch", type=int, default=1000, help="read/settle batch size (all)")
    p.add_argument("--prefetch", type=int, default=2000, help="entries held at most (ours)")
    p.add_argument("--flush-ms", type=float, default=2.0, help="settle flush pause (ours)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--timeout", type=float, default=600, help="seconds per drain at most")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="cProfile each worker process into DIR/<scenario>.pstats (slows it)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        asyncio.run(child(json.loads(args.child)))
        return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)

    if args.backlog_rss:
        scenarios = [args.scenario] if args.scenario not in (None, "all") else ["minimal"]
        if args.scenario == "all":
            scenarios = ["raw", "minimal", "notifications"]
        n = 1_000_000 if args.n == 200_000 else args.n
    else:
        scenario = args.scenario or "all"
        scenarios = ["raw", "minimal", "notifications"] if scenario == "all" else [scenario]
        n = args.n

    load_at_start = os.getloadavg()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-jobs-")))
        if args.redis_url:
            url, embedded = args.redis_url, False
        else:
            from pipeline.server import EmbeddedServer

            server = stack.enter_context(EmbeddedServer(workdir / "data", appendfsync="everysec"))
            url, embedded = server.url, True
        r = redis.Redis.from_url(url)
        info = r.info("server")
        r.close()
        results: dict[str, Any] = {}
        for name in scenarios:
            runs = [
                run_once(name, url, n, args, workdir, embedded,
                         f"r{os.getpid()}x{k}", 0.1 if args.backlog_rss else None)
                for k in range(args.repeat)
            ]
            results[name] = median_of(runs)
            print(f"# {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
        ratios(results)
        out = {
            "benchmark": "backlog_rss" if args.backlog_rss else "jobs",
            "parameters": {
                "n": n, "repeat": args.repeat, "concurrency": args.concurrency,
                "batch": args.batch, "prefetch": args.prefetch, "flush_ms": args.flush_ms,
                "produce_batch": PRODUCE_BATCH, "poll_ms": POLL_S * 1000,
                "log_level": args.log_level,
                "server": f"{'valkey' if 'valkey_version' in info else 'redis'} "
                          f"{info.get('valkey_version', info.get('redis_version'))}",
                "server_mode": "embedded unix socket, appendonly yes, appendfsync everysec"
                               if embedded else "given by --redis-url",
                "cpus": os.cpu_count(), "python": sys.version.split()[0],
                "redis_py": redis.__version__,
                "hiredis": bool(redis.utils.HIREDIS_AVAILABLE),
                "profiled": bool(args.profile),
                "code": code_revision(),
                "load_average_at_start": [round(x, 2) for x in load_at_start],
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            },
            "scenarios": results,
            "aims": aims(results),
        }
        print(json.dumps(out, indent=2))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


if __name__ == "__main__":
    main()
