"""Every Redis key and channel name the pipeline uses, built in one place.

All keys of one partition share the hash tag ``{<topic>:<partition>}`` so that one Lua
script or MULTI can touch them all, on a single server and on Redis Cluster alike.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from pipeline.errors import InvalidName

PREFIX = "pl"
#: the control stream: operators' commands to every worker; its newest entry holds the
#: current pause state (``pipeline.control``)
CONTROL_STREAM = f"{PREFIX}:control"
#: the channel control commands are announced on; ``pipeline serve`` stops on KILL_SERVER here
CONTROL_CHANNEL = f"{PREFIX}:control"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_TOPIC = re.compile(r"^[A-Za-z0-9_.\-]{1,100}(:[A-Za-z0-9_.\-]{1,100})?$")


def shown(value: object, limit: int = 60) -> str:
    """``value`` as it goes in an error message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


def check_name(kind: str, value: str) -> str:
    """Queue, group and agent names: letters, digits, ``_ . -``; 1-100 characters."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidName(
            f"invalid {kind} name {shown(value)}: use 1-100 letters, digits, '_', '.' or '-'"
        )
    return value


def check_topic(value: str) -> str:
    if not isinstance(value, str) or not _TOPIC.fullmatch(value):
        raise InvalidName(
            f"invalid topic {shown(value)}: use NAME or KIND:NAME with letters, digits, '_', '.'"
            " or '-'"
        )
    return value


def job_topic(queue: str) -> str:
    return f"jobs:{check_name('queue', queue)}"


def partition_of(key: str, partitions: int) -> int:
    """The partition an event id or entity id belongs to (stable across processes)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one partition of one topic."""

    topic: str
    partition: int = 0

    @property
    def base(self) -> str:
        return f"{PREFIX}:{{{self.topic}:{self.partition}}}"

    @property
    def stream(self) -> str:
        return f"{self.base}:stream"

    @property
    def dead(self) -> str:
        return f"{self.base}:dead"

    @property
    def delayed(self) -> str:
        return f"{self.base}:delayed"

    @property
    def events(self) -> str:
        """Lifecycle events of a job queue (created, progress, completed, ...)."""
        return f"{self.base}:events"

    @property
    def seq(self) -> str:
        """Counter for readable job ids."""
        return f"{self.base}:seq"

    @property
    def counts(self) -> str:
        """A job queue's outcome counters (hash: ``completed``, ``failed``), each bumped in
        the same atomic step as the job's outcome."""
        return f"{self.base}:counts"

    @property
    def rate(self) -> str:
        """Throughput buckets of the partition's groups and samples of its stream's
        entries-added counter (hash, written by ``lua/rate.lua``; expires when unused)."""
        return f"{self.base}:rate"

    def dedup(self, event_id: str) -> str:
        return f"{self.base}:dedup:{event_id}"

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"

    def proj(self, name: str) -> str:
        return f"{self.base}:proj:{name}"

    def checkpoint(self, name: str) -> str:
        return f"{self.base}:proj:{name}:checkpoint"

    @property
    def channel(self) -> str:
        """Pub/sub channel for live fan-out of this topic's lifecycle events."""
        return f"{PREFIX}:events:{self.topic}"


def topics_pattern() -> str:
    """SCAN pattern matching every stream of every topic."""
    return f"{PREFIX}:{{*}}:stream"


def parse_stream_key(key: str) -> Keys | None:
    m = re.match(r"^pl:\{(.+):(\d+)\}:stream$", key)
    if not m:
        return None
    return Keys(m.group(1), int(m.group(2)))
