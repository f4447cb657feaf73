"""Projectors: fold a log into read models, with the checkpoint in the same atomic step.

A ``Projection`` is a pure fold: ``apply(event_type, data, out)`` says what one event changes,
as hash writes on named read models (``out.hset`` / ``out.hincrby``). It is written once and
run two ways:

- live, by ``projector_agent``: the writes become ``ctx.effects``, applied by the settle
  script together with the ack and ``SET <checkpoint> <entry id>``, only while the entry is
  still owned. So an entry's writes land exactly once: a crash before the settle leaves
  nothing (the entry is applied on redelivery), a crash after leaves everything (it was
  acked with them, it is not delivered again).
- in Python, by ``fold`` (replay: ``pipeline replay <projection>`` in ``pipeline.replay``).

Order matters (a definition resets a count that later events change), so a projector is the
only consumer of its group, under a fixed consumer name: restarted, it re-reads its own
pending entries before new ones. Its handler never waits, so entries are folded and settled
in log order. A projector never retries (a retry would re-append the entry to the log): an
event it cannot fold is dead-lettered, and the audit reports the difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol

from pipeline.agent import Agent, Context
from pipeline.effects import Effects
from pipeline.errors import Fail
from pipeline.keys import Keys
from schemas.base import EventModel

#: entries a projector holds at once (its prefetch is twice its concurrency); its handler
#: never awaits, so one slot folds them one after the other, in log order
PROJECTOR_CONCURRENCY = 500

State = dict[str, dict[str, int]]


class Writes(Protocol):
    """Where a projection's writes go: Redis effects (live) or dicts (replay)."""

    def hset(self, model: str, field: str, value: int) -> None: ...

    def hincrby(self, model: str, field: str, amount: int) -> None: ...


class EffectWrites:
    """Writes as effects on the read models' keys, applied with the ack."""

    __slots__ = ("effects", "keys", "names")

    def __init__(self, effects: Effects, keys: Keys, names: dict[str, str]) -> None:
        self.effects = effects
        self.keys = keys
        self.names = names  # model -> its key (``Projection.model_keys``)

    def hset(self, model: str, field: str, value: int) -> None:
        self.effects.hset(self.names[model], {field: value})

    def hincrby(self, model: str, field: str, amount: int) -> None:
        self.effects.hincrby(self.names[model], field, amount)


class DictWrites:
    """Writes on plain dicts: one per read model."""

    __slots__ = ("state",)

    def __init__(self, models: Iterable[str]) -> None:
        self.state: State = {m: {} for m in models}

    def hset(self, model: str, field: str, value: int) -> None:
        self.state[model][field] = value

    def hincrby(self, model: str, field: str, amount: int) -> None:
        hashes = self.state[model]
        hashes[field] = hashes.get(field, 0) + amount


class Projection:
    """A fold of one topic's events into hashes ``<base>:proj:<model>``.

    Subclasses set ``name`` (the checkpoint is ``<base>:proj:<name>:checkpoint``, the group
    ``projector-<name>``), ``topic`` and ``models``, and implement ``apply``."""

    name: ClassVar[str] = ""
    topic: ClassVar[str] = ""
    models: ClassVar[tuple[str, ...]] = ()

    def apply(self, event_type: str, data: Mapping[str, Any], out: Writes) -> None:
        """Fold one event (its envelope type and payload). Events of other types: nothing."""
        raise NotImplementedError

    @property
    def group(self) -> str:
        return f"projector-{self.name}"

    @property
    def consumer(self) -> str:
        return f"projector-{self.name}"

    def model_keys(self, keys: Keys) -> dict[str, str]:
        return {m: keys.proj(m) for m in self.models}


def projector_agent(projection: Projection) -> Agent:
    """The agent that keeps ``projection``'s read models up to date from its topic."""
    name = projection.name
    #: per partition: the read models' keys and the checkpoint's (built once, not per entry)
    names: dict[Keys, tuple[dict[str, str], str]] = {}

    async def project(event: EventModel, ctx: Context) -> None:
        known = names.get(ctx.keys)
        if known is None:
            known = names[ctx.keys] = (projection.model_keys(ctx.keys),
                                       ctx.keys.checkpoint(name))
        models, checkpoint = known
        writes = EffectWrites(ctx.effects, ctx.keys, models)
        try:
            projection.apply(ctx.envelope.type, event.model_dump(), writes)
        except Exception as exc:  # a retry would re-append the entry to the log: dead-letter it
            raise Fail(f"projection {name!r} cannot fold {ctx.envelope.type}: {exc!r}") from exc
        ctx.effects.command("SET", checkpoint, ctx.entry_id)

    return Agent(
        name=projection.group,
        topic=projection.topic,
        handler=project,
        group=projection.group,
        consumer=projection.consumer,
        concurrency=PROJECTOR_CONCURRENCY,
    )


def fold(projection: Projection, events: Iterable[tuple[str, Mapping[str, Any]]],
         into: DictWrites | None = None) -> State:
    """Fold ``(event_type, data)`` pairs in Python; returns the read models as dicts."""
    writes = into or DictWrites(projection.models)
    apply = projection.apply
    for event_type, data in events:
        apply(event_type, data, writes)
    return writes.state
