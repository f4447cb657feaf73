"""The dashboard at ``/`` in a real headless Chromium (Debian's, driven by Playwright) against a
real ``pipeline serve`` process and real workers: queue counts follow jobs as they run, the
Redrive button moves a dead letter back onto its stream, stock and seats match the API, and
a server gone away shows as disconnected. The tests wait on the page's DOM with deadlines
(Playwright's ``expect``); nothing sleeps."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Locator, Page, async_playwright, expect

from pipeline.jobs import JobQueue
from pipeline.keys import Keys, job_topic
from pipeline.testing import wait_for
from schemas.jobs import PushNotification
from tests.browser import ARGS, chromium
from tests.dashboard_agents import gate_key
from tests.processes import Procs, Served, Servers

pytestmark = pytest.mark.timeout(120)
#: how long the page may take to show a change (it polls every one or two seconds)
SEEN_MS = 20_000
BLOCKED = "4153518780"


@pytest.fixture
async def served(servers: Servers) -> Served:
    return await servers.ready(servers.start())


class Browser:
    """One page in a fresh headless Chromium; JavaScript errors on it are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    async def open(self, served: Served) -> Page:
        await self.page.goto(f"{served.url}/")
        await self.seen(self.page.get_by_test_id("connection"), "connected")
        return self.page

    def testid(self, testid: str) -> Locator:
        return self.page.get_by_test_id(testid)

    async def seen(self, locator: Locator, text: str | re.Pattern[str]) -> None:
        await expect(locator).to_have_text(text, timeout=SEEN_MS)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as pw:
        chrome = await pw.chromium.launch(executable_path=executable, args=ARGS)
        context = await chrome.new_context(viewport={"width": 1280, "height": 1000})
        b = Browser(await context.new_page())
        try:
            yield b
        finally:
            await context.close()
            await chrome.close()
    assert b.errors == [], f"JavaScript errors on the page: {b.errors}"


def jobs(*phones: str) -> list[PushNotification]:
    return [PushNotification.model_validate({"phoneNumber": p, "message": f"code for {p}"})
            for p in phones]


async def test_the_queue_counts_follow_the_jobs_while_a_worker_runs_them(
        served: Served, browser: Browser, procs: Procs, redis: aioredis.Redis) -> None:
    queue = "dash_counts"
    await JobQueue(redis, queue).create(jobs(*[f"41555501{n:02d}" for n in range(6)]))
    await browser.open(served)

    def cell(state: str) -> Locator:
        return browser.testid(f"queue-{queue}-{state}")

    # no worker yet: every job waits
    await browser.seen(cell("waiting"), "6")
    await browser.seen(cell("completed"), "0")

    # a worker that holds each job at a gate: open it for two jobs
    worker = procs.worker("tests.dashboard_agents:agent", "--queue", queue, prefetch=1)
    await redis.set(gate_key(queue), 2)
    try:
        await browser.seen(cell("completed"), "2")
        await browser.seen(cell("active"), "1")      # job 3, held at the gate
        await browser.seen(cell("waiting"), "3")
        await browser.seen(cell("consumers"), "1")
        await expect(browser.testid(f"lag-jobs:{queue} / gated")).to_contain_text(
            "3", timeout=SEEN_MS)

        await redis.set(gate_key(queue), 6)
        await browser.seen(cell("completed"), "6")
        await browser.seen(cell("waiting"), "0")
        await browser.seen(cell("active"), "0")
        await browser.seen(cell("dead"), "0")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.report()}") from None
    assert worker.alive, procs.report()
    counts = await redis.hgetall(Keys(job_topic(queue), 0).counts)
    assert counts == {b"completed": b"6"}


async def test_a_running_job_shows_its_progress_live_and_fades_out_when_completed(
        served: Served, browser: Browser, procs: Procs, redis: aioredis.Redis) -> None:
    queue = "dash_live"
    [job_id] = await JobQueue(redis, queue).create(jobs("4155550100"))
    await browser.open(served)
    await browser.seen(browser.testid(f"queue-{queue}-waiting"), "1")
    await browser.seen(browser.testid("events-state"), "live")

    procs.worker("tests.dashboard_agents:agent", "--queue", queue)  # holds it at 50%
    item = browser.testid(f"job-{job_id}")
    bar = item.get_by_role("progressbar", name=f"Job {job_id} progress")
    try:
        await expect(bar).to_have_attribute("aria-valuenow", "50", timeout=SEEN_MS)
        await browser.seen(browser.testid(f"job-{job_id}-state"), "50%")
        await expect(browser.testid("jobs-empty")).to_be_hidden()

        await redis.set(gate_key(queue), 1)
        await browser.seen(browser.testid(f"job-{job_id}-state"), "completed")
        await expect(bar).to_have_attribute("aria-valuenow", "100")
        await expect(item).to_have_count(0, timeout=SEEN_MS)  # faded out and removed
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{procs.report()}") from None
    await expect(browser.testid("jobs-empty")).to_be_visible()
    await browser.seen(browser.testid(f"queue-{queue}-completed"), "1")


async def test_the_redrive_button_moves_a_dead_letter_back_onto_its_stream(
        served: Served, browser: Browser, procs: Procs, redis: aioredis.Redis) -> None:
    queue = "dash_dead"
    keys = Keys(job_topic(queue), 0)
    dead_job, fine_job = await JobQueue(redis, queue).create(jobs(BLOCKED, "4155550100"))
    worker = procs.worker("agents.notifications", "--queue", queue)

    async def settled() -> bool:
        states = {await redis.hget(keys.job(i), "state") for i in (dead_job, fine_job)}
        return states == {b"failed", b"completed"}

    await wait_for(settled, timeout=30, message="one job dead-lettered, one completed")
    worker.terminate()  # so the redriven job stays on the stream for us to see
    assert worker.popen.wait(30) == 0, procs.report()
    assert await redis.xlen(keys.dead) == 1
    length = await redis.xlen(keys.stream)

    page = await browser.open(served)
    await browser.seen(browser.testid(f"queue-{queue}-dead"), "1")
    button = page.get_by_role("button", name=f"Redrive {dead_job} of queue {queue}")
    await expect(button).to_be_visible(timeout=SEEN_MS)
    await expect(page.get_by_role("row").filter(has=button)).to_contain_text(
        f"Phone number {BLOCKED} is blacklisted")
    await button.click()

    await expect(browser.testid("dead-notice")).to_contain_text(
        f"Redrove {dead_job}", timeout=SEEN_MS)
    assert await redis.xlen(keys.dead) == 0
    assert await redis.xlen(keys.stream) == length + 1
    [(_, fields)] = await redis.xrevrange(keys.stream, count=1)
    assert fields[b"id"] == dead_job.encode() and fields[b"type"] == b"job.requested"
    assert await redis.hget(keys.job(dead_job), "state") == b"queued"
    await expect(button).to_have_count(0, timeout=SEEN_MS)
    await expect(browser.testid("dead-empty")).to_be_visible(timeout=SEEN_MS)
    await browser.seen(browser.testid(f"queue-{queue}-dead"), "0")
    await browser.seen(browser.testid(f"queue-{queue}-waiting"), "1")


async def test_stock_and_seat_counts_are_the_apis_and_follow_reservations(
        served: Served, browser: Browser) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        for body in ({"resource_id": "1", "quantity": 2}, {"resource_id": "seats",
                                                            "quantity": 3}):
            assert (await client.post("/v1/reservations", json=body)).status_code == 201
        products: list[dict[str, Any]] = (await client.get("/v1/products")).json()
        seats: dict[str, Any] = (await client.get("/v1/seats")).json()
        assert products and seats["available"] == seats["initial"] - 3

        await browser.open(served)
        for p in products:
            await browser.seen(browser.testid(f"stock-{p['id']}"), str(p["available"]))
            await browser.seen(browser.testid(f"initial-{p['id']}"), str(p["initial_quantity"]))
            await expect(browser.testid(f"product-{p['id']}")).to_contain_text(p["name"])
        await browser.seen(browser.testid("seats-available"), str(seats["available"]))
        await browser.seen(browser.testid("seats-initial"), str(seats["initial"]))

        # the page follows a later reservation
        assert (await client.post("/v1/reservations", json={"resource_id": "1"})
                ).status_code == 201
        now = next(p for p in (await client.get("/v1/products")).json() if p["id"] == 1)
    await browser.seen(browser.testid("stock-1"), str(now["available"]))


async def test_without_an_event_stream_the_page_keeps_working_and_retries(
        served: Served, browser: Browser, redis: aioredis.Redis) -> None:
    asked: list[str] = []

    async def refuse(route: Any) -> None:
        asked.append(route.request.url)
        await route.fulfill(status=404, content_type="application/problem+json", body="{}")

    await browser.page.route("**/v1/events?**", refuse)
    await JobQueue(redis, "dash_noevents").create(jobs("4155550100"))
    await browser.open(served)
    await browser.seen(browser.testid("events-state"), "unavailable")
    await browser.seen(browser.testid("queue-dash_noevents-waiting"), "1")

    def asked_twice() -> bool:
        return len(asked) >= 2

    await wait_for(asked_twice, timeout=SEEN_MS / 1000, message="the page asked again")
    await browser.page.unroute("**/v1/events?**")
    await browser.seen(browser.testid("events-state"), "live")


async def test_a_server_gone_away_shows_as_disconnected(served: Served, browser: Browser
                                                         ) -> None:
    await browser.open(served)
    served.popen.kill()  # as a crash would
    served.popen.wait(10)
    await browser.seen(browser.testid("connection"), "disconnected")
    await expect(browser.testid("connection-detail")).to_contain_text("retrying")
