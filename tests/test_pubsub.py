"""The seed's pub/sub exercise: publisher lines, subscriber order, the KILL_SERVER exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pipeline.pubsub import play_seed
from pipeline.testing import wait_for

PIPELINE = str(Path(sys.executable).parent / "pipeline")


async def test_the_seed_schedule_prints_one_two_and_kill_never_three(redis):
    lines: list[str] = []
    printed = await play_seed(redis, echo=lines.append)
    assert printed == ["Holberton Student #1 starts course",
                       "Holberton Student #2 starts course", "KILL_SERVER"]
    assert lines == [
        "About to send Holberton Student #1 starts course",
        "Holberton Student #1 starts course",
        "About to send Holberton Student #2 starts course",
        "Holberton Student #2 starts course",
        "About to send KILL_SERVER",
        "KILL_SERVER",
        "About to send Holberton Student #3 starts course",
    ]


@pytest.mark.timeout(60)
async def test_the_subscribe_command_prints_in_order_and_exits_after_kill_server(
        redis, server, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
           "REDIS_URL": server.url}
    sub = subprocess.Popen([PIPELINE, "subscribe", "my channel"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async def subscribed() -> bool:
            counts = await redis.pubsub_numsub("my channel")
            return counts[0][1] >= 1

        await wait_for(subscribed, timeout=20)
        for message in ("first", "second", "KILL_SERVER"):
            pub = subprocess.run([PIPELINE, "publish", "my channel", message], env=env,
                                 cwd=tmp_path, capture_output=True, text=True, timeout=30)
            assert pub.returncode == 0, pub.stderr
            assert pub.stdout.splitlines()[-1] == f"About to send {message}"
        out, err = await asyncio.to_thread(sub.communicate, timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["Redis client connected to the server", "first", "second",
                                "KILL_SERVER"]
    assert (await redis.pubsub_numsub("my channel"))[0][1] == 0


def test_publish_with_a_bad_delay_is_a_one_line_error(tmp_path):
    result = subprocess.run([PIPELINE, "publish", "c", "m", "--delay-ms", "-5"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


@pytest.mark.timeout(90)
async def test_a_subscriber_waits_out_a_lost_server_and_goes_on_listening(
        redis, server, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
           "REDIS_URL": server.url, "PIPELINE_LOG_FORMAT": "console"}
    sub = subprocess.Popen([PIPELINE, "subscribe", "c"], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async def subscribed(client) -> bool:
            return (await client.pubsub_numsub("c"))[0][1] >= 1

        await wait_for(lambda: subscribed(redis), timeout=20)
        server.stop()
        await asyncio.sleep(1.0)
        assert sub.poll() is None, "the subscriber gave up on a lost server"
        server.start()
        again = aioredis.Redis.from_url(server.url)
        try:
            await wait_for(lambda: subscribed(again), timeout=30)
            await again.publish("c", "after the restart")
            await again.publish("c", "KILL_SERVER")
        finally:
            await again.aclose()
        out, err = await asyncio.to_thread(sub.communicate, timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.communicate()
    assert sub.returncode == 0, err
    assert out.splitlines() == ["Redis client connected to the server", "after the restart",
                                "KILL_SERVER"]
    assert "Redis client not connected to the server: " in err  # the seed's line, once
    assert err.count("Redis client connected to the server") == 1, err  # and back
    assert "Traceback" not in err


@pytest.mark.parametrize("channel", ["", "x" * 1001, "line\nbreak", "tab\there"],
                         ids=["empty", "huge", "newline", "tab"])
@pytest.mark.parametrize("command", ["publish", "subscribe"])
def test_a_bad_channel_name_is_a_usage_error_before_connecting(tmp_path, command, channel):
    args = [PIPELINE, command, channel] + (["m"] if command == "publish" else [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing there: it must fail before
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert len(result.stderr) < 200  # a huge name is not echoed whole
