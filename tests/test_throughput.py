"""Throughput: workers add what they handled to per-partition buckets in Redis, and
``pipeline status`` reports the last minute of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import pytest
import redis.asyncio as aioredis

from pipeline import throughput
from pipeline.agent import Context
from pipeline.errors import Fail
from pipeline.keys import Keys
from pipeline.scripts import Scripts
from pipeline.server import EmbeddedServer
from pipeline.settings import Settings
from pipeline.streams import stream_stats
from pipeline.testing import wait_for
from pipeline.worker import Worker
from tests.helpers import TOPIC, Ping, Recorder, agent, produce
from tests.processes import PIPELINE

pytestmark = pytest.mark.timeout(60)
KEYS = Keys(TOPIC)


async def fail_some(event: Ping, ctx: Context) -> None:
    if event.n % 3 == 0:
        raise Fail(f"{event.n} is a multiple of 3")


async def status(server: EmbeddedServer, cwd: Any, *args: str
                 ) -> subprocess.CompletedProcess[str]:
    """``pipeline status ARGS`` in a thread (the event loop goes on meanwhile)."""
    env = {**{n: v for n, v in os.environ.items() if not n.startswith("PIPELINE_")},
           "REDIS_URL": server.url, "COLUMNS": "200"}
    return await asyncio.to_thread(
        subprocess.run, [str(PIPELINE), "status", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=60, check=False)


async def status_json(server: EmbeddedServer, cwd: Any) -> list[dict[str, Any]]:
    result = await status(server, cwd, "--json")
    assert result.returncode == 0, result.stderr
    out: list[dict[str, Any]] = json.loads(result.stdout)
    return out


async def test_status_reports_what_the_workers_handled_in_the_last_minute(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer, tmp_path: Any
) -> None:
    worker = Worker(agent(Recorder(fail_some)), redis, settings, companions=[throughput.record])
    task = asyncio.create_task(worker.run())
    await produce(redis, range(10))  # 0, 3, 6, 9 fail and are dead-lettered
    await wait_for(lambda: worker.stats.handled == 10)
    worker.stop()
    await task  # the recorder flushes once more when the worker stops
    [stats] = [s for s in await status_json(server, tmp_path) if s["topic"] == TOPIC]
    [group] = stats["groups"]
    assert (group["group"], group["handled_per_min"], group["failed_per_min"]) == (
        "tester", 10, 4)
    assert group["handled_per_s"] == round(10 / 60, 2)


async def test_a_group_without_reporting_workers_has_no_throughput(
        redis: aioredis.Redis) -> None:
    await produce(redis, range(3))
    await redis.xgroup_create(KEYS.stream, "outsider", id="0")
    [stats] = await stream_stats(redis)
    [group] = stats.groups
    assert (group.handled_per_min, group.failed_per_min, group.handled_per_s) == (
        None, None, None)
    assert stats.produced_per_min is None


async def test_workers_of_one_group_add_up(redis: aioredis.Redis, settings: Settings) -> None:
    workers = [Worker(agent(Recorder()), redis, settings, companions=[throughput.record])
               for _ in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    await produce(redis, range(40))
    await wait_for(lambda: sum(w.stats.handled for w in workers) == 40)
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)
    [stats] = await stream_stats(redis)
    assert stats.groups[0].handled_per_min == 40


async def test_a_failed_flush_keeps_its_counts_for_the_next(
        redis: aioredis.Redis, settings: Settings, tmp_path: Any) -> None:
    worker = Worker(agent(Recorder()), redis, settings, companions=[])
    await redis.xgroup_create(KEYS.stream, worker.group, id="0", mkstream=True)
    flusher = throughput.Flusher(worker)
    worker.stats.acked, worker.stats.failed = 5, 1
    nowhere = aioredis.Redis(unix_socket_path=str(tmp_path / "no-server.sock"))
    worker.scripts = Scripts(nowhere)
    assert await flusher.try_flush() is False
    await nowhere.aclose()
    worker.scripts = Scripts(redis)
    worker.stats.acked += 2
    assert await flusher.try_flush() is True
    [stats] = await stream_stats(redis)
    assert (stats.groups[0].handled_per_min, stats.groups[0].failed_per_min) == (7, 1)
    assert await flusher.try_flush() is True  # nothing new: nothing added
    [stats] = await stream_stats(redis)
    assert stats.groups[0].handled_per_min == 7


async def test_the_rate_hash_drops_old_buckets_and_expires(
        redis: aioredis.Redis, settings: Settings) -> None:
    worker = Worker(agent(Recorder()), redis, settings, companions=[])
    await redis.xgroup_create(KEYS.stream, worker.group, id="0", mkstream=True)
    await redis.hset(KEYS.rate, mapping={"tester:h:1": 99, "tester:f:1": 9, "~added:1": "1:1"})
    worker.stats.acked = 3
    await throughput.Flusher(worker).flush()
    fields = {k.decode(): v for k, v in (await redis.hgetall(KEYS.rate)).items()}
    assert not any(name.endswith(":1") for name in fields), fields
    assert sorted(int(v) for name, v in fields.items() if name.startswith("tester:")) == [0, 3]
    # the produced rate's sample: server time and the stream's entries-added counter
    [(bucket, sample)] = [(name.split(":")[1], v.decode()) for name, v in fields.items()
                          if name.startswith("~added:")]
    at, added = sample.split(":")
    assert int(at) // 1000 // throughput.BUCKET_S == int(bucket)
    assert f"tester:h:{bucket}" in fields
    assert int(added) == (await redis.xinfo_stream(KEYS.stream))["entries-added"] == 0
    assert 0 < await redis.ttl(KEYS.rate) <= throughput.TTL_S


def test_reading_counts_only_the_last_minute_of_handled_and_appended_entries() -> None:
    now_ms = 1_000_000_000  # bucket 200000
    fields = {
        b"g:h:200000": b"4", b"g:f:200000": b"1",
        b"g:h:199989": b"6",                    # 11 buckets back: inside the minute
        b"g:h:199988": b"50",                   # 12 back: outside
        b"old:h:199980": b"7",                  # reported, not in the last minute
        b"gone:h:199900": b"7",                 # reported more than two minutes ago
        b"~added:199990": b"999950000:100",     # 50 s ago, 100 entries added so far
        b"~added:200000": b"1000000000:150",    # now: 150
        b"~added:199900": b"999500000:0",       # before the minute: the samples reach back
        b"junk": b"1",
    }
    rates = throughput.read(fields, now_ms, added_now=160)
    assert rates.groups == {"g": throughput.GroupRate(10, 1), "old": throughput.GroupRate(0, 0)}
    # appended since the oldest sample of the minute (50 s ago), up to now: a count, never
    # 50 entries in 50 s extrapolated to 60 a minute
    assert rates.produced_per_min == 60
    assert throughput.read(fields, now_ms).produced_per_min == 50  # up to the newest sample


@pytest.mark.parametrize("samples, added_now, produced", [
    ({"~added:199985": "999925000:0", "~added:199989": "999945000:0"}, 22, 22),
    # a gap: nothing sampled from 75 s to 45 s ago, so what came meanwhile is not known
    ({"~added:199985": "999925000:0", "~added:199991": "999955000:0"}, 22, None),
    # the trial's case: a sample 2 minutes old, then one 6.5 s ago after 11 were added
    ({"~added:199976": "999880000:0", "~added:199998": "999993500:11"}, 11, None),
    # 10 of them were added more than a minute ago: not counted
    ({"~added:199985": "999925000:0", "~added:199987": "999939000:10",
      "~added:199989": "999945000:10"}, 22, 12),
    # a sample exactly a minute old is inside it
    ({"~added:199985": "999925000:0", "~added:199988": "999940000:3"}, 22, 19),
    # the samples do not reach back a whole minute (a worker started 45 s ago): unknown,
    # rather than the count of a part of the minute
    ({"~added:199991": "999955000:0", "~added:200000": "1000000000:22"}, 22, None),
    # every sample is older than a minute (no worker ran since): unknown
    ({"~added:199980": "999900000:0", "~added:199987": "999939999:5"}, 22, None),
    ({}, 22, None),
])
def test_the_produced_figure_is_never_more_than_what_was_appended_in_the_last_minute(
        samples: dict[str, str], added_now: int, produced: int | None) -> None:
    rates = throughput.read(samples, 1_000_000_000, added_now=added_now)
    assert rates.produced_per_min == produced


async def test_status_counts_what_was_appended_in_the_last_minute_in_its_table_and_json(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer, tmp_path: Any
) -> None:
    """The trial's 26.4 for 22 entries: 22 appended since a sample 55 s ago used to be
    extrapolated to 60 s (22 * 60 / 55 = 24 here)."""
    worker = Worker(agent(Recorder()), redis, settings, companions=[])
    await redis.xgroup_create(KEYS.stream, worker.group, id="0", mkstream=True)
    secs, micros = await redis.time()
    now_ms = secs * 1000 + micros // 1000

    def sample(ago_ms: int) -> tuple[str, str]:
        at = now_ms - ago_ms
        return f"~added:{at // 1000 // throughput.BUCKET_S}", f"{at}:0"

    await redis.hset(KEYS.rate, mapping=dict([sample(75_000), sample(55_000)]))
    await produce(redis, range(22))
    await throughput.Flusher(worker).flush()  # the sample of now

    [stats] = await stream_stats(redis)
    assert stats.produced_per_min == 22
    [row] = [s for s in await status_json(server, tmp_path) if s["topic"] == TOPIC]
    assert row["produced_per_min"] == 22
    result = await status(server, tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "in/min" in line)
    line = next(line for line in result.stdout.splitlines() if "tester" in line)
    cells = [c.strip() for c in line.split("│")]
    names = [c.strip() for c in header.split("┃")]
    assert cells[names.index("in/min")] == "22", result.stdout


async def test_the_status_table_shows_the_rates(
        redis: aioredis.Redis, settings: Settings, server: EmbeddedServer, tmp_path: Any
) -> None:
    worker = Worker(agent(Recorder()), redis, settings, companions=[])
    await redis.xgroup_create(KEYS.stream, worker.group, id="0", mkstream=True)
    worker.stats.acked, worker.stats.failed = 1234, 567
    await throughput.Flusher(worker).flush()
    result = await status(server, tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "done/min" in line)
    row = next(line for line in result.stdout.splitlines() if "tester" in line)
    cells = [c.strip() for c in row.split("│")]
    names = [c.strip() for c in header.split("┃")]
    assert cells[names.index("done/min")] == "1234", result.stdout
    assert cells[names.index("failed/min")] == "567", result.stdout
    assert cells[names.index("in/min")] == "-", result.stdout  # one sample: no rate yet
