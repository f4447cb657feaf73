"""The seed's push-notification processor, as an agent.

Progress 0; a blacklisted number fails permanently with ``Phone number <n> is blacklisted``;
otherwise progress 50, send, complete. Run it with
``pipeline worker agents.notifications --queue push_notification_code_2 --concurrency 2``.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.senders import Sender, from_env
from pipeline.agent import Agent, Context
from pipeline.errors import Fail
from pipeline.jobs import JobHooks
from pipeline.keys import job_topic
from schemas.base import EventModel
from schemas.jobs import JobRequested

BLACKLIST = frozenset({"4153518780", "4153518781"})
BLACKLISTED_ERROR = "Phone number {phoneNumber} is blacklisted"
DEFAULT_QUEUE = "push_notification_code_2"
SEED_CONCURRENCY = 2


def make_handler(sender: Sender, blacklist: Iterable[str] = BLACKLIST):  # type: ignore[no-untyped-def]
    blocked = frozenset(blacklist)

    async def send_notification(event: EventModel, ctx: Context) -> None:
        if not isinstance(event, JobRequested):
            raise Fail(f"not a job: {event.EVENT_TYPE}")
        job = event.payload
        ctx.progress(0)
        if job.phone_number in blocked:
            raise Fail(BLACKLISTED_ERROR.format(phoneNumber=job.phone_number))
        ctx.progress(50)
        await sender.send(job.phone_number, job.message)

    return send_notification


def agent(
    queue: str = DEFAULT_QUEUE,
    *,
    sender: Sender | None = None,
    concurrency: int = SEED_CONCURRENCY,
    blacklist: Iterable[str] = BLACKLIST,
) -> Agent:
    """The notification agent for ``queue`` (the sender defaults to ``PIPELINE_SENDER``)."""
    return Agent(
        name="notifications",
        topic=job_topic(queue),
        handler=make_handler(sender or from_env(), blacklist),
        concurrency=concurrency,
        hooks=JobHooks(),
    )
