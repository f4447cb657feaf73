"""What one worker counts while it runs: outcomes and handler latency.

Plain integers and a fixed-bucket histogram, updated on the hot path for a few hundred
nanoseconds an entry; exporters (Prometheus, throughput in Redis) read them when asked.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

#: upper bounds (seconds) of the handler-latency buckets; the last bucket is +Inf
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum of observations."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus' shape: (upper bound as text, count at or below it), ending with +Inf."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class Stats:
    """Counts of one worker since it started."""

    read: int = 0
    #: settled as done (acked)
    acked: int = 0
    #: handler runs that raised or timed out (each then retried or dead-lettered)
    failed: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    deleted: int = 0
    reclaimed: int = 0
    latency: Histogram = field(default_factory=Histogram)

    @property
    def handled(self) -> int:
        """Entries settled with an outcome (done, retried or dead-lettered)."""
        return self.acked + self.retried + self.dead

    def counts(self) -> dict[str, int]:
        """The counters alone (for logs and JSON)."""
        return {name: getattr(self, name) for name in (
            "read", "acked", "failed", "retried", "dead", "lost", "deleted", "reclaimed")}
