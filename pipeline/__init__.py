"""An event-driven streams pipeline on Redis: producers, consumer-group agents, retries,
dead letters and projections. See the README for a tour.

The names below are imported on first use, so that ``pipeline --help`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Agent": "pipeline.agent",
    "Context": "pipeline.agent",
    "Hooks": "pipeline.agent",
    "ConfigError": "pipeline.errors",
    "DecodeError": "pipeline.errors",
    "Fail": "pipeline.errors",
    "PipelineError": "pipeline.errors",
    "Retry": "pipeline.errors",
    "ServerError": "pipeline.errors",
    "Producer": "pipeline.producer",
    "Settings": "pipeline.settings",
    "Worker": "pipeline.worker",
}

__all__ = [
    "Agent", "ConfigError", "Context", "DecodeError", "Fail", "Hooks", "PipelineError",
    "Producer", "Retry", "ServerError", "Settings", "Worker",
]

if TYPE_CHECKING:
    from pipeline.agent import Agent, Context, Hooks
    from pipeline.errors import ConfigError, DecodeError, Fail, PipelineError, Retry, ServerError
    from pipeline.producer import Producer
    from pipeline.settings import Settings
    from pipeline.worker import Worker


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
