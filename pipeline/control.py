"""The control plane: operators steer every running worker with ``drain``, ``stop``, ``pause``
and ``resume``, for all groups or for one group.

Where a command goes:

- the **control stream** ``pl:control`` (``XADD .. MAXLEN ~ 10000``): the source of truth.
  Each entry is ``command``, ``group`` (``*`` for all), ``reason``, ``by`` (sender), ``at``
  (server time, ms) and ``state``: the pause state after it (JSON ``{"*": "pause", "g":
  "resume"}``), written by ``lua/control.lua`` in the same step, so the newest entry alone is
  the current state and trimming old entries never loses it.
- the **channel** ``pl:control``: the same command as JSON (``id``, ``command``, ``group``,
  ``reason``, ``by``, ``at``), for whoever watches live (``pipeline subscribe pl:control``).
  ``pipeline serve`` listens here, also for the seed's ``KILL_SERVER`` (``pipeline.serve_stop``).

What a worker does (``obey``, a companion of every ``Worker``):

- ``pause``/``resume`` are **state**: the latest one for the worker's group or for all groups
  wins (a command for all groups overrides every earlier group command). A worker that starts
  while its scope is paused starts paused: ``obey`` holds the worker's start
  (``Worker.hold_start``) until it has read the state, so not one entry runs first.
  Paused: no reads, no new handlers; running handlers finish and settle; entries held keep
  their leases (the heartbeat goes on), so no peer reclaims them.
- ``drain`` and ``stop`` are **events**: they apply to workers running when they were sent
  (entries newer than the stream's last id when the worker started). ``drain`` finishes
  everything the worker holds, settles, and ``run()`` returns (``pipeline worker`` exits 0);
  ``stop`` finishes the handlers already running and hands the rest back idle, so other
  consumers claim them at once. A worker started later does not exit because of them.
- Source of truth is the stream, read with ``XREAD BLOCK`` on the worker's own connection
  (named ``pl-control:<group>:<consumer>``, which is how ``listeners`` counts the workers
  listening now): a command is seen as soon as it is added, none is lost while the worker is
  disconnected (it reads on from its last id after reconnecting, with ``Backoff``), and the
  connection is closed when the worker ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pipeline.connection import CONNECTION_ERRORS, Backoff
from pipeline.errors import ConfigError
from pipeline.keys import CONTROL_CHANNEL, CONTROL_STREAM, check_name
from pipeline.logging import get_logger
from pipeline.scripts import Scripts

if TYPE_CHECKING:
    from pipeline.worker import Worker

log = get_logger("pipeline.control")

#: what an operator can send
COMMANDS = ("drain", "stop", "pause", "resume")
#: the stream's scope for "every group"
ALL = "*"
#: the control stream keeps about this many commands (the newest always, and with it the state)
MAXLEN = 10_000
MAX_REASON = 500
#: the client name prefix of a worker's control connection
LISTENER_PREFIX = "pl-control:"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def check_command(command: str) -> str:
    if command not in COMMANDS:
        raise ConfigError(f"unknown control command {command!r}: use {', '.join(COMMANDS)}")
    return command


def check_reason(reason: str | None) -> str:
    """A reason is one line of printable text, at most 500 characters."""
    text = reason or ""
    if len(text) > MAX_REASON:
        raise ConfigError(f"a reason must be at most {MAX_REASON} characters")
    if any(not ch.isprintable() for ch in text):
        raise ConfigError("a reason must be one line of printable text")
    return text


def sender() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Command:
    """One control command as stored on the stream."""

    id: str
    command: str
    #: None: every group
    group: str | None
    reason: str = ""
    by: str = ""
    #: server time when it was sent, ms
    at: int = 0
    #: the pause state after it: scope (``*`` or a group) -> "pause" | "resume"
    state: dict[str, str] = field(default_factory=dict)

    def matches(self, group: str) -> bool:
        """Whether a worker of ``group`` is in this command's scope."""
        return self.group is None or self.group == group

    @property
    def scope(self) -> str:
        return "all groups" if self.group is None else f"group {self.group}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "command": self.command, "group": self.group,
                "reason": self.reason, "by": self.by, "at": self.at}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), separators=(",", ":"))

    @classmethod
    def from_entry(cls, entry_id: Any, fields: Any) -> Command | None:
        """The command of a stream entry, or None when it is not a valid one (written by
        hand, or by a newer version): such an entry is skipped, never obeyed."""
        f = {text_of(k): text_of(v) for k, v in (fields or {}).items()}
        command, scope = f.get("command", ""), f.get("group", "")
        try:
            check_command(command)
            group = None if scope == ALL else check_name("group", scope)
            state = json.loads(f.get("state") or "{}")
            at = int(f.get("at") or 0)
        except (ConfigError, ValueError):
            return None
        if not isinstance(state, dict) or not all(
                isinstance(v, str) for v in state.values()):
            return None
        return cls(text_of(entry_id), command, group, f.get("reason", ""), f.get("by", ""), at,
                   state)


@dataclass(frozen=True, slots=True)
class ControlState:
    """The pause state as of the stream's newest command (``last_id``: ``0-0`` when none)."""

    last_id: str = "0-0"
    scopes: dict[str, str] = field(default_factory=dict)
    last: Command | None = None

    def paused(self, group: str) -> bool:
        """Whether workers of ``group`` are paused: a group's own entry is newer than the
        all-groups one (a command for all groups clears the group entries)."""
        return (self.scopes.get(group) or self.scopes.get(ALL)) == "pause"

    @classmethod
    def after(cls, command: Command) -> ControlState:
        return cls(command.id, dict(command.state), command)


async def send(redis: aioredis.Redis, command: str, group: str | None = None,
               reason: str | None = None, *, by: str | None = None) -> Command:
    """Append ``command`` for ``group`` (None: all groups) to the control stream, then announce
    it on the channel; returns it with its entry id.

    Raises ``ConfigError`` for an unknown command, an invalid group name or reason."""
    check_command(command)
    scope = ALL if group is None else check_name("group", group)
    text = check_reason(reason)
    who = by or sender()
    entry_id = await Scripts(redis)("control", [CONTROL_STREAM],
                                    [command, scope, text, who, MAXLEN])
    rows: Any = await redis.xrange(CONTROL_STREAM, min=entry_id, max=entry_id)
    sent = Command.from_entry(rows[0][0], rows[0][1]) if rows else None
    if sent is None:  # trimmed at once: only with a tiny MAXLEN; keep what we know
        sent = Command(text_of(entry_id), command, group, text, who)
    await redis.publish(CONTROL_CHANNEL, sent.to_json())
    log.debug("control_sent", command=command, group=group, entry_id=sent.id, reason=text)
    return sent


async def history(redis: aioredis.Redis, count: int = 10) -> list[Command]:
    """The newest ``count`` valid commands, newest first."""
    rows: Any = await redis.xrevrange(CONTROL_STREAM, count=count)
    found = (Command.from_entry(entry_id, fields) for entry_id, fields in rows)
    return [c for c in found if c is not None]


async def current_state(redis: aioredis.Redis) -> ControlState:
    """The pause state now: the state of the newest valid command on the stream."""
    rows = await redis.xrevrange(CONTROL_STREAM, count=1)
    if not rows:
        return ControlState()
    newest = text_of(rows[0][0])
    valid = await history(redis, 50)
    if not valid:
        return ControlState(newest)
    return ControlState(newest, dict(valid[0].state), valid[0])


async def listening(redis: aioredis.Redis) -> dict[str, int] | None:
    """Workers listening for control commands now, per group, counted by the names of their
    control connections; None when the server refuses ``CLIENT LIST``."""
    try:
        clients = await redis.client_list()
    except ResponseError:
        return None
    counts: dict[str, int] = {}
    for c in clients:
        name = text_of(c.get("name") or "")
        if name.startswith(LISTENER_PREFIX):
            group = name[len(LISTENER_PREFIX):].split(":", 1)[0]
            counts[group] = counts.get(group, 0) + 1
    return dict(sorted(counts.items()))


async def listeners(redis: aioredis.Redis, group: str | None = None) -> int | None:
    """How many workers (of ``group``, or of any) listen now; None when unknown."""
    counts = await listening(redis)
    if counts is None:
        return None
    return sum(counts.values()) if group is None else counts.get(group, 0)


def listener_name(group: str, consumer: str) -> str:
    return f"{LISTENER_PREFIX}{group}:{_UNSAFE.sub('_', consumer)[:120]}"


class Listener:
    """Reads the control stream after ``since`` on a connection of its own (``XREAD
    BLOCK``), named ``name``; close it with ``aclose``. Connection errors reach the caller,
    who backs off and reads on from where it was."""

    def __init__(self, redis: aioredis.Redis, *, name: str | None, block_ms: int,
                 since: str = "$") -> None:
        pool = redis.connection_pool
        kwargs = dict(pool.connection_kwargs)
        if name is not None:
            kwargs["client_name"] = name
        self.conn = aioredis.Redis.from_pool(
            aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
        self.block_ms = max(1, block_ms)
        self.since = since
        #: the server's id of this listener's connection (for CLIENT UNBLOCK)
        self.client_id: int | None = None

    async def state(self) -> ControlState:
        """The current state; reading goes on after it."""
        state = await current_state(self.conn)
        self.since = state.last_id
        return state

    async def unblock(self, other: aioredis.Redis) -> None:
        """End a blocked read now (it returns as if its BLOCK ran out), through ``other``."""
        if self.client_id is not None:
            with contextlib.suppress(*CONNECTION_ERRORS, ResponseError):
                await other.client_unblock(self.client_id)

    async def read(self) -> list[Command]:
        """The commands added since the last read, waiting up to ``block_ms`` for one."""
        try:
            if self.client_id is None:
                self.client_id = int(await self.conn.client_id())
            reply: Any = await self.conn.xread({CONTROL_STREAM: self.since}, count=100,
                                               block=self.block_ms)
        except CONNECTION_ERRORS:
            self.client_id = None  # a new connection gets a new id
            raise
        commands: list[Command] = []
        for _, entries in reply or []:
            for entry_id, fields in entries:
                self.since = text_of(entry_id)
                command = Command.from_entry(entry_id, fields)
                if command is None:
                    log.warning("control_entry_invalid", entry_id=self.since)
                    continue
                commands.append(command)
        return commands

    async def aclose(self) -> None:
        await self.conn.aclose()


async def obey(worker: Worker) -> None:
    """Obey control commands for ``worker`` until it ends (a companion of every Worker).

    Holds the worker's start until the pause state is known, then follows the stream:
    ``drain`` -> ``worker.stop()``, ``stop`` -> ``worker.stop(finish_queued=False)``, and the
    pause state of the worker's group -> ``pause()``/``resume()`` when it changes."""
    hold = worker.hold_start()
    unblocker: asyncio.Task[None] | None = None
    listener = Listener(worker.redis, name=listener_name(worker.group, worker.consumer),
                        block_ms=worker.settings.effective_block_ms)
    backoff = Backoff()
    try:
        while True:
            try:
                state = await listener.state()
                break
            except CONNECTION_ERRORS as exc:
                if worker.stopping:
                    return
                worker.log.debug("control_not_connected", error=str(exc))
                await backoff.sleep()
        paused = state.paused(worker.group)
        if paused:
            last = state.last
            worker.log.info("control_paused_at_start", since=state.last_id,
                            reason=last.reason if last and last.command == "pause" else "")
            worker.pause()
        hold.set()
        # at stop, the blocked read is ended (CLIENT UNBLOCK) and the loop leaves by itself:
        # a task cancelled inside a blocking read is not reliably ended by redis-py
        unblocker = asyncio.create_task(_unblock_at_stop(worker, listener))
        while not worker.stopping:
            try:
                commands = await listener.read()
            except CONNECTION_ERRORS as exc:
                # the worker's reader reports the connection state; read on from ``since``
                worker.log.debug("control_not_connected", error=str(exc))
                await backoff.sleep()
                continue
            backoff.reset()
            for c in commands:
                if c.command in ("drain", "stop") and c.matches(worker.group):
                    worker.log.info("control_command", command=c.command, entry_id=c.id,
                                    scope=c.scope, reason=c.reason)
                    worker.stop(finish_queued=c.command == "drain")
            if commands and not worker.stopping:
                now = ControlState.after(commands[-1]).paused(worker.group)
                if now != paused:
                    c = commands[-1]
                    worker.log.info("control_command", command="pause" if now else "resume",
                                    entry_id=c.id, scope=c.scope, reason=c.reason)
                    if now:
                        worker.pause()
                    else:
                        worker.resume()
                    paused = now
    finally:
        hold.set()
        if unblocker is not None:
            unblocker.cancel()
        await listener.aclose()


async def _unblock_at_stop(worker: Worker, listener: Listener) -> None:
    await worker.until_stopping()
    await listener.unblock(worker.redis)


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
