"""`pipeline status --json` reports what XINFO says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.keys import Keys
from tests.helpers import TOPIC, produce

PIPELINE = str(Path(sys.executable).parent / "pipeline")


async def test_status_json_numbers_equal_xinfo(redis, server, tmp_path):
    k = Keys(TOPIC)
    await produce(redis, range(10))
    await redis.xgroup_create(k.stream, "g1", id="0")
    await redis.xgroup_create(k.stream, "g2", id="0")
    await redis.xreadgroup("g1", "alice", {k.stream: ">"}, count=4)
    await redis.xreadgroup("g1", "bob", {k.stream: ">"}, count=2)
    await redis.zadd(k.delayed, {"x": 1})
    await redis.xadd(k.dead, {"reason": "test"})
    env = {**{n: v for n, v in os.environ.items() if not n.startswith("PIPELINE_")},
           "REDIS_URL": server.url}
    result = subprocess.run([PIPELINE, "status", "--json"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    [stats] = [s for s in json.loads(result.stdout) if s["topic"] == TOPIC]
    assert stats["length"] == await redis.xlen(k.stream) == 10
    assert (stats["delayed"], stats["dead"]) == (1, 1)
    xinfo = {g["name"].decode(): g for g in await redis.xinfo_groups(k.stream)}
    for g in stats["groups"]:
        info = xinfo[g["group"]]
        assert (g["pending"], g["lag"], g["consumers"]) == (
            info["pending"], info["lag"], info["consumers"])
    g1 = next(g for g in stats["groups"] if g["group"] == "g1")
    assert {(m["name"], m["pending"]) for m in g1["members"]} == {("alice", 4), ("bob", 2)}
    assert [g["lag"] for g in stats["groups"]] == [4, 10]
