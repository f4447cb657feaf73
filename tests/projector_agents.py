"""Test-only variants of the inventory projector, run by worker subprocesses.

``holding``: the real projector, except that after folding ``HOLD_AFTER`` entries (an
environment variable) its handler blocks until the process is killed. The entries folded so
far are settled (acked with their writes and the checkpoint); the rest of the batch it read
stays pending with it. ``pipeline worker tests.projector_agents:holding``.
"""

from __future__ import annotations

import asyncio
import os

from agents import inventory_projector
from pipeline.agent import Context
from schemas.base import EventModel

_real = inventory_projector.agent
_folded = 0


async def _hold_after(event: EventModel, ctx: Context) -> None:
    global _folded
    if _folded >= int(os.environ.get("HOLD_AFTER", "0")):
        await asyncio.Event().wait()  # until the process is killed
    _folded += 1
    await _real.handler(event, ctx)


holding = _real.replace(handler=_hold_after)
