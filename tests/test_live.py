"""Live fan-out: ledger events on their channel, the library tail over streams
(``pipeline.live``), and ``pipeline jobs watch`` as a real process. Nothing sleeps: every
wait is a condition with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pipeline.errors import ConfigError
from pipeline.jobs import JobQueue
from pipeline.keys import Keys, job_topic
from pipeline.live import (
    CLIENT_NAME,
    Tail,
    check_live_topic,
    check_since,
    default_topics,
    encode_cursor,
    events_stream,
    parse_cursor,
)
from pipeline.reservations import Inventory, LedgerKeys, Resource
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.testing import running, wait_for
from schemas.jobs import PushNotification
from tests import live_agents

pytestmark = pytest.mark.timeout(60)
PIPELINE = str(Path(sys.executable).parent / "pipeline")
QUEUE = live_agents.QUEUE
TOPIC = job_topic(QUEUE)
CHANNEL = "pl:events:reservations"


def payload(phone: str = "4155550100") -> PushNotification:
    return PushNotification.model_validate({"phoneNumber": phone, "message": "hi"})


async def run_jobs(redis: aioredis.Redis, settings: Settings, phones: list[str]) -> list[str]:
    """Create jobs on QUEUE and run the stepping agent until each is completed or failed."""
    queue = JobQueue(redis, QUEUE)
    ids = await queue.create([payload(p) for p in phones])

    async def settled() -> bool:
        states = [(await queue.get(i)).state for i in ids]
        return all(state in ("completed", "failed") for state in states)

    async with running(live_agents.agent(), redis, settings):
        await wait_for(settled, message="jobs settled")
    return ids


# ---------------------------------------------------------------- the ledger's channel


async def next_message(pubsub: Any) -> dict[str, Any]:
    async def message() -> Any:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        return msg if msg and msg["type"] == "message" else None

    msg = await wait_for(message, message="a message on the ledger's channel")
    assert msg["channel"] == CHANNEL.encode()
    return json.loads(msg["data"])  # type: ignore[no-any-return]


async def last_ledger_entry(redis: aioredis.Redis) -> dict[str, Any]:
    [(_, fields)] = await redis.xrevrange(LedgerKeys().ledger, count=1)
    text = {k.decode(): v.decode() for k, v in fields.items()}
    return {"id": text["id"], "type": text["type"], "v": text["v"],
            "data": json.loads(text["data"])}


async def test_every_ledger_event_is_published_on_its_channel_as_the_envelope(
        redis: aioredis.Redis, inv: Inventory) -> None:
    assert LedgerKeys().channel == Keys("reservations").channel == CHANNEL
    pubsub: Any = redis.pubsub()
    await pubsub.subscribe(CHANNEL)
    try:
        await inv.decide("r-1", "1", 1, "ann")
        message = await next_message(pubsub)
        assert message == await last_ledger_entry(redis)
        assert message["type"] == "reservation.confirmed"
        assert message["id"] == "r-1/decision" and message["v"] == "1"
        assert message["data"] == {"reservation_id": "r-1", "resource_id": "1", "quantity": 1,
                                   "customer": "ann", "remaining": 3}

        await inv.decide("r-2", "1", 100, None)
        rejected = await next_message(pubsub)
        assert rejected == await last_ledger_entry(redis)
        assert rejected["type"] == "reservation.rejected"
        assert rejected["data"]["reason"] == "not_enough"

        await inv.cancel("r-1")
        cancelled = await next_message(pubsub)
        assert cancelled == await last_ledger_entry(redis)
        assert cancelled["type"] == "reservation.cancelled"

        await inv.add_stock("1", 5)
        added = await next_message(pubsub)
        assert added == await last_ledger_entry(redis)
        assert added["type"] == "inventory.stock_added"

        await inv.reset([Resource("9", "product", "Nine", 1, 3)])
        defined = await next_message(pubsub)
        assert defined == await last_ledger_entry(redis)
        assert defined["type"] == "inventory.defined" and defined["data"]["quantity"] == 3
    finally:
        await pubsub.unsubscribe(CHANNEL)
        await pubsub.aclose()


async def publishes(redis: aioredis.Redis) -> int:
    stats: Any = await redis.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def test_ledger_events_are_not_published_while_nobody_subscribes(
        redis: aioredis.Redis, inv: Inventory) -> None:
    before = await publishes(redis)
    await inv.decide("quiet-1", "1", 1, None)
    await inv.cancel("quiet-1")
    await inv.add_stock("2", 1)
    await inv.reset([Resource("9", "product", "Nine", 1, 3)])
    assert await publishes(redis) == before
    assert await redis.xlen(LedgerKeys().ledger) >= 9  # the ledger has them all


# ---------------------------------------------------------------- the library tail


def test_topics_since_and_cursors_are_validated() -> None:
    assert check_live_topic("jobs:q") == "jobs:q" and check_live_topic("reservations")
    for bad in ("", "a b", "jobs:", "jobs:a:b", "x" * 101, "a/b", "jobs:q\n"):
        with pytest.raises(ConfigError):
            check_live_topic(bad)
    assert check_since("now") == "now" and check_since("0") == "0-0"
    assert check_since("17-3") == "17-3" and check_since("17") == "17-0"
    for bad in ("", "yesterday", "-1", "1-", "1-2-3", "18446744073709551616-0", " 1"):
        with pytest.raises(ConfigError):
            check_since(bad)
    positions = {"jobs:q": "5-1", "reservations": "0-0"}
    assert encode_cursor(positions) == "jobs:q=5-1,reservations=0-0"
    assert parse_cursor(encode_cursor(positions)) == positions
    for bad in ("", "jobs:q", "jobs:q=x", "a b=1-0", "q=1-0,q=2-0", "q=1-0,,r=1-0"):
        with pytest.raises(ConfigError):
            parse_cursor(bad)
    assert events_stream("jobs:q") == "pl:{jobs:q:0}:events"
    assert events_stream("reservations") == LedgerKeys().ledger


async def test_a_tail_reads_each_topic_in_order_and_resumes_from_its_cursor(
        redis: aioredis.Redis, settings: Settings, inv: Inventory) -> None:
    ids = await run_jobs(redis, settings, ["4155550100", "4155550101"])
    await inv.decide("t-1", "2", 1, None)
    expected = {t: [e[0].decode() for e in await redis.xrange(events_stream(t))]
                for t in (TOPIC, "reservations")}

    async with await Tail.open(redis, [TOPIC, "reservations"], "0") as tail:
        first = await tail.read(None)
        assert [e.entry_id for e in first if e.topic == TOPIC] == expected[TOPIC]
        assert [e.entry_id for e in first if e.topic == "reservations"] \
            == expected["reservations"]
        assert await tail.read(None) == []
        assert parse_cursor(tail.cursor) == {t: v[-1] for t, v in expected.items()}
        jobs = [e for e in first if e.topic == TOPIC]
        assert {e.envelope["data"]["job_id"] for e in jobs} == set(ids)
        assert all(set(e.envelope) == {"id", "type", "v", "data"} for e in first)

    # resume in the middle: the cursor after the third event gives exactly the rest
    middle = first[2]
    async with Tail(redis, parse_cursor(middle.cursor)) as resumed:
        rest = await resumed.read(None)
    assert [(e.topic, e.entry_id) for e in first[:3] + rest] \
        == [(e.topic, e.entry_id) for e in first]


async def test_since_now_skips_the_past_and_a_topic_without_a_stream_waits(
        redis: aioredis.Redis) -> None:
    await redis.xadd(events_stream("jobs:old"), {"id": "e1", "type": "job.created", "v": "1",
                                                 "data": "{}"})
    async with await Tail.open(redis, ["jobs:old", "jobs:not_yet"], "now") as tail:
        assert await tail.read(None) == []
        assert await tail.read(20) == []
        await redis.xadd(events_stream("jobs:not_yet"),
                         {"id": "e2", "type": "job.created", "v": "1", "data": '{"a":1}'})
        await redis.xadd(events_stream("jobs:old"),
                         {"id": "e3", "type": "job.created", "v": "1", "data": "not json"})
        got = await tail.read(1000)
        got += [] if len(got) == 2 else await tail.read(1000)
    assert sorted((e.topic, e.envelope["id"], json.dumps(e.envelope["data"])) for e in got) == [
        ("jobs:not_yet", "e2", '{"a": 1}'), ("jobs:old", "e3", '"not json"')]


async def test_default_topics_are_every_job_queue_and_the_ledger(
        redis: aioredis.Redis) -> None:
    await JobQueue(redis, "b_queue").create([payload()])
    await JobQueue(redis, "a_queue").create([payload()])
    await redis.xadd(Keys("other").stream, {"x": "1"})
    assert await default_topics(redis) == ["jobs:a_queue", "jobs:b_queue", "reservations"]


async def tail_clients(redis: aioredis.Redis) -> int:
    """Connections of live tails (named ``pipeline-live``) on the server."""
    return sum(1 for c in await redis.client_list() if c.get("name") == CLIENT_NAME)


async def test_a_tail_cancelled_in_a_blocking_read_leaves_no_blocked_client(
        redis: aioredis.Redis) -> None:
    tail = await Tail.open(redis, [TOPIC], "now")
    reader = asyncio.create_task(tail.read(4000))
    async def blocked() -> bool:
        return any(c.get("name") == CLIENT_NAME and c.get("cmd") == "xread"
                   and "b" in c.get("flags", "") for c in await redis.client_list())

    await wait_for(blocked, message="the tail blocked in XREAD")
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    await tail.aclose()
    await wait_for(lambda: _none(tail_clients(redis)), message="no tail client left")


async def _none(count: Any) -> bool:
    return await count == 0  # type: ignore[no-any-return]


# ---------------------------------------------------------------- pipeline jobs watch


def cli_env(server: EmbeddedServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIPELINE_") and k not in ("REDIS_URL", "COLUMNS")}
    env.update(REDIS_URL=server.url, PIPELINE_BLOCK_MS="100", PIPELINE_LOG_FORMAT="json",
               PIPELINE_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    return env


def start_watch(server: EmbeddedServer, tmp_path: Path, *args: str
                ) -> tuple[subprocess.Popen[bytes], Path, Path]:
    n = len(list(tmp_path.glob("watch-*.out")))
    out, err = tmp_path / f"watch-{n}.out", tmp_path / f"watch-{n}.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen([PIPELINE, "jobs", "watch", *args], stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL, env=cli_env(server, tmp_path),
                                cwd=tmp_path)
    return proc, out, err


async def finished(proc: subprocess.Popen[bytes], err: Path) -> int:
    try:
        return await asyncio.to_thread(proc.wait, 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"watch did not exit: {err.read_text()}") from None


async def test_watch_job_prints_its_events_in_order_and_exits_0(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer,
        tmp_path: Path) -> None:
    queue = JobQueue(redis, QUEUE)
    [other, job] = await queue.create([payload(), payload()])
    proc, out, err = start_watch(server, tmp_path, "--queue", QUEUE, "--job", job)
    jproc, jout, jerr = start_watch(server, tmp_path, "--queue", QUEUE, "--job", job, "--json")
    async with running(live_agents.agent(), redis, settings):
        assert await finished(proc, err) == 0, err.read_text()
        assert await finished(jproc, jerr) == 0, jerr.read_text()

    lines = out.read_text().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        f"{job}  job.created", f"{job}  job.progress  10%", f"{job}  job.progress  40%",
        f"{job}  job.progress  70%", f"{job}  job.progress  90%", f"{job}  job.completed"]
    assert other not in out.read_text()
    events = [json.loads(line) for line in jout.read_text().splitlines()]
    assert [e["type"] for e in events] == ["job.created", *["job.progress"] * 4,
                                            "job.completed"]
    assert [e["data"]["percent"] for e in events[1:5]] == list(live_agents.STEPS)
    assert all(e["topic"] == TOPIC and e["data"]["job_id"] == job for e in events)
    ids = [tuple(map(int, e["entry_id"].split("-"))) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_watch_job_exits_0_after_a_dead_letter_and_shows_the_error(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer,
        tmp_path: Path) -> None:
    [job] = await JobQueue(redis, QUEUE).create([payload(live_agents.FAILING)])
    proc, out, err = start_watch(server, tmp_path, "--queue", QUEUE, "--job", job)
    async with running(live_agents.agent(), redis, settings):
        assert await finished(proc, err) == 0, err.read_text()
    tail = [line.split("  ", 1)[1] for line in out.read_text().splitlines()][-2:]
    error = f"Phone number {live_agents.FAILING} is blacklisted"
    assert tail == [f"{job}  job.failed  attempt 1: {error}",
                    f"{job}  job.dead_lettered  permanent_failure: {error}"]


async def test_watch_job_of_a_job_done_before_since_exits_0(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer,
        tmp_path: Path) -> None:
    [job] = await run_jobs(redis, settings, ["4155550100"])
    proc, out, err = start_watch(server, tmp_path, "--queue", QUEUE, "--job", job,
                                 "--since", "now")
    assert await finished(proc, err) == 0, err.read_text()
    assert out.read_text() == ""
    assert f"job {job} had already finished" in err.read_text()


async def test_watch_follows_the_queue_until_sigterm_then_exits_0(
        redis: aioredis.Redis, server: EmbeddedServer, tmp_path: Path) -> None:
    proc, out, err = start_watch(server, tmp_path, "--queue", QUEUE)
    try:
        # the watcher's tail connects after fixing its start: from then on, nothing is
        # missed even before it prints
        await wait_for(lambda: tail_clients(redis), timeout=30, message="watch reading")
        [job] = await JobQueue(redis, QUEUE).create([payload()])
        await wait_for(lambda: f"{job}  job.created" in out.read_text(), timeout=30,
                       message="the created line")
        proc.send_signal(signal.SIGTERM)
        assert await finished(proc, err) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_queue_watch_blocks_between_events_after_a_completed_job(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer,
        tmp_path: Path) -> None:
    proc, out, err = start_watch(server, tmp_path, "--queue", QUEUE)
    try:
        await wait_for(lambda: tail_clients(redis), timeout=30, message="watch reading")
        [job] = await run_jobs(redis, settings, ["4155550100"])
        await wait_for(lambda: f"{job}  job.completed" in out.read_text(), timeout=30,
                       message="the completed line")

        async def xreads() -> int:
            return int((await redis.info("commandstats")).get("cmdstat_xread", {})
                       .get("calls", 0))

        before = await xreads()
        await asyncio.sleep(1.0)
        # BLOCK 100 ms here: about 10 reads a second, not a loop without blocking
        assert await xreads() - before <= 30
        assert proc.poll() is None  # a queue watch goes on after a job's final event
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await finished(proc, err) == 0, err.read_text()


@pytest.mark.parametrize("args, message", [
    (["--queue", "bad queue"], "invalid queue name 'bad queue'"),
    (["--queue", "q", "--since", "yesterday"], "invalid since 'yesterday'"),
    (["--queue", "q", "--job", "other:1"], "job 'other:1' is not on queue 'q'"),
    (["--queue", "q", "--job", "q:x"], "invalid job id 'q:x'"),
])
def test_watch_refuses_bad_input_with_one_line_and_exit_2(
        server: EmbeddedServer, tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run([PIPELINE, "jobs", "watch", *args], check=False, capture_output=True,
                            text=True, env=cli_env(server, tmp_path), cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), result.stderr


def test_watch_of_an_unknown_job_is_a_one_line_error(
        server: EmbeddedServer, tmp_path: Path) -> None:
    result = subprocess.run([PIPELINE, "jobs", "watch", "--queue", "q", "--job", "q:7"],
                            check=False, capture_output=True, text=True,
                            env=cli_env(server, tmp_path), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no job 'q:7' in queue 'q'"
