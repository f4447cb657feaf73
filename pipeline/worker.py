"""The consumer-group runtime: read, run handlers concurrently, settle outcomes in batches.

Delivery rules (DESIGN.md), where each lives:
1. group created with ``XGROUP CREATE .. 0 MKSTREAM`` (only BUSYGROUP tolerated); own pending
   entries re-read first (``0``), then new ones (``>``)                      -> ``_ensure_group``
2. ack only after success; ack + state changes + outcome events in one script -> ``settle.lua``
3. retries via the delayed ZSET by Redis TIME; dead letters with the original -> ``_outcome``
4. XAUTOCLAIM reclaim, lease heartbeat, fencing on settle                     -> ``_reclaim``
5. poison entries (delivery count > max_deliveries) dead-lettered unrun      -> ``_process``
6. entries deleted while pending acked and logged                            -> ``_process``
7. unique consumer names; consumers forgotten only with nothing pending      -> ``_gc``
8. graceful shutdown: stop reading, finish in-flight, settle, exit            -> ``run``

Operators steer a running worker with ``pause()``/``resume()`` (stop reading, keep leases)
and ``stop()`` (drain everything held) or ``stop(finish_queued=False)`` (finish what runs, hand
the rest back at once); ``pipeline.control`` calls them on control commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pipeline.agent import Agent, Context
from pipeline.codec import Envelope, decode
from pipeline.connection import CONNECTION_ERRORS, Backoff, ConnectionState, Endpoint
from pipeline.effects import Effects
from pipeline.errors import DecodeError, Fail, Retry
from pipeline.keys import Keys
from pipeline.logging import ensure_configured, get_logger
from pipeline.scripts import Scripts
from pipeline.settings import Settings
from pipeline.stats import Stats

log = get_logger("pipeline.worker")


def consumer_name() -> str:
    """Unique per process and start: host-pid-random."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


def backoff_ms(attempt: int, base_ms: int, max_ms: int) -> int:
    """Exponential backoff with equal jitter: half fixed, half random."""
    ceiling: int = min(max_ms, base_ms * (2 ** min(attempt - 1, 30)))
    return ceiling // 2 + random.randint(0, ceiling - ceiling // 2)


#: a slot yields to the event loop after this many entries (see ``_slot``)
YIELD_EVERY = 64
#: the settler sends what has finished without waiting once this many are ready
SETTLE_CHUNK = 256

#: (entry id, kind a|r|d|x, extra, effect commands or None, dead-letter fields or None)
Outcome = tuple[str, str, Any, list[list[str]] | None, list[Any] | None]


@dataclass(slots=True)
class Held:
    """An entry this consumer owns and has not settled yet."""

    entry_id: str
    fields: dict[bytes, bytes] | None
    deliveries: int
    since: float = field(default_factory=time.monotonic)
    lost: bool = False


#: a task that runs beside a worker for as long as it runs (control, throughput, metrics)
Companion = Callable[["Worker"], Awaitable[None]]


def default_companions() -> list[Companion]:
    """What every worker runs beside its loop: obeying control commands and recording its
    throughput (imported here, not at the top: both modules import this one)."""
    from pipeline.control import obey
    from pipeline.throughput import record

    return [obey, record]


class Worker:
    """Runs one agent over one partition of its topic until ``stop()``."""

    def __init__(
        self,
        agent: Agent,
        redis: aioredis.Redis,
        settings: Settings,
        *,
        consumer: str | None = None,
        partition: int = 0,
        endpoint: Endpoint | None = None,
        state: ConnectionState | None = None,
        companions: Sequence[Companion] | None = None,
    ) -> None:
        ensure_configured()
        self.agent = agent
        self.redis = redis
        self.settings = settings
        self.consumer = consumer or agent.consumer or consumer_name()
        self.keys = Keys(agent.topic, partition)
        self.group = agent.group
        self.endpoint = endpoint
        self.state = state or ConnectionState()
        self.scripts = Scripts(redis)
        self.concurrency = agent.concurrency or settings.concurrency
        self.prefetch = settings.effective_prefetch
        if settings.prefetch is None and agent.concurrency:
            self.prefetch = max(1, min(settings.batch_size, agent.concurrency * 2))
        self.stats = Stats()
        self.companions = list(default_companions() if companions is None else companions)
        self.log = log.bind(agent=agent.name, consumer=self.consumer, stream=self.keys.stream)

        self._held: dict[str, Held] = {}
        self._queue: deque[Held] = deque()
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._settle_wake = asyncio.Event()
        self._outcomes: list[Outcome] = []
        self._settling: set[str] = set()
        self._live: list[Effects] = []
        self._running = 0
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._finish_queued = True
        self._paused = False
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._background: set[asyncio.Task[None]] = set()
        self._holds: list[asyncio.Event] = []
        self._reader_id: int | None = None
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def stop(self, *, finish_queued: bool = True) -> None:
        """Graceful stop: no new reads; in-flight entries finish, settle, then ``run`` returns.

        ``finish_queued=False``: entries read but not started yet are not run here; they are
        handed back (made idle past the lease) so that another consumer claims them at once.
        """
        if not finish_queued:
            self._finish_queued = False
        self._stopping.set()
        for hold in self._holds:
            hold.set()
        self._paused = False  # a paused worker that stops still drains what it holds
        self._resumed.set()
        self._work.set()
        self._room.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def until_stopping(self) -> None:
        """Return once ``stop()`` was called (for companions that end by themselves)."""
        await self._stopping.wait()

    def pause(self) -> None:
        """Stop reading and starting entries; handlers running now finish and settle, entries
        held keep their leases (the heartbeat goes on) until ``resume()``."""
        if self._paused or self.stopping:
            return
        self._paused = True
        self._resumed.clear()
        self.log.info("worker_paused", held=len(self._held))
        task = asyncio.get_running_loop().create_task(self._unblock_reader())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def resume(self) -> None:
        """Go on where ``pause()`` stopped."""
        if not self._paused:
            return
        self._paused = False
        self._resumed.set()
        self._work.set()
        self.log.info("worker_resumed", held=len(self._held))

    @property
    def paused(self) -> bool:
        return self._paused

    def hold_start(self) -> asyncio.Event:
        """For a companion, in its first step (before it awaits anything): no entry is read or
        run until the returned event is set, so that it can act first (``pipeline.control``
        starts a worker of a paused scope paused). ``stop()`` releases every hold."""
        hold = asyncio.Event()
        self._holds.append(hold)
        return hold

    async def run(self) -> Stats:
        """Run until ``stop()``; returns the counts of what was handled."""
        await self._with_reconnect(self._ensure_group)
        if self.agent.setup is not None:
            await self.agent.setup(self.redis)
        await self._with_reconnect(self._read_own_pending)
        self.ready.set()
        self.log.info("worker_started", group=self.group, concurrency=self.concurrency)
        # companions first: one may hold the start (``hold_start``) before any entry runs
        companions = [asyncio.create_task(self._companion(c)) for c in self.companions]
        try:
            await asyncio.sleep(0)  # each companion's first step
            for hold in self._holds:
                await hold.wait()
        except BaseException:
            for companion in companions:
                companion.cancel()
            raise
        slots = [asyncio.create_task(self._slot()) for _ in range(self.concurrency)]
        settler = asyncio.create_task(self._settler())
        reader = asyncio.create_task(self._reader())
        # the heartbeat outlives the drain: in-flight handlers keep their leases to the end
        heartbeat = asyncio.create_task(self._every(self.settings.lease_ms / 4000,
                                                    self._heartbeat, while_draining=True))
        maintenance = [
            # at start too: entries handed back or left by a crash are taken without waiting
            asyncio.create_task(self._every(self._reclaim_interval(), self._reclaim,
                                            first_now=True)),
            asyncio.create_task(self._promoter()),
            asyncio.create_task(self._every(60.0, self._gc)),
        ]
        stop_wait = asyncio.create_task(self._stopping.wait())
        watched = [stop_wait, settler, reader, heartbeat, *maintenance, *slots]
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop_wait and not task.cancelled() and task.exception():
                    self.log.error("worker_crashed", error=repr(task.exception()))
                    raise task.exception()  # type: ignore[misc]
            await self._drain(reader, maintenance)
        finally:
            stop_wait.cancel()
            for task in [reader, heartbeat, *maintenance, *slots]:
                task.cancel()
            self._settle_wake.set()
            self._stopped.set()
            await asyncio.gather(reader, heartbeat, *maintenance, *slots, return_exceptions=True)
            await asyncio.gather(settler, return_exceptions=True)
            for task in companions:
                task.cancel()
            await asyncio.gather(*companions, return_exceptions=True)
            await self._forget_self()
            self.log.info("worker_stopped", **self.stats.counts())
        return self.stats

    async def _drain(self, reader: asyncio.Task[None], maintenance: list[asyncio.Task[None]]
                     ) -> None:
        """Stop taking entries, then finish what is held within the shutdown deadline."""
        for task in maintenance:
            task.cancel()
        # the reader leaves its loop after the read under way, which we end at once
        await self._unblock_reader()
        await asyncio.wait([reader], timeout=self.settings.effective_block_ms / 1000 + 1)
        if not self._finish_queued:
            await self._hand_back()
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        while (self._queue or self._running) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._queue or self._running:
            self.log.warning("shutdown_deadline_passed", unfinished=len(self._held))
        while self._outcomes and time.monotonic() < deadline + 5:
            self._settle_wake.set()
            await asyncio.sleep(0.005)

    async def _hand_back(self) -> None:
        """Entries held but not started: made idle past the lease (XCLAIM .. IDLE), so that
        the next reclaim pass of any consumer (every lease/4, and at its start) takes them;
        their delivery count is unchanged."""
        queued, self._queue = list(self._queue), deque()
        if not queued:
            return
        ids: list[Any] = [h.entry_id for h in queued]
        try:
            await self.redis.xclaim(self.keys.stream, self.group, self.consumer, 0, ids,
                                    idle=self.settings.lease_ms, justid=True)
        except (*CONNECTION_ERRORS, ResponseError) as exc:  # type: ignore[misc]
            self.log.warning("hand_back_failed", count=len(ids), error=str(exc))
        for entry_id in ids:
            self._held.pop(entry_id, None)
        self.log.info("entries_handed_back", count=len(ids))

    async def _companion(self, companion: Companion) -> None:
        """Run one companion; its failure is logged, never the worker's end."""
        try:
            await companion(self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a companion must not kill the worker
            for hold in self._holds:  # nor hold its start
                hold.set()
            self.log.error("companion_failed", companion=getattr(companion, "__name__", "?"),
                           error=repr(exc))

    def _reclaim_interval(self) -> float:
        return max(0.05, self.settings.lease_ms / 4000)

    async def _every(self, seconds: float, step: Any, *, while_draining: bool = False,
                     first_now: bool = False) -> None:
        while while_draining or not self.stopping:
            if not first_now:
                await asyncio.sleep(seconds)
            first_now = False
            try:
                await step()
            except CONNECTION_ERRORS as exc:
                self.state.down(exc)
            except ResponseError as exc:
                self.log.warning("maintenance_error", step=step.__name__, error=str(exc))

    async def _back_off(self, backoff: Backoff) -> None:
        """Wait before the next try; in embedded mode restart the server if its owner left."""
        await backoff.sleep()
        if self.endpoint is not None:
            try:
                await asyncio.to_thread(self.endpoint.revive)
            except Exception as exc:  # noqa: BLE001 - keep trying
                self.log.debug("revive_failed", error=str(exc))

    async def _with_reconnect(self, step: Any) -> Any:
        """Run ``step`` until it succeeds, backing off while the server is away."""
        backoff = Backoff()
        while True:
            try:
                result = await step()
            except CONNECTION_ERRORS as exc:
                self.state.down(exc)
                if self.stopping and step is not self._settle_once:
                    return None
                await self._back_off(backoff)
                continue
            self.state.up()
            return result

    # ------------------------------------------------------------------ reading

    async def _ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.keys.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_own_pending(self) -> None:
        """Entries this consumer name already owns (a restart that kept its name)."""
        start = "0"
        while True:
            reply: Any = await self.redis.xreadgroup(
                self.group, self.consumer, {self.keys.stream: start}, count=self.settings.batch_size
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            await self._take(entries, counted=False)
            start = _text(entries[-1][0])

    async def _reader(self) -> None:
        backoff = Backoff()
        block = self.settings.effective_block_ms
        # its own connection, so that stop() can end a blocked read at once (CLIENT UNBLOCK)
        conn = self.redis.client()
        try:
            await self._read_loop(conn, backoff, block)
        finally:
            await conn.aclose()

    async def _unblock_reader(self) -> None:
        """End a blocked XREADGROUP now: it returns as if its BLOCK ran out, losing nothing."""
        if self._reader_id is not None:
            try:
                await self.redis.client_unblock(self._reader_id)
            except (*CONNECTION_ERRORS, ResponseError):  # type: ignore[misc]
                pass

    async def _read_loop(self, conn: aioredis.Redis, backoff: Backoff, block: int) -> None:
        while not self.stopping:
            if self._paused:
                await self._resumed.wait()
                continue
            room = self.prefetch - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                if self._reader_id is None:
                    self._reader_id = int(await conn.client_id())
                    if self.stopping:
                        return
                reply: Any = await conn.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.keys.stream: ">"},
                    count=min(room, self.settings.batch_size),
                    block=block,
                )
            except CONNECTION_ERRORS as exc:
                self._reader_id = None
                self.state.down(exc)
                await self._back_off(backoff)
                continue
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self.log.warning("group_missing_recreating", error=str(exc))
                    await self._with_reconnect(self._ensure_group)
                    continue
                raise
            backoff.reset()
            self.state.up()
            if reply:
                # read just as a pause began: held (leased) and run after resume()
                await self._take(reply[0][1], counted=True)

    async def _take(self, entries: list[Any], *, counted: bool, deliveries: dict[str, int] | None
                    = None) -> None:
        """Hold entries and queue them for the slots. ``counted``: read with '>' (1 delivery)."""
        if not counted and deliveries is None:
            deliveries = await self._deliveries([_text(e[0]) for e in entries])
        now = time.monotonic()
        for raw_id, fields in entries:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if entry_id in self._held:
                continue
            n = 1 if counted else (deliveries or {}).get(entry_id, 1)
            held = Held(entry_id, fields or None, n, now)
            self._held[entry_id] = held
            self._queue.append(held)
        self.stats.read += len(entries)
        self._work.set()

    async def _deliveries(self, ids: list[str]) -> dict[str, int]:
        """Delivery counts (XPENDING times-delivered) of entries this consumer owns."""
        if not ids:
            return {}
        ordered = sorted(ids, key=_id_key)
        rows = await self.redis.xpending_range(
            self.keys.stream, self.group, min=ordered[0], max=ordered[-1],
            count=len(ids) + len(self._held) + 100, consumername=self.consumer,
        )
        return {_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    # ------------------------------------------------------------------ running

    async def _slot(self) -> None:
        done = 0
        while True:
            if self._paused:
                await self._resumed.wait()
                continue
            if not self._queue:
                self._work.clear()
                await self._work.wait()
                continue
            held = self._queue.popleft()
            self._running += 1
            try:
                outcome = await self._process(held)
            finally:
                self._running -= 1
            self._outcomes.append(outcome)
            # the settler batches whatever finished within flush_ms: one round trip for all
            self._settle_wake.set()
            done += 1
            if done % YIELD_EVERY == 0:
                # a handler that never awaits would otherwise run the whole batch in one
                # step; yielding lets the settler and the reader overlap with the handling
                await asyncio.sleep(0)

    async def _process(self, held: Held) -> Outcome:
        """Run one entry and turn what happened into its outcome."""
        if held.fields is None:
            self.stats.deleted += 1
            self.log.warning("entry_deleted_while_pending", entry_id=held.entry_id)
            return (held.entry_id, "x", 0, None, None)
        env: Envelope | None = None
        try:
            env = decode(held.fields)
        except DecodeError as exc:
            return self._dead(held, None, "decode_error", exc.reason, "")
        if held.deliveries > self.settings.max_deliveries:
            return self._dead(
                held, env, "max_deliveries",
                f"delivered {held.deliveries} times (max_deliveries={self.settings.max_deliveries})"
                "; not run again",
                "",
            )
        ctx = Context(env, held.entry_id, held.deliveries, self.keys, self.redis,
                      self._live_effect, self.log, self.agent.hooks)
        outcome: Outcome | None = None
        started = time.perf_counter()
        try:
            if self.settings.handler_timeout_s is None:
                await self.agent.handler(env.data, ctx)
            else:
                async with asyncio.timeout(self.settings.handler_timeout_s):
                    await self.agent.handler(env.data, ctx)
        except TimeoutError:
            text = f"handler timed out after {self.settings.handler_timeout_s}s"
            outcome = self._retry(held, env, text, None, traceback.format_exc())
        except Fail as exc:
            outcome = self._dead(held, env, "permanent_failure", str(exc), traceback.format_exc())
        except Retry as exc:
            outcome = self._retry(held, env, exc.reason, exc.delay_ms, traceback.format_exc())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any handler error is a transient failure
            text = f"{type(exc).__name__}: {exc}"
            outcome = self._retry(held, env, text, None, traceback.format_exc())
        self.stats.latency.observe(time.perf_counter() - started)
        if outcome is not None:
            self.stats.failed += 1
            return outcome
        effects = ctx._effects
        more = self.agent.hooks.on_success(env, self.keys, env.attempt)
        if more:
            effects = (effects or Effects()).extend(more)
        return (held.entry_id, "a", 0, effects.as_lists() if effects else None, None)

    def _live_effect(self, effects: Effects) -> None:
        self._live.append(effects)
        self._settle_wake.set()

    def _retry(self, held: Held, env: Envelope, error: str, delay_ms: int | None, tb: str
               ) -> Outcome:
        if env.attempt >= self.settings.max_attempts:
            return self._dead(
                held, env, "max_attempts",
                f"{error} (attempt {env.attempt} of {self.settings.max_attempts})", tb,
            )
        delay = delay_ms if delay_ms is not None else backoff_ms(
            env.attempt, self.settings.backoff_base_ms, self.settings.backoff_max_ms
        )
        assert held.fields is not None
        nxt: list[str] = []
        for k, v in held.fields.items():
            if k != b"attempt":
                nxt += (k.decode(), v.decode())
        nxt += ("attempt", str(env.attempt + 1))
        effects = self.agent.hooks.on_retry(env, self.keys, env.attempt, error, delay)
        self.log.info("entry_retry_scheduled", entry_id=held.entry_id, attempt=env.attempt,
                      delay_ms=delay, error=error)
        return (held.entry_id, "r", [max(0, int(delay)), json.dumps(nxt)],
                effects.as_lists() if effects else None, None)

    def _dead(self, held: Held, env: Envelope | None, reason: str, error: str, tb: str
              ) -> Outcome:
        attempt = env.attempt if env is not None else 1
        fields: list[Any] = [
            "reason", reason, "error", error, "traceback", tb,
            "attempts", attempt, "deliveries", held.deliveries,
            "stream", self.keys.stream, "entry_id", held.entry_id,
            "group", self.group, "consumer", self.consumer,
        ]
        for k, v in (held.fields or {}).items():
            fields += (b"raw:" + k, v)
        effects = self.agent.hooks.on_dead(env, self.keys, attempt, reason, error)
        self.log.warning("entry_dead_lettered", entry_id=held.entry_id, reason=reason, error=error)
        return (held.entry_id, "d", 0, effects.as_lists() if effects else None, fields)

    # ------------------------------------------------------------------ settling

    async def _settler(self) -> None:
        flush = self.settings.flush_ms / 1000
        while True:
            await self._settle_wake.wait()
            self._settle_wake.clear()
            if not self._outcomes and not self._live:
                if self._stopped.is_set():
                    return
                continue
            if flush and len(self._outcomes) < SETTLE_CHUNK and self._running:
                await asyncio.sleep(flush)  # let a few more finish: one round trip for all
            await self._with_reconnect(self._settle_once)
            if self._stopped.is_set() and not self._outcomes and not self._live:
                return

    async def _settle_once(self) -> None:
        outcomes, live = self._outcomes, self._live
        if not outcomes and not live:
            return
        self._outcomes, self._live = [], []
        try:
            lost = await self._send(outcomes, live)
        except BaseException:
            # keep them for the next try: a settle is idempotent thanks to the fencing check
            self._outcomes = outcomes + self._outcomes
            self._live = live + self._live
            raise
        lost_set = {_text(x) for x in lost}
        counts = {"a": 0, "r": 0, "d": 0, "x": 0}
        for entry_id, kind, *_ in outcomes:
            held = self._held.pop(entry_id, None)
            if entry_id in lost_set:
                if held is not None:
                    held.lost = True
                continue
            counts[kind] += 1
        self.stats.acked += counts["a"]
        self.stats.retried += counts["r"]
        self.stats.dead += counts["d"]
        self.stats.lost += len(lost_set)
        if lost_set:
            self.log.warning("results_discarded_lease_lost", count=len(lost_set),
                             entry_ids=sorted(lost_set)[:10])
        self.log.debug("batch_settled", acked=counts["a"], retried=counts["r"],
                       dead=counts["d"], deleted=counts["x"], lost=len(lost_set))
        if len(self._held) < self.prefetch:
            self._room.set()

    async def _send(self, outcomes: list[Outcome], live: list[Effects]) -> list[Any]:
        """One settle call: live effects, then every outcome (see ``lua/settle.lua``)."""
        plain: list[str] = []
        gone: list[str] = []
        other: list[list[Any]] = []
        dead_fields: list[Any] = []
        for entry_id, kind, extra, cmds, fields in outcomes:
            if kind == "a" and cmds is None:
                plain.append(entry_id)
            elif kind == "x":
                gone.append(entry_id)
            else:
                if fields is not None:  # a dead letter: its fields go as binary-safe args
                    extra = [5 + len(dead_fields), len(fields)]
                    dead_fields.extend(fields)
                other.append([entry_id, kind, extra, cmds or []])
        live_cmds = [cmd for effects in live for cmd in effects.as_lists()]
        payload = {"l": live_cmds, "a": plain, "x": gone, "o": other,
                   "n": len(self._held) + 16}
        args = [self.group, self.consumer, self.keys.base, json.dumps(payload), *dead_fields]
        keys = [self.keys.stream, self.keys.delayed, self.keys.dead]
        return list(await self.scripts("settle", keys, args))

    # ------------------------------------------------------------------ leases

    async def _heartbeat(self) -> None:
        """Renew the lease of every entry held longer than a third of it."""
        horizon = time.monotonic() - self.settings.lease_ms / 4000
        ids = [h.entry_id for h in self._held.values() if h.since <= horizon and not h.lost]
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            lost = await self.scripts("extend", [self.keys.stream],
                                      [self.group, self.consumer, *chunk])
            now = time.monotonic()
            lost_set = {_text(x) for x in lost}
            for entry_id in chunk:
                held = self._held.get(entry_id)
                if held is None:
                    continue
                if entry_id in lost_set:
                    held.lost = True
                    self.log.warning("lease_lost", entry_id=entry_id)
                else:
                    held.since = now

    async def _reclaim(self) -> None:
        """Claim entries idle longer than the lease from crashed or stuck consumers."""
        start = "0-0"
        while not self.stopping and not self._paused:
            room = self.prefetch - len(self._held)
            if room <= 0:
                return
            reply: Any = await self.redis.execute_command(  # type: ignore[no-untyped-call]
                "XAUTOCLAIM", self.keys.stream, self.group, self.consumer,
                self.settings.lease_ms, start, "COUNT", min(room, self.settings.batch_size),
            )
            start = _text(reply[0])
            claimed = [e for e in reply[1] if e is not None]
            deleted = [_text(x) for x in (reply[2] if len(reply) > 2 else [])]
            if deleted:
                # deleted while pending: XAUTOCLAIM already dropped them from the PEL
                self.stats.deleted += len(deleted)
                self.log.warning("entries_deleted_while_pending", entry_ids=deleted[:10],
                                 count=len(deleted))
            if claimed:
                self.stats.reclaimed += len(claimed)
                self.log.info("entries_reclaimed", count=len(claimed))
                await self._take(claimed, counted=False)
            if start == "0-0":
                return

    async def _promoter(self) -> None:
        """Move due retries from the delayed ZSET back to the stream (by the server's clock)."""
        interval = self.settings.promote_interval_ms / 1000
        while not self.stopping:
            try:
                moved, wait_ms = await self.scripts(
                    "promote", [self.keys.delayed, self.keys.stream], [1000]
                )
            except CONNECTION_ERRORS as exc:
                self.state.down(exc)
                await asyncio.sleep(interval)
                continue
            if moved >= 1000:
                continue
            pause = interval if wait_ms < 0 else min(interval, wait_ms / 1000)
            await asyncio.sleep(max(0.005, pause))

    async def _gc(self) -> None:
        """Forget consumers idle for long with nothing pending (never one that owns entries)."""
        consumers = await self.redis.xinfo_consumers(self.keys.stream, self.group)
        for c in consumers:
            name = _text(c["name"])
            if name == self.consumer or int(c["pending"]) > 0:
                continue
            if int(c["idle"]) >= self.settings.consumer_gc_idle_ms:
                await self.scripts("forget_consumer", [self.keys.stream], [self.group, name])
        if self.agent.trim_keep is not None:
            await self.scripts("trim", [self.keys.stream], [self.agent.trim_keep])

    async def _forget_self(self) -> None:
        try:
            await self.scripts("forget_consumer", [self.keys.stream], [self.group, self.consumer])
        except (*CONNECTION_ERRORS, ResponseError):  # type: ignore[misc]
            pass


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
