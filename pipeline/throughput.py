"""Placeholder: a worker's throughput recorded in Redis (filled in by issue 4's work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.worker import Worker


async def record(worker: Worker) -> None:
    """Record ``worker``'s throughput until it stops (nothing yet)."""
