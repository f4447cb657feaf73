"""Senders: the console line and the HTTP webhook (a real local HTTP server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from agents import notifications
from agents.senders import ConsoleSender, WebhookSender, from_env
from pipeline.errors import ConfigError, Retry
from pipeline.jobs import JobQueue, create_push_notifications_jobs
from pipeline.testing import running, wait_for


class Hook:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.bodies: list[dict[str, str]] = []


@pytest.fixture
def webhook() -> Iterator[tuple[str, Hook]]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.bodies.append(json.loads(body))
            status = hook.statuses.pop(0) if hook.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/send", hook
    httpd.shutdown()
    httpd.server_close()


async def test_the_console_sender_prints_the_seed_line(capsys):
    await ConsoleSender().send("4153518743", "This is the code 4321 to verify your account")
    assert capsys.readouterr().out == (
        "Sending notification to 4153518743, with message: "
        "This is the code 4321 to verify your account\n"
    )


async def test_the_webhook_posts_json_and_a_non_2xx_answer_is_retryable(webhook):
    url, hook = webhook
    sender = WebhookSender(url, timeout=2)
    try:
        await sender.send("4153518743", "hi")
        hook.statuses.append(503)
        with pytest.raises(Retry, match="answered 503"):
            await sender.send("4153518743", "again")
    finally:
        await sender.close()
    assert hook.bodies == [{"phoneNumber": "4153518743", "message": "hi"},
                           {"phoneNumber": "4153518743", "message": "again"}]


async def test_an_unreachable_webhook_is_retryable():
    sender = WebhookSender("http://127.0.0.1:9/nothing", timeout=1)
    try:
        with pytest.raises(Retry, match="unreachable"):
            await sender.send("4153518743", "hi")
    finally:
        await sender.close()


async def test_a_job_whose_webhook_fails_once_is_retried_and_completes(redis, settings, webhook):
    url, hook = webhook
    hook.statuses.append(500)
    queue = JobQueue(redis, "hooked")
    [job_id] = await create_push_notifications_jobs(
        [{"phoneNumber": "4153518743", "message": "hi"}], queue, echo=None)
    sender = WebhookSender(url, timeout=2)
    try:
        async with running(notifications.agent("hooked", sender=sender), redis, settings):
            await wait_for(lambda: _completed(queue, job_id))
    finally:
        await sender.close()
    job = await queue.get(job_id)
    assert job.attempts == 2
    assert len(hook.bodies) == 2


async def _completed(queue: JobQueue, job_id: str) -> bool:
    return (await queue.get(job_id)).state == "completed"


def test_the_sender_is_chosen_from_the_environment(monkeypatch):
    monkeypatch.setenv("PIPELINE_SENDER", "webhook")
    with pytest.raises(ConfigError, match="PIPELINE_WEBHOOK_URL"):
        from_env()
    monkeypatch.setenv("PIPELINE_SENDER", "carrier-pigeon")
    with pytest.raises(ConfigError, match="unknown PIPELINE_SENDER"):
        from_env()
    monkeypatch.delenv("PIPELINE_SENDER")
    assert isinstance(from_env(), ConsoleSender)
