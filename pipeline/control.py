"""Placeholder: control commands for running workers (filled in by issue 4's work)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.worker import Worker


async def obey(worker: Worker) -> None:
    """Obey control commands for ``worker`` until it stops (nothing yet)."""
