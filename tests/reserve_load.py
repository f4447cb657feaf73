"""A load generator process for test_reservation_load.py (run as a script, not collected).

``python tests/reserve_load.py PREFIX COUNT RESOURCE GO_KEY``: connects to ``REDIS_URL``,
signals it is ready (RPUSH ``<GO_KEY>:ready``), waits for the go (BLPOP ``GO_KEY``), then asks
the decider for COUNT reservations of RESOURCE at once (``<PREFIX>-<n>``, 60 in flight at a
time) and prints one JSON line: {"confirmed": [...], "rejected": n}.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import redis.asyncio as aioredis

from pipeline.reservations import Inventory

IN_FLIGHT = 60


async def main(prefix: str, count: int, resource: str, go_key: str) -> None:
    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=30)
    inv = Inventory(redis)
    await redis.ping()
    await redis.rpush(f"{go_key}:ready", prefix)
    await redis.blpop([go_key], timeout=30)
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(n: int) -> tuple[str, str]:
        async with gate:
            d = await inv.decide(f"{prefix}-{n}", resource, 1, customer=prefix)
            return d.reservation_id, d.status

    results = await asyncio.gather(*(one(n) for n in range(count)))
    confirmed = [rid for rid, status in results if status == "confirmed"]
    print(json.dumps({"confirmed": confirmed, "rejected": len(results) - len(confirmed)}),
          flush=True)
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
