"""The doctor, on a real server: what it finds, what it leaves behind, how it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pipeline.doctor import Check, Report, diagnose
from pipeline.server import EmbeddedServer

pytestmark = pytest.mark.timeout(30)

PIPELINE = Path(sys.executable).parent / "pipeline"
FEATURES = {"XGROUP CREATE MKSTREAM", "XADD", "XREADGROUP", "XPENDING IDLE", "XAUTOCLAIM",
            "Lua EVAL + cjson", "TIME"}


def restricted_url(server: EmbeddedServer, user: str) -> str:
    """The server's URL, logged in as ``user``."""
    return server.url.replace("unix://", f"unix://{user}:x@", 1)


async def no_xautoclaim_user(redis: aioredis.Redis) -> str:
    """An ACL user allowed everything but XAUTOCLAIM: a server that lacks one feature."""
    await redis.acl_setuser("limited", enabled=True, nopass=True, keys=["~*"],
                            channels=["&*"], commands=["+@all", "-xautoclaim"])
    return "limited"


def pipeline_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": url}
    return subprocess.run([str(PIPELINE), *args], check=False, capture_output=True, text=True, env=env,
                          timeout=20)


async def test_doctor_names_the_server_and_its_version(redis: aioredis.Redis) -> None:
    info = await redis.info("server")

    report = await diagnose(redis)

    assert report.server == "valkey"
    assert report.version == info["valkey_version"]
    assert report.mode == "standalone"


async def test_every_stream_feature_works_on_the_embedded_server(redis: aioredis.Redis) -> None:
    report = await diagnose(redis)

    assert {c.name for c in report.checks} >= FEATURES
    assert [c for c in report.checks if not c.ok] == []
    assert report.ok


async def test_doctor_deletes_its_scratch_keys(redis: aioredis.Redis) -> None:
    await diagnose(redis)

    assert await redis.dbsize() == 0


async def test_latency_is_the_median_and_p99_of_pings_in_milliseconds(
    redis: aioredis.Redis,
) -> None:
    report = await diagnose(redis, pings=50)

    assert 0 < report.ping_median_ms <= report.ping_p99_ms < 1000


async def test_a_feature_the_server_refuses_is_reported_missing_not_raised(
    server: EmbeddedServer, redis: aioredis.Redis
) -> None:
    user = await no_xautoclaim_user(redis)
    limited = aioredis.Redis.from_url(restricted_url(server, user))
    try:
        report = await diagnose(limited)
    finally:
        await limited.aclose()

    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed] == ["XAUTOCLAIM"]
    assert "xautoclaim" in failed[0].detail.lower()
    assert not report.ok
    assert await redis.dbsize() == 0


def test_only_a_failed_required_check_makes_the_report_fail() -> None:
    def report(*checks: Check) -> Report:
        return Report("redis", "6.2.0", "standalone", checks, 0.1, 0.2)

    assert report(Check("version", False, "too old", required=False)).ok
    assert not report(Check("XAUTOCLAIM", False, "2-element reply")).ok


async def test_cli_doctor_prints_json_findings_and_exits_0(server: EmbeddedServer) -> None:
    done = pipeline_cli("doctor", "--json", "--pings", "5", url=server.url)

    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["ok"] is True and found["server"] == "valkey"
    assert {c["name"] for c in found["checks"]} >= FEATURES


async def test_cli_doctor_exits_1_and_shows_the_missing_feature(
    server: EmbeddedServer, redis: aioredis.Redis
) -> None:
    user = await no_xautoclaim_user(redis)

    done = pipeline_cli("doctor", url=restricted_url(server, user))

    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if "XAUTOCLAIM" in x)
    assert "MISSING" in line
    assert "a required feature is missing" in done.stdout


def test_cli_doctor_without_a_server_is_a_one_line_error(tmp_path: Path) -> None:
    done = pipeline_cli("doctor", url=f"unix://{tmp_path}/nothing.sock")

    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach Redis")
    assert len(done.stderr.strip().splitlines()) == 1
