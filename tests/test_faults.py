"""Fault tests: real worker processes killed with SIGKILL, a poison entry that kills every
worker, the server itself killed and restarted, consumers renamed, graceful SIGTERM, and the
leases of long jobs (heartbeat), also while a worker drains.

Workers run as ``pipeline worker tests.fault_agents:agent`` subprocesses; each one's output
goes to a file in the test's tmp folder and is printed when an assertion fails. Nothing is
waited for by sleeping: the handlers leave markers in Redis (``runs:<n>``) and the tests poll
Redis with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pipeline.agent import Context
from pipeline.producer import Outgoing, Producer
from pipeline.scripts import Scripts
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from schemas.base import EventModel
from tests.fault_agents import GROUP, KEYS, TOPIC, FaultTask, done_key, handle, runs_key
from tests.fault_agents import agent as fault_agent
from tests.processes import Proc, Procs

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = Path(sys.executable).parent / "pipeline"
AGENT_SPEC = "tests.fault_agents:agent"

#: settings of every worker subprocess (as PIPELINE_* variables); a test overrides some
WORKER_SETTINGS: dict[str, object] = {
    "lease_ms": 500,
    "block_ms": 100,
    "promote_interval_ms": 20,
    "backoff_base_ms": 20,
    "backoff_max_ms": 200,
    "shutdown_deadline_s": 10,
    "socket_timeout": 5,
    "log_format": "json",
    "log_level": "info",
}


# ---------------------------------------------------------------------- worker processes


WorkerProcess = Proc


class Workers(Procs):
    """``pipeline worker tests.fault_agents:agent`` subprocesses against one server."""

    settings = WORKER_SETTINGS

    def start(
        self,
        consumer: str | None = None,
        *,
        concurrency: int = 1,
        hold: bool = False,
        trace: Path | None = None,
        **settings: object,
    ) -> WorkerProcess:
        """A worker of ``tests.fault_agents:agent``; ``hold``: its handlers block until killed;
        ``trace``: a file its handlers append their task number to when they finish."""
        extra = {"FAULT_HOLD": "1" if hold else ""}
        if trace is not None:
            extra["FAULT_TRACE"] = str(trace)
        args = ["--concurrency", str(concurrency)]
        if consumer is not None:
            args += ["--consumer", consumer]
        return self.worker(AGENT_SPEC, *args, env=extra, **settings)


@pytest.fixture
def workers(server: EmbeddedServer, tmp_path: Path) -> Iterator[Workers]:
    with Workers(tmp_path, server.url) as ws:
        yield ws


async def eventually(
    check: Callable[[], Awaitable[Any]],
    workers: Workers,
    message: str,
    *,
    timeout: float = 20.0,
    alive: Sequence[WorkerProcess] = (),
) -> Any:
    """Poll ``check`` until truthy; fail with every worker's output on timeout, or at once
    when one of ``alive`` exits meanwhile."""

    async def probe() -> Any:
        for w in alive:
            if not w.alive:
                raise AssertionError(
                    f"{w.name} exited ({w.popen.returncode}) while waiting for {message}\n"
                    f"{workers.report()}"
                )
        return await check()

    try:
        return await wait_for(probe, timeout=timeout, interval=0.02, message=message)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{workers.report()}") from None


async def wait_exit(worker: WorkerProcess, workers: Workers, timeout: float = 20.0) -> int:
    await eventually(lambda: _async(not worker.alive), workers, f"{worker.name} to exit",
                     timeout=timeout)
    code = worker.popen.returncode
    assert code is not None
    return code


async def _async(value: Any) -> Any:
    return value


# ---------------------------------------------------------------------- redis probes


async def produce(redis: aioredis.Redis, tasks: Sequence[FaultTask]) -> list[str]:
    produced = await Producer(redis, TOPIC).publish_many(
        Outgoing(t, f"task-{t.n}") for t in tasks
    )
    return [p.entry_id for p in produced]


async def counts(redis: aioredis.Redis, key: Callable[[int], str], ns: Sequence[int]
                 ) -> dict[int, int]:
    values = await redis.mget([key(n) for n in ns])
    return {n: int(v or 0) for n, v in zip(ns, values, strict=True)}


async def pending(redis: aioredis.Redis) -> int:
    return int((await redis.xpending(KEYS.stream, GROUP))["pending"])


async def pending_by_consumer(redis: aioredis.Redis) -> dict[str, int]:
    summary = await redis.xpending(KEYS.stream, GROUP)
    return {_text(c["name"]): int(c["pending"]) for c in summary["consumers"]}


async def consumer_names(redis: aioredis.Redis) -> set[str]:
    return {_text(c["name"]) for c in await redis.xinfo_consumers(KEYS.stream, GROUP)}


async def dead_letters(redis: aioredis.Redis) -> list[dict[str, str]]:
    rows = await redis.xrange(KEYS.dead)
    return [{_text(k): _text(v) for k, v in fields.items()} for _, fields in rows]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- 1. SIGKILL mid-job


@pytest.mark.timeout(60)
async def test_a_job_of_a_worker_killed_mid_run_is_reclaimed_and_done_exactly_once(
    redis: aioredis.Redis, workers: Workers
) -> None:
    # Rule 4 (XAUTOCLAIM of entries idle longer than the lease): without it the entry stays
    # pending with the dead consumer forever and the wait for B below times out.
    # Rule 2 (ack only after the handler succeeds, with its effects in the same step): had A
    # acked on receipt, B would never see the entry; the handler started twice (A, then B)
    # and the side effect happened exactly once.
    await produce(redis, [FaultTask(n=1)])
    a = workers.start(hold=True)
    await eventually(lambda: _all(counts(redis, runs_key, [1]), lambda c: c[1] >= 1),
                     workers, "A to start the job", alive=[a])
    assert sum((await pending_by_consumer(redis)).values()) == 1

    a.kill()
    b = workers.start()
    await eventually(
        lambda: _all(counts(redis, done_key, [1]), lambda c: c[1] >= 1),
        workers, "B to complete the reclaimed job", alive=[b],
    )
    await eventually(lambda: _async_eq(pending(redis), 0), workers, "the entry to be acked")

    report = workers.report()
    assert await counts(redis, done_key, [1]) == {1: 1}, report
    assert await counts(redis, runs_key, [1]) == {1: 2}, report  # A's start and B's run
    assert await pending(redis) == 0, report
    assert await dead_letters(redis) == [], report
    b.terminate()
    assert await wait_exit(b, workers) == 0, workers.report()


async def _all(values: Awaitable[dict[int, int]], ok: Callable[[dict[int, int]], bool]) -> bool:
    return ok(await values)


async def _async_eq(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


# ---------------------------------------------------------------------- 2. poison entry


@pytest.mark.timeout(90)
async def test_a_poison_entry_that_kills_every_worker_is_dead_lettered_after_max_deliveries(
    redis: aioredis.Redis, workers: Workers
) -> None:
    # Rule 5 (an entry delivered more than max_deliveries times is dead-lettered unrun):
    # without it the poison entry is reclaimed and run forever, every run kills a worker,
    # and the restart budget below runs out.
    max_deliveries = 2
    good = list(range(20))
    tasks = [FaultTask(n=n) for n in good]
    tasks.insert(10, FaultTask(n=999, mode="exit"))
    await produce(redis, tasks)
    # one entry held at a time, so the only entry a dying worker takes down is the poison
    opts: dict[str, object] = {"max_deliveries": max_deliveries, "prefetch": 1}

    async def finished() -> bool:
        done = await counts(redis, done_key, good)
        return (
            all(v >= 1 for v in done.values())
            and await redis.xlen(KEYS.dead) >= 1
            and await pending(redis) == 0
        )

    pool = [workers.start(**opts), workers.start(**opts)]
    budget = 10  # worker starts; 2 + max_deliveries are needed
    deadline = time.monotonic() + 60
    while not await finished():
        for i, w in enumerate(pool):
            if not w.alive:
                assert len(workers.started) < budget, f"restart budget spent\n{workers.report()}"
                pool[i] = workers.start(**opts)
        assert time.monotonic() < deadline, f"not finished in time\n{workers.report()}"
        await asyncio.sleep(0.02)  # polling interval of the supervisor loop

    report = workers.report()
    assert await counts(redis, done_key, good) == {n: 1 for n in good}, report
    assert await counts(redis, runs_key, [999]) == {999: max_deliveries}, report
    killed = [w for w in workers.started if w.popen.poll() == 1]
    assert len(killed) == max_deliveries, report
    [dead] = await dead_letters(redis)
    assert dead["reason"] == "max_deliveries", dead
    assert int(dead["deliveries"]) == max_deliveries + 1, dead
    assert json.loads(dead["raw:data"])["n"] == 999, dead
    assert await pending(redis) == 0, report

    for w in pool:
        # a replacement may still be importing; SIGTERM before its handler is installed
        # would kill it by default, which is not what this test is about
        await eventually(lambda w=w: _async(w.started), workers, f"{w.name} to start",
                         alive=[w])
        w.terminate()
    for w in pool:
        assert await wait_exit(w, workers) == 0, workers.report()


# ---------------------------------------------------------------------- 3. server crash


@pytest.mark.timeout(90)
async def test_a_worker_rides_out_a_server_crash_and_restart_without_losing_or_redoing_jobs(
    tmp_path: Path,
) -> None:
    # Rule 2 (ack + effects in one atomic step) with an AOF fsynced on every write: jobs
    # acked before the crash keep their effect and are not run again; jobs finished while
    # the server is down are settled once it is back, exactly once. And the connection rule
    # (agents reconnect with backoff, they do not crash): the crash hits the reader in its
    # blocking read and the settles of the handlers that finish meanwhile; a worker that
    # crashed on the lost connection fails the `alive` checks, one that dropped those
    # results leaves entries pending.
    server = EmbeddedServer(tmp_path / "aof", appendfsync="always")
    server.start()
    redis = aioredis.Redis.from_url(server.url, socket_timeout=5)
    trace = tmp_path / "finished.txt"
    first, second = list(range(100)), list(range(100, 200))
    ns = first + second

    def finished() -> int:
        return len(trace.read_text().split()) if trace.exists() else 0

    async def done(which: list[int]) -> int:
        return sum(v >= 1 for v in (await counts(redis, done_key, which)).values())

    try:
        with Workers(tmp_path, server.url) as workers:
            # prefetch above the number of jobs: the reader takes each wave at once and then
            # waits in a blocking XREADGROUP; a long lease: no reclaim plays a part here
            w = workers.start(concurrency=4, trace=trace, prefetch=1000, lease_ms=5000)
            await produce(redis, [FaultTask(n=n, sleep_ms=40) for n in first])
            await eventually(lambda: _async_eq(done(first), len(first)), workers,
                             "the first wave acked", timeout=30, alive=[w])
            await produce(redis, [FaultTask(n=n, sleep_ms=40) for n in second])
            await eventually(lambda: _async(finished() >= len(first) + 8), workers,
                             "the second wave under way", timeout=30, alive=[w])

            server.kill()
            assert finished() < len(ns), "the second wave ended before the crash"
            # the server stays down until the worker has noticed and every handler has
            # finished: their outcomes can only be settled after the restart
            await eventually(
                lambda: _async("not_connected" in [e.get("event") for e in w.events()]),
                workers, "the worker to notice the crash", alive=[w],
            )
            await eventually(lambda: _async(finished() >= len(ns)), workers,
                             "the handlers to finish while the server is down", alive=[w])
            await redis.aclose()
            server.start()
            redis = aioredis.Redis.from_url(server.url, socket_timeout=5)

            await eventually(lambda: _async_eq(done(ns), len(ns)), workers,
                             "every job done after the restart", timeout=60, alive=[w])
            await eventually(lambda: _async_eq(pending(redis), 0), workers,
                             "every entry acked", alive=[w])

            report = workers.report()
            assert await counts(redis, done_key, ns) == {n: 1 for n in ns}, report
            assert await counts(redis, runs_key, first) == {n: 1 for n in first}, report
            assert await redis.xlen(KEYS.stream) == len(ns), report
            assert await dead_letters(redis) == [], report
            w.terminate()
            assert await wait_exit(w, workers) == 0, workers.report()
    finally:
        await redis.aclose()
        server.stop()


# ---------------------------------------------------------------------- 4. consumer names


@pytest.mark.timeout(60)
async def test_a_dead_consumer_is_forgotten_only_after_a_new_one_claimed_its_entries(
    redis: aioredis.Redis, workers: Workers
) -> None:
    # Rule 7 (a consumer is removed only when it has no pending entries; forget_consumer.lua
    # refuses while it owns any) and rule 4 (the new consumer reclaims them after the lease):
    # were A deleted while owning entries, XGROUP DELCONSUMER would drop them from the PEL
    # and they would never be processed.
    ns = [1, 2, 3]
    await produce(redis, [FaultTask(n=n) for n in ns])
    forget = Scripts(redis)
    a = workers.start("A", concurrency=3, hold=True)
    await eventually(lambda: _all(counts(redis, runs_key, ns), lambda c: all(c.values())),
                     workers, "A to start every job", alive=[a])
    assert await pending_by_consumer(redis) == {"A": 3}

    a.kill()
    assert await forget("forget_consumer", [KEYS.stream], [GROUP, "A"]) == 0
    assert "A" in await consumer_names(redis)

    b = workers.start("B")
    await eventually(lambda: _async_eq(pending(redis), 0), workers,
                     "B to complete A's entries", alive=[b])
    report = workers.report()
    assert await counts(redis, done_key, ns) == {n: 1 for n in ns}, report
    assert await counts(redis, runs_key, ns) == {n: 2 for n in ns}, report
    assert await dead_letters(redis) == [], report

    assert await forget("forget_consumer", [KEYS.stream], [GROUP, "A"]) == 1
    assert await consumer_names(redis) == {"B"}
    b.terminate()
    assert await wait_exit(b, workers) == 0, workers.report()


async def test_forget_consumer_refuses_while_the_consumer_owns_entries_and_agrees_after_a_claim(
    redis: aioredis.Redis,
) -> None:
    # Rule 7, the script alone: 0 while A owns an entry, 1 once B has claimed it.
    forget = Scripts(redis)
    [entry] = await produce(redis, [FaultTask(n=1)])
    await redis.xgroup_create(KEYS.stream, GROUP, id="0", mkstream=True)
    await redis.xreadgroup(GROUP, "A", {KEYS.stream: ">"}, count=1)

    assert await forget("forget_consumer", [KEYS.stream], [GROUP, "A"]) == 0
    assert await consumer_names(redis) == {"A"}

    await redis.xclaim(KEYS.stream, GROUP, "B", 0, [entry])
    assert await forget("forget_consumer", [KEYS.stream], [GROUP, "A"]) == 1
    assert await consumer_names(redis) == {"B"}
    assert await pending_by_consumer(redis) == {"B": 1}


@pytest.mark.timeout(30)
async def test_a_worker_restarted_under_the_same_name_runs_its_own_pending_entries_first(
    redis: aioredis.Redis, settings: Settings
) -> None:
    # Rule 1 (a consumer's own pending entries are re-read on restart, with id 0, before new
    # ones with '>'): with a lease far longer than the test, XAUTOCLAIM cannot bring them
    # back, so without the rule entries 1-3 are never run and the wait below times out.
    await redis.xgroup_create(KEYS.stream, GROUP, id="0", mkstream=True)
    old = await produce(redis, [FaultTask(n=n) for n in (1, 2, 3)])
    # the previous life of consumer "same": read them, then died before settling
    await redis.xreadgroup(GROUP, "same", {KEYS.stream: ">"}, count=10)
    await produce(redis, [FaultTask(n=n) for n in (4, 5, 6)])

    order: list[tuple[int, str]] = []

    async def recording(event: EventModel, ctx: Context) -> None:
        assert isinstance(event, FaultTask)
        order.append((event.n, ctx.entry_id))
        await handle(event, ctx)

    agent = fault_agent.replace(handler=recording, concurrency=1)
    long_lease = settings.model_copy(update={"lease_ms": 600_000})
    async with running(agent, redis, long_lease, consumer="same"):
        await wait_for(lambda: _async_eq(pending(redis), 0), timeout=10, message="all acked")
        await wait_for(lambda: len(order) == 6, timeout=10, message="all run")

    assert [entry for _, entry in order[:3]] == old
    assert sorted(n for n, _ in order) == [1, 2, 3, 4, 5, 6]
    assert await counts(redis, done_key, range(1, 7)) == {n: 1 for n in range(1, 7)}


# ---------------------------------------------------------------------- 5. SIGTERM


@pytest.mark.timeout(60)
async def test_sigterm_lets_in_flight_handlers_finish_and_ack_then_exits_zero(
    redis: aioredis.Redis, workers: Workers
) -> None:
    # Rule 8 (graceful shutdown: stop reading, finish in-flight handlers, settle, exit 0):
    # a worker that exited at once would leave these four entries pending (and exit non-zero
    # or with nothing done); one that did not settle before exiting would leave them pending.
    ns = [1, 2, 3, 4]
    await produce(redis, [FaultTask(n=n, sleep_ms=1500) for n in ns])
    w = workers.start(concurrency=4)
    await eventually(lambda: _all(counts(redis, runs_key, ns), lambda c: all(c.values())),
                     workers, "every handler to start", alive=[w])
    assert await counts(redis, done_key, ns) == {n: 0 for n in ns}  # all still in flight

    w.terminate()
    code = await wait_exit(w, workers)
    report = workers.report()
    assert code == 0, report
    assert await counts(redis, done_key, ns) == {n: 1 for n in ns}, report
    assert await counts(redis, runs_key, ns) == {n: 1 for n in ns}, report
    assert await pending(redis) == 0, report
    assert await dead_letters(redis) == [], report
    stopped = [e for e in w.events() if e.get("event") == "worker_stopped"]
    assert len(stopped) == 1 and stopped[0]["acked"] == 4, report


# ---------------------------------------------------------------------- leases of long jobs

async def test_the_extend_script_renews_the_lease_of_every_entry_it_is_given(
    redis: aioredis.Redis,
) -> None:
    # Rule 4 (a running handler extends its lease), the script alone.
    ids = await produce(redis, [FaultTask(n=n) for n in (1, 2, 3)])
    await redis.xgroup_create(KEYS.stream, GROUP, id="0", mkstream=True)
    await redis.xreadgroup(GROUP, "c", {KEYS.stream: ">"}, count=10)

    async def idle() -> dict[str, int]:
        rows = await redis.xpending_range(KEYS.stream, GROUP, "-", "+", 10)
        return {_text(r["message_id"]): int(r["time_since_delivered"]) for r in rows}

    await wait_for(lambda: _all_idle(idle(), 100), timeout=5, message="entries idle 100 ms")
    assert await Scripts(redis)("extend", [KEYS.stream], [GROUP, "c", *ids]) == []
    after = await idle()
    assert all(after[i] < 100 for i in ids), after
    rows = await redis.xpending_range(KEYS.stream, GROUP, "-", "+", 10)
    assert [int(r["times_delivered"]) for r in rows] == [1, 1, 1]  # JUSTID: not a delivery


async def _all_idle(values: Awaitable[dict[str, int]], least: int) -> bool:
    found = await values
    return bool(found) and all(v >= least for v in found.values())


@pytest.mark.timeout(60)
async def test_a_worker_running_several_long_jobs_keeps_every_lease(
    redis: aioredis.Redis, workers: Workers
) -> None:
    # Rule 4 (heartbeat): while its handlers run, the worker renews every entry's lease, so
    # none of them turns idle past the lease and gets XAUTOCLAIMed, not even by the worker
    # itself. A lapsed lease lets a peer steal a running job, and every reclaim counts as a
    # delivery: after a crash, a long job would look like poison (rule 5) and be
    # dead-lettered without being run again.
    ns = [1, 2, 3]
    await produce(redis, [FaultTask(n=n, sleep_ms=4000) for n in ns])  # 4 leases long
    await redis.xgroup_create(KEYS.stream, GROUP, id="0")  # so XPENDING can be sampled at once
    w = workers.start(concurrency=3, lease_ms=1000)
    most = 0

    async def finished() -> bool:
        nonlocal most  # sample the delivery counts for as long as the jobs run
        rows = await redis.xpending_range(KEYS.stream, GROUP, "-", "+", 10)
        most = max([most, *(int(r["times_delivered"]) for r in rows)])
        return all((await counts(redis, done_key, ns)).values()) and not rows

    await eventually(finished, workers, "the long jobs to complete", alive=[w])
    report = workers.report()
    assert most == 1, f"an entry was delivered {most} times while its handler ran\n{report}"
    assert await counts(redis, runs_key, ns) == {n: 1 for n in ns}, report
    assert not [e for e in w.events() if e.get("event") == "entries_reclaimed"], report
    w.terminate()
    assert await wait_exit(w, workers) == 0, workers.report()


@pytest.mark.timeout(60)
async def test_a_draining_worker_keeps_the_lease_of_its_in_flight_entry(
    redis: aioredis.Redis, workers: Workers
) -> None:
    # Rules 4 and 8 together: while a worker drains after SIGTERM its handler is still
    # running, so its lease must still be extended; otherwise a peer reclaims the entry
    # once it is idle longer than the lease, runs it a second time, and the draining
    # worker's result is discarded by the fencing check instead of being acked.
    # One entry only, so this checks the drain keeps the heartbeat, not the extend script.
    await produce(redis, [FaultTask(n=1, sleep_ms=3000)])  # 6 leases long
    a = workers.start()
    await eventually(lambda: _all(counts(redis, runs_key, [1]), lambda c: c[1] >= 1),
                     workers, "A to start the job", alive=[a])
    b = workers.start()
    await eventually(lambda: _async(b.started), workers, "the peer B to start", alive=[b])

    a.terminate()
    code = await wait_exit(a, workers)
    report = workers.report()
    assert code == 0, report
    assert await counts(redis, runs_key, [1]) == {1: 1}, report  # B never ran it
    assert await counts(redis, done_key, [1]) == {1: 1}, report
    assert await pending(redis) == 0, report
    [stopped] = [e for e in a.events() if e.get("event") == "worker_stopped"]
    assert (stopped["acked"], stopped["lost"]) == (1, 0), report
    b.terminate()
    assert await wait_exit(b, workers) == 0, workers.report()
