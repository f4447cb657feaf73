"""``GET /v1/events``: job lifecycle and ledger events, live, as server-sent events.

Read from the topics' streams (``pipeline.live``), not from the pub/sub channels, so a client
that reconnects with ``Last-Event-ID`` misses nothing and gets nothing twice. Each event:

    id: jobs:q=1700000000000-0,reservations=1700000000000-3
    event: job.progress
    data: {"topic":"jobs:q","entry_id":"1700000000000-0","id":"…","type":"job.progress","v":"1","data":{…}}

The ``id`` is a cursor: every followed topic's position after this event. A comment
(``: keepalive``) goes out after 15 s without events, so proxies keep the connection open.
Invalid input is a 400 problem before the stream starts; when the client goes away the
blocking read is cancelled and its Redis connection closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from redis.exceptions import RedisError
from starlette.responses import StreamingResponse

from pipeline.api.inputs import check_query
from pipeline.api.responses import Problem
from pipeline.api.state import Api
from pipeline.connection import CONNECTION_ERRORS
from pipeline.errors import ConfigError
from pipeline.live import LiveEvent, Tail, check_since, check_topics, default_topics, parse_cursor
from pipeline.logging import get_logger

router = APIRouter(prefix="/v1", tags=["v1"])

#: seconds without an event after which a ``: keepalive`` comment is sent
KEEPALIVE_S = 15.0
#: what a browser's EventSource waits before reconnecting, in ms (sent once, as ``retry:``)
RETRY_MS = 2000
#: the longest a blocking read lasts before a stream checks whether the server is stopping
CLOSING_CHECK_MS = 500
PARAMS = ("topic", "since")
MEDIA_TYPE = "text/event-stream"
#: the problem type of every 400 of this route
BAD_REQUEST = "invalid-events-request"
log = get_logger("pipeline.api.events")


def frame(event: LiveEvent) -> bytes:
    """One event in the text/event-stream format."""
    name = event.envelope.get("type") or "message"
    if not isinstance(name, str) or any(c in name for c in "\r\n"):
        name = "message"
    return f"id: {event.cursor}\nevent: {name}\ndata: {event.to_json()}\n\n".encode()


async def event_stream(tail: Tail, block_ms: int, keepalive_s: float = KEEPALIVE_S,
                       closing: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    """The body of ``/v1/events``: events as they come, a keepalive comment after
    ``keepalive_s`` of silence; ends when Redis is lost or ``closing`` is set (the server is
    stopping: a graceful stop waits for open responses), and the browser then reconnects
    with ``Last-Event-ID``. Closes the tail however it ends, cancellation included."""
    block = max(1, min(block_ms, int(keepalive_s * 1000), CLOSING_CHECK_MS))
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        quiet_since = time.monotonic()
        while True:
            if closing is not None and closing.is_set():
                yield b": server stopping, reconnect with Last-Event-ID\n\n"
                return
            try:
                batch = await tail.read(block)
            except CONNECTION_ERRORS:
                yield b": redis unavailable, reconnect with Last-Event-ID\n\n"
                return
            except RedisError as exc:  # e.g. a key of a followed topic is not a stream
                log.warning("events_stream_failed", error=str(exc))
                yield b": redis error, stream ended\n\n"
                return
            if batch:
                yield b"".join(frame(e) for e in batch)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= keepalive_s:
                yield b": keepalive\n\n"
                quiet_since = time.monotonic()
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled request still closes its tail
            await tail.aclose()


def _bad(detail: str) -> Problem:
    return Problem(400, BAD_REQUEST, "Bad request", detail)


@router.get("/events", include_in_schema=False)
async def events(request: Request) -> StreamingResponse:
    """Server-sent events of ``topic`` (repeatable; default every job queue and
    ``reservations``) from ``since`` (``now``, ``0`` or an entry id), or from the cursor in
    ``Last-Event-ID`` (which wins; topics it does not name start at ``since``).

    Not in the OpenAPI document: a stream has no end for a generated client to wait for.
    """
    check_query(request, PARAMS, slug=BAD_REQUEST)
    params = request.query_params
    since_values = params.getlist("since")
    if len(since_values) > 1:
        raise _bad("give since at most once")
    api = Api.of(request)
    try:
        since = check_since(since_values[0] if since_values else "now")
    except ConfigError as exc:
        raise _bad(str(exc)) from None
    last_event_id = request.headers.get("last-event-id", "")
    try:
        cursor = parse_cursor(last_event_id) if last_event_id else {}
    except ConfigError as exc:
        raise _bad(f"Last-Event-ID: {exc}") from None
    try:
        named = params.getlist("topic")
        if named:
            topics = check_topics(named)
        else:
            found = await default_topics(api.redis)
            topics = check_topics([*found, *(t for t in cursor if t not in found)])
        tail = await Tail.open(api.redis, topics, since, cursor)
    except ConfigError as exc:
        raise _bad(str(exc)) from None
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(event_stream(tail, api.settings.effective_block_ms,
                                          closing=api.closing),
                             media_type=MEDIA_TYPE, headers=headers)
