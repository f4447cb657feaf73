"""What an agent is: a handler over one topic, in one consumer group, with hooks.

A handler is ``async def handle(event, ctx) -> None``. It returns to succeed, raises
``Retry`` for a transient failure (backoff, then again), raises ``Fail`` for a permanent one
(dead letter at once). Any other exception counts as transient until ``max_attempts``.
Handlers stay pure of delivery concerns: ack, retry, fencing and dead letters are the
runtime's; ``ctx.effects`` are writes applied in the same atomic step as the ack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.effects import Effects
from pipeline.keys import Keys, check_name, check_topic

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from pipeline.codec import Envelope
    from schemas.base import EventModel


class Context:
    """What a handler gets besides the event."""

    __slots__ = ("_effects", "_hooks", "deliveries", "entry_id", "envelope", "keys", "live",
                 "log", "redis")

    def __init__(
        self,
        envelope: Envelope,
        entry_id: str,
        deliveries: int,
        keys: Keys,
        redis: aioredis.Redis,
        live: Callable[[Effects], None],
        log: Any,
        hooks: Hooks,
    ) -> None:
        self.envelope = envelope
        self.entry_id = entry_id
        self.deliveries = deliveries
        self.keys = keys
        self.redis = redis
        self.live = live
        self.log = log
        self._hooks = hooks
        self._effects: Effects | None = None

    @property
    def attempt(self) -> int:
        """1 for the first run; grows with each retry."""
        return self.envelope.attempt

    @property
    def effects(self) -> Effects:
        """Writes applied in the same atomic step as this entry's ack (only if still owned)."""
        if self._effects is None:
            self._effects = Effects()
        return self._effects

    def progress(self, percent: int) -> None:
        """Report progress (0-100). Written behind, within milliseconds, before the outcome."""
        if not isinstance(percent, int) or isinstance(percent, bool) or not 0 <= percent <= 100:
            raise ValueError(f"progress must be an integer from 0 to 100, not {percent!r}")
        effects = self._hooks.progress(self, percent)
        if effects:
            self.live(effects)


class Hooks:
    """Writes that go with each outcome, in the same atomic step. Do nothing by default."""

    def progress(self, ctx: Context, percent: int) -> Effects | None:
        return None

    def on_success(self, env: Envelope, keys: Keys, attempt: int) -> Effects | None:
        return None

    def on_retry(
        self, env: Envelope, keys: Keys, attempt: int, error: str, delay_ms: int
    ) -> Effects | None:
        return None

    def on_dead(
        self, env: Envelope | None, keys: Keys, attempt: int, reason: str, error: str
    ) -> Effects | None:
        return None


Handler = Callable[["EventModel", Context], Awaitable[None]]


@dataclass(frozen=True)
class Agent:
    """A handler bound to a topic and a consumer group."""

    name: str
    topic: str
    handler: Handler
    group: str = ""
    concurrency: int | None = None
    hooks: Hooks = field(default_factory=Hooks)
    #: keep at least this many newest entries when trimming acked ones; None: never trim
    trim_keep: int | None = None
    #: called once per worker start with the worker's redis client (set up senders, ...)
    setup: Callable[[Any], Awaitable[None]] | None = None
    #: a fixed consumer name instead of host-pid-random, for an agent that must be the only
    #: consumer of its group (a projector): restarted, it re-reads its own pending entries
    #: first, so the log is applied in order
    consumer: str | None = None

    def __post_init__(self) -> None:
        check_name("agent", self.name)
        check_topic(self.topic)
        if not self.group:
            object.__setattr__(self, "group", self.name)
        check_name("group", self.group)
        if self.consumer is not None:
            check_name("consumer", self.consumer)

    def replace(self, **changes: Any) -> Agent:
        return dataclasses.replace(self, **changes)
