"""The control plane: ``pipeline control drain|stop|pause|resume [--group G]`` obeyed by real
worker processes and by ``pipeline serve``, and the state kept on the control stream.

Workers run as ``pipeline worker tests.control_agents:agent_a`` (group ``ctl_a``) or
``agent_b`` (group ``ctl_b``, same topic) subprocesses; their handlers leave markers in Redis
(``runs``/``done`` per group and task) which the tests poll with deadlines. The only fixed
waits are quiet intervals that prove nothing happens (``stays``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from pipeline import control
from pipeline.keys import CONTROL_CHANNEL, CONTROL_STREAM
from pipeline.producer import Outgoing, Producer
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from tests.control_agents import (
    GATE,
    GROUP_A,
    GROUP_B,
    KEYS,
    TOPIC,
    ControlTask,
    done_key,
    runs_key,
)
from tests.helpers import Recorder, agent
from tests.processes import Proc, Procs

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
PIPELINE = Path(sys.executable).parent / "pipeline"
AGENT_A, AGENT_B = "tests.control_agents:agent_a", "tests.control_agents:agent_b"


# ---------------------------------------------------------------------- helpers


def _env(url: str, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIPELINE_") and k != "REDIS_URL"}
    env.update(REDIS_URL=url, PYTHONUNBUFFERED="1", PIPELINE_LOG_FORMAT="json",
               PIPELINE_DATA_DIR=str(folder / "cli-data"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


async def cli(server: EmbeddedServer, folder: Path, *args: str
              ) -> subprocess.CompletedProcess[str]:
    """``pipeline <args>`` against the test server."""
    return await asyncio.to_thread(
        subprocess.run, [str(PIPELINE), *args], env=_env(server.url, folder), cwd=folder,
        capture_output=True, text=True, timeout=60)


async def eventually(check: Callable[[], Awaitable[Any]], procs: Procs, message: str, *,
                     alive: Sequence[Proc] = (), timeout: float = 30.0) -> Any:
    """Poll ``check`` until truthy; fail with every process's output on timeout, or at once
    when one of ``alive`` exits meanwhile."""

    async def probe() -> Any:
        for p in alive:
            if not p.alive:
                raise AssertionError(f"{p.name} exited ({p.popen.returncode}) while waiting "
                                     f"for {message}\n{procs.report()}")
        return await check()

    try:
        return await wait_for(probe, timeout=timeout, interval=0.02, message=message)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{procs.report()}") from None


async def stays(check: Callable[[], Awaitable[bool]], seconds: float, procs: Procs,
                message: str) -> None:
    """A quiet interval: ``check`` holds throughout (proving that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await check(), f"{message}\n{procs.report()}"
        await asyncio.sleep(0.05)


async def exited(proc: Proc, procs: Procs, timeout: float = 30.0) -> int:
    await eventually(lambda: _value(not proc.alive), procs, f"{proc.name} to exit",
                     timeout=timeout)
    code = proc.popen.returncode
    assert code is not None
    return code


async def _value(v: Any) -> Any:
    return v


def logged(proc: Proc, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in proc.events() if e.get("event") == event
            and all(e.get(k) == v for k, v in fields.items())]


async def produce(redis: aioredis.Redis, ns: Sequence[int], sleep_ms: int = 0,
                  gate: bool = False) -> None:
    """The tasks, on a stream that has both groups already (as the workers create them: from
    the start), so that the probes below can ask about a group before its worker runs."""
    for group in (GROUP_A, GROUP_B):
        with contextlib.suppress(ResponseError):  # BUSYGROUP
            await redis.xgroup_create(KEYS.stream, group, id="0", mkstream=True)
    await Producer(redis, TOPIC).publish_many(
        Outgoing(ControlTask(n=n, sleep_ms=sleep_ms, gate=gate), f"ctl-{n}") for n in ns)


async def counts(redis: aioredis.Redis, key: Callable[[str, int], str], group: str,
                 ns: Sequence[int]) -> dict[int, int]:
    values = await redis.mget([key(group, n) for n in ns])
    return {n: int(v or 0) for n, v in zip(ns, values, strict=True)}


async def all_done(redis: aioredis.Redis, group: str, ns: Sequence[int]) -> bool:
    return all(v >= 1 for v in (await counts(redis, done_key, group, ns)).values())


async def group_info(redis: aioredis.Redis, group: str) -> dict[str, Any]:
    for g in await redis.xinfo_groups(KEYS.stream):
        if _text(g["name"]) == group:
            return {_text(k): v for k, v in g.items()}
    raise AssertionError(f"no group {group}")


async def pending_by_consumer(redis: aioredis.Redis, group: str) -> dict[str, int]:
    summary = await redis.xpending(KEYS.stream, group)
    return {_text(c["name"]): int(c["pending"]) for c in summary["consumers"]}


async def owned(redis: aioredis.Redis, group: str) -> set[str]:
    rows = await redis.xpending_range(KEYS.stream, group, min="-", max="+", count=1000)
    return {_text(r["message_id"]) for r in rows}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------- drain, stop


async def test_drain_while_handlers_run_loses_nothing_and_both_workers_exit_0(
        redis: aioredis.Redis, server: EmbeddedServer, procs: Procs, tmp_path: Path) -> None:
    ns = list(range(24))
    await produce(redis, ns, sleep_ms=400)
    w1 = procs.worker(AGENT_A, "--concurrency", "2")
    w2 = procs.worker(AGENT_A, "--concurrency", "2")

    async def both_in_flight() -> bool:
        runs = await counts(redis, runs_key, GROUP_A, ns)
        done = await counts(redis, done_key, GROUP_A, ns)
        holders = await pending_by_consumer(redis, GROUP_A)
        running_now = sum(1 for n in ns if runs[n] > done[n])
        return len(holders) == 2 and running_now >= 3

    await eventually(both_in_flight, procs, "both workers to run handlers", alive=[w1, w2])
    sent = await cli(server, tmp_path, "control", "drain", "--reason", "deploy")
    assert sent.returncode == 0, sent.stderr
    assert re.fullmatch(r"drain sent to all groups \(entry \d+-\d+\); 2 workers listening",
                        sent.stdout.strip()), sent.stdout

    assert await exited(w1, procs) == 0, procs.report()
    assert await exited(w2, procs) == 0, procs.report()
    report = procs.report()
    for w in (w1, w2):
        assert logged(w, "control_command", command="drain", reason="deploy"), report
    runs = await counts(redis, runs_key, GROUP_A, ns)
    done = await counts(redis, done_key, GROUP_A, ns)
    # every handler that started (in flight at the drain, or queued in a worker) finished
    # and was acked once; the rest was never read and waits in the group
    assert all(done[n] == runs[n] <= 1 for n in ns), (runs, done, report)
    assert sum(done.values()) >= 3, report
    assert int((await redis.xpending(KEYS.stream, GROUP_A))["pending"]) == 0, report
    assert await redis.xlen(KEYS.dead) == 0, report
    assert (await group_info(redis, GROUP_A))["lag"] == len(ns) - sum(done.values()), report

    # the rest is done by a worker started later: the drain is not for it
    w3 = procs.worker(AGENT_A, "--concurrency", "4")
    await eventually(lambda: all_done(redis, GROUP_A, ns), procs, "every entry done",
                     alive=[w3])
    assert await counts(redis, done_key, GROUP_A, ns) == {n: 1 for n in ns}, procs.report()
    assert await redis.xlen(KEYS.dead) == 0
    w3.terminate()
    assert await exited(w3, procs) == 0, procs.report()


async def test_a_worker_started_after_a_drain_keeps_running(
        redis: aioredis.Redis, server: EmbeddedServer, procs: Procs, tmp_path: Path) -> None:
    sent = await cli(server, tmp_path, "control", "drain")
    assert sent.returncode == 0, sent.stderr
    assert "0 workers listening" in sent.stdout
    w = procs.worker(AGENT_A)
    await eventually(lambda: _value(w.started), procs, "the worker to start", alive=[w])
    await produce(redis, range(5))
    await eventually(lambda: all_done(redis, GROUP_A, range(5)), procs, "the entries done",
                     alive=[w])
    assert w.alive and not logged(w, "control_command"), procs.report()
    w.terminate()
    assert await exited(w, procs) == 0, procs.report()


async def test_stop_hands_back_what_was_not_started_and_exits_0(
        redis: aioredis.Redis, server: EmbeddedServer, procs: Procs, tmp_path: Path) -> None:
    ns = list(range(8))
    await produce(redis, ns, gate=True)
    w = procs.worker(AGENT_A, "--concurrency", "1", prefetch=6, lease_ms=60_000)
    await eventually(lambda: _all_pending(redis, 6), procs, "the worker to hold six",
                     alive=[w])
    await eventually(lambda: _runs(redis, ns, 1), procs, "the first handler to run",
                     alive=[w])
    sent = await cli(server, tmp_path, "control", "stop", "--group", GROUP_A)
    assert sent.returncode == 0, sent.stderr
    await eventually(lambda: _value(logged(w, "entries_handed_back", count=5)), procs,
                     "the five not started handed back", alive=[w])
    await redis.set(GATE, 1)  # the running handler may finish now
    assert await exited(w, procs) == 0, procs.report()
    assert await counts(redis, done_key, GROUP_A, ns) == {n: int(n == 0) for n in ns}
    # what was handed back is pending but idle past the lease: the next consumer takes it
    # at once, not a minute later
    rows = await redis.xpending_range(KEYS.stream, GROUP_A, min="-", max="+", count=100)
    assert len(rows) == 5 and all(r["time_since_delivered"] >= 60_000 for r in rows), rows
    assert (await group_info(redis, GROUP_A))["lag"] == 2
    other = procs.worker(AGENT_A, "--concurrency", "4", lease_ms=60_000)
    await eventually(lambda: all_done(redis, GROUP_A, ns), procs, "every entry done",
                     alive=[other])
    assert await counts(redis, done_key, GROUP_A, ns) == {n: 1 for n in ns}


async def _runs(redis: aioredis.Redis, ns: Sequence[int], expected: int) -> bool:
    return sum((await counts(redis, runs_key, GROUP_A, ns)).values()) == expected


async def _all_pending(redis: aioredis.Redis, n: int) -> bool:
    return int((await redis.xpending(KEYS.stream, GROUP_A))["pending"]) >= n


# ---------------------------------------------------------------------- pause, resume


async def test_pause_then_resume_continues_where_it_stopped_keeping_the_leases(
        redis: aioredis.Redis, server: EmbeddedServer, procs: Procs, tmp_path: Path) -> None:
    lease_ms = 500
    first, more = list(range(8)), list(range(8, 13))
    await produce(redis, first, gate=True)
    w = procs.worker(AGENT_A, "--concurrency", "1", prefetch=4, lease_ms=lease_ms)
    await eventually(lambda: _all_pending(redis, 4), procs, "the worker to hold four",
                     alive=[w])
    await eventually(lambda: _runs(redis, first, 1), procs, "the first handler to run",
                     alive=[w])

    sent = await cli(server, tmp_path, "control", "pause", "--group", GROUP_A)
    assert sent.returncode == 0, sent.stderr
    assert "1 worker listening" in sent.stdout
    await eventually(lambda: _value(logged(w, "worker_paused")), procs, "the pause",
                     alive=[w])
    await redis.set(GATE, 1)  # the handler running at the pause may finish now

    async def settled() -> bool:  # the handler that ran at the pause finished and was acked
        runs = await counts(redis, runs_key, GROUP_A, first)
        return runs == await counts(redis, done_key, GROUP_A, first)

    await eventually(settled, procs, "the running handler to settle", alive=[w])
    runs_at_pause = await counts(redis, runs_key, GROUP_A, first)
    held = await owned(redis, GROUP_A)
    # entries read before the pause wait, leased, in the worker
    assert len(held) == 3 and runs_at_pause == {n: int(n == 0) for n in first}, procs.report()
    await produce(redis, more, sleep_ms=300)

    async def quiet() -> bool:
        # another consumer finds nothing to reclaim: the held entries keep their leases
        reply = await redis.execute_command("XAUTOCLAIM", KEYS.stream, GROUP_A, "thief",
                                            lease_ms, "0-0", "COUNT", 100, "JUSTID")
        return (not reply[1] and w.alive
                and await counts(redis, runs_key, GROUP_A, first) == runs_at_pause
                and await owned(redis, GROUP_A) == held)

    await stays(quiet, 4 * lease_ms / 1000, procs, "something moved while paused")
    assert (await group_info(redis, GROUP_A))["lag"] == len(first) + len(more) - 4

    sent = await cli(server, tmp_path, "control", "resume", "--group", GROUP_A)
    assert sent.returncode == 0, sent.stderr
    everything = first + more
    await eventually(lambda: all_done(redis, GROUP_A, everything), procs,
                     "every entry done after the resume", alive=[w])
    report = procs.report()
    assert await counts(redis, done_key, GROUP_A, everything) == {n: 1 for n in everything}
    assert await counts(redis, runs_key, GROUP_A, everything) == {n: 1 for n in everything}
    assert int((await redis.xpending(KEYS.stream, GROUP_A))["pending"]) == 0, report
    assert len(logged(w, "worker_started")) == 1 and w.alive, report  # never restarted
    assert logged(w, "worker_resumed"), report
    w.terminate()
    assert await exited(w, procs) == 0, procs.report()


async def test_a_worker_started_while_paused_processes_nothing_until_resume(
        redis: aioredis.Redis, server: EmbeddedServer, procs: Procs, tmp_path: Path) -> None:
    sent = await cli(server, tmp_path, "control", "pause", "--reason", "maintenance")
    assert sent.returncode == 0, sent.stderr
    ns = list(range(6))
    await produce(redis, ns)
    w = procs.worker(AGENT_A, "--concurrency", "2")
    await eventually(lambda: _value(logged(w, "control_paused_at_start")), procs,
                     "the worker to start paused", alive=[w])
    assert logged(w, "control_paused_at_start", reason="maintenance"), procs.report()

    async def untouched() -> bool:
        info = await group_info(redis, GROUP_A)
        runs = await counts(redis, runs_key, GROUP_A, ns)
        return w.alive and info["lag"] == len(ns) and info["pending"] == 0 and not any(
            runs.values())

    await stays(untouched, 1.0, procs, "a worker started while paused took entries")
    sent = await cli(server, tmp_path, "control", "resume")
    assert sent.returncode == 0, sent.stderr
    await eventually(lambda: all_done(redis, GROUP_A, ns), procs, "every entry done",
                     alive=[w])
    assert await counts(redis, done_key, GROUP_A, ns) == {n: 1 for n in ns}


async def test_a_group_command_touches_only_that_groups_workers(
        redis: aioredis.Redis, server: EmbeddedServer, procs: Procs, tmp_path: Path) -> None:
    a = procs.worker(AGENT_A)
    b = procs.worker(AGENT_B)
    await eventually(lambda: _value(a.started and b.started), procs, "both workers",
                     alive=[a, b])
    await eventually(lambda: _listening(redis, {GROUP_A: 1, GROUP_B: 1}), procs,
                     "both workers listening", alive=[a, b])
    sent = await cli(server, tmp_path, "control", "pause", "--group", GROUP_A)
    assert sent.returncode == 0, sent.stderr
    await eventually(lambda: _value(logged(a, "worker_paused")), procs, "a paused",
                     alive=[a, b])
    ns = list(range(6))
    await produce(redis, ns)
    # every entry goes to both groups: b handles them all, a none
    await eventually(lambda: all_done(redis, GROUP_B, ns), procs, "b to handle all",
                     alive=[a, b])

    async def a_idle() -> bool:
        return not any((await counts(redis, runs_key, GROUP_A, ns)).values())

    await stays(a_idle, 0.5, procs, "the paused group handled an entry")
    assert not logged(b, "worker_paused"), procs.report()

    sent = await cli(server, tmp_path, "control", "drain", "--group", GROUP_B)
    assert sent.returncode == 0, sent.stderr
    assert "1 worker listening" in sent.stdout
    assert await exited(b, procs) == 0, procs.report()
    assert a.alive, procs.report()
    sent = await cli(server, tmp_path, "control", "resume", "--group", GROUP_A)
    assert sent.returncode == 0, sent.stderr
    await eventually(lambda: all_done(redis, GROUP_A, ns), procs, "a to handle all",
                     alive=[a])
    assert await counts(redis, done_key, GROUP_A, ns) == {n: 1 for n in ns}
    assert await counts(redis, done_key, GROUP_B, ns) == {n: 1 for n in ns}
    assert not logged(a, "control_command", command="drain"), procs.report()
    a.terminate()
    assert await exited(a, procs) == 0, procs.report()


async def _listening(redis: aioredis.Redis, expected: dict[str, int]) -> bool:
    return await control.listening(redis) == expected


# ---------------------------------------------------------------------- pipeline serve


READY = re.compile(r"Serving HTTP on http://127\.0\.0\.1:(\d+) ")


def start_serve(server: EmbeddedServer, folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    env = _env(server.url, folder)
    env.update(PIPELINE_LEASE_MS="1000", PIPELINE_BLOCK_MS="100", PIPELINE_LOG_LEVEL="info")
    log = folder / "serve.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([str(PIPELINE), "serve", "--port", "0"], env=env, cwd=folder,
                                 stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT)
    return popen, log


async def serve_exit(popen: subprocess.Popen[bytes], log: Path) -> int:
    await wait_for(lambda: popen.poll() is not None, timeout=30,
                   message=f"serve to exit\n{log.read_text()}")
    return popen.wait()


async def test_kill_server_published_on_the_control_channel_stops_serve_with_exit_0(
        server: EmbeddedServer, tmp_path: Path) -> None:
    popen, log = start_serve(server, tmp_path)
    try:
        await wait_for(lambda: READY.search(log.read_text()) or popen.poll() is not None,
                       timeout=30, message="serve to be ready")
        assert popen.poll() is None, log.read_text()
        # a command for one group does not stop the server; KILL_SERVER does
        sent = await cli(server, tmp_path, "control", "drain", "--group", "someone_else")
        assert sent.returncode == 0, sent.stderr
        pub = await cli(server, tmp_path, "publish", CONTROL_CHANNEL, "KILL_SERVER")
        assert pub.returncode == 0, pub.stderr
        assert await serve_exit(popen, log) == 0, log.read_text()
        stopping = [line for line in log.read_text().splitlines() if "serve_stopping" in line]
        assert len(stopping) == 1 and '"reason": "KILL_SERVER"' in stopping[0], log.read_text()
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


async def test_a_drain_for_all_groups_drains_the_seat_worker_and_stops_serve(
        server: EmbeddedServer, tmp_path: Path) -> None:
    popen, log = start_serve(server, tmp_path)
    try:
        match = await wait_for(lambda: READY.search(log.read_text()) or popen.poll(),
                               timeout=30, message="serve to be ready")
        assert popen.poll() is None, log.read_text()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{match.group(1)}") as http:
            assert (await http.get("/process")).json() == {"status": "Queue processing"}
        await wait_for(lambda: '"worker_started"' in log.read_text(), timeout=30,
                       message=f"the seat worker to start\n{log.read_text()}")
        sent = await cli(server, tmp_path, "control", "drain", "--reason", "release")
        assert sent.returncode == 0, sent.stderr
        assert await serve_exit(popen, log) == 0, log.read_text()
        text = log.read_text()
        assert '"control_command"' in text and '"worker_stopped"' in text, text
        assert "serve_stopping" in text, text
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args", [
    ["frob"],
    ["pause", "--group", "bad group"],
    ["pause", "--group", ""],
    ["drain", "--group", "x" * 101],
    ["drain", "--reason", "two\nlines"],
    ["stop", "--reason", "x" * 501],
    ["resume", "--bogus"],
    ["pause", "extra"],
    ["status", "--last", "-1"],
], ids=lambda a: " ".join(a)[:30])
async def test_bad_control_input_is_one_line_and_exit_2(
        args: list[str], redis: aioredis.Redis, server: EmbeddedServer, tmp_path: Path) -> None:
    result = await cli(server, tmp_path, "control", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    assert await redis.exists(CONTROL_STREAM) == 0


# ---------------------------------------------------------------------- the library


async def test_the_latest_pause_or_resume_of_a_group_or_of_all_wins(
        redis: aioredis.Redis) -> None:
    state = await control.current_state(redis)
    assert state.last_id == "0-0" and not state.paused("g1")
    await control.send(redis, "pause", "g1")
    state = await control.current_state(redis)
    assert state.paused("g1") and not state.paused("g2")
    await control.send(redis, "pause")
    await control.send(redis, "resume", "g2")
    state = await control.current_state(redis)
    assert state.paused("g1") and not state.paused("g2") and state.paused("g3")
    await control.send(redis, "drain", "g1")      # an event: the state is unchanged
    assert (await control.current_state(redis)).paused("g1")
    last = await control.send(redis, "resume")    # newer than every group command
    state = await control.current_state(redis)
    assert not any(state.paused(g) for g in ("g1", "g2", "g3"))
    assert state.last_id == last.id and state.scopes == {}
    assert [c.command for c in await control.history(redis, 3)] == ["resume", "drain", "resume"]


async def test_the_capped_stream_never_loses_the_latest_state(
        redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "MAXLEN", 10)
    first = await control.send(redis, "pause", "g1", "old")
    for _ in range(400):
        await control.send(redis, "drain", "g2")
    assert await redis.xlen(CONTROL_STREAM) < 400
    assert await redis.xrange(CONTROL_STREAM, min=first.id, max=first.id) == []
    assert (await control.current_state(redis)).paused("g1")


async def test_a_command_is_announced_on_the_channel_as_json(redis: aioredis.Redis) -> None:
    pubsub: Any = redis.pubsub()
    await pubsub.subscribe(CONTROL_CHANNEL)
    try:
        await wait_for(lambda: pubsub.get_message(timeout=0.1))  # the subscribe reply
        sent = await control.send(redis, "pause", "g1", "why")
        msg = await wait_for(lambda: pubsub.get_message(timeout=0.1))
    finally:
        await pubsub.aclose()
    assert msg["channel"] == CONTROL_CHANNEL.encode()
    assert json.loads(msg["data"]) == {"id": sent.id, "command": "pause", "group": "g1",
                                       "reason": "why", "by": sent.by, "at": sent.at}


async def test_a_worker_obeys_after_a_server_restart_and_leaves_no_connection(
        redis: aioredis.Redis, server: EmbeddedServer, settings: Settings) -> None:
    rec = Recorder()
    async with running(agent(rec), redis, settings) as worker:
        await wait_for(lambda: _listening(redis, {"tester": 1}))
        server.stop()
        server.start()
        await _send_through_reconnect(redis, "pause", "tester")
        await wait_for(lambda: worker.paused, timeout=20)
        await _send_through_reconnect(redis, "resume")
        await wait_for(lambda: not worker.paused, timeout=20)
        await _send_through_reconnect(redis, "drain", "tester")
        await wait_for(lambda: worker.stopping, timeout=20)
    await wait_for(lambda: _listening(redis, {}))


async def _send_through_reconnect(redis: aioredis.Redis, command: str,
                                  group: str | None = None) -> None:
    """The test's own client has connections from before the restart: each fails once."""
    for _ in range(20):
        try:
            await control.send(redis, command, group)
            return
        except RedisConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError("the test client did not reconnect")
