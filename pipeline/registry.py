"""Finding agents by name: ``module`` or ``module:attribute`` (default attribute ``agent``).

The attribute is an ``Agent`` or a factory returning one; options given on the command line
(``queue``, ``concurrency``) are passed to a factory, or applied to an ``Agent``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from pipeline.agent import Agent
from pipeline.errors import ConfigError
from pipeline.keys import job_topic


def load_agent(spec: str, **options: Any) -> Agent:
    """Import ``spec`` and build its agent; raises ``ConfigError`` with what to fix."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "agent"
    if not module_name or module_name.startswith(".") or not attr.isidentifier():
        raise ConfigError(
            f"invalid agent {spec!r}: give a dotted path such as agents.notifications "
            "or module:attribute"
        )
    # like `python -m` and uvicorn: modules in the current folder are found
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"cannot import agent module {module_name!r} ({exc}); "
            "give a dotted path such as agents.notifications"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise ConfigError(
            f"agent module {module_name!r} failed to import: {type(exc).__name__}: {exc}"
        ) from None
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}")
    options = {k: v for k, v in options.items() if v is not None}
    if isinstance(target, Agent):
        agent = target
        if "queue" in options:
            agent = agent.replace(topic=job_topic(options.pop("queue")))
        return agent.replace(**options) if options else agent
    if isinstance(target, type):
        raise ConfigError(f"{spec!r} is a class, not an Agent or a function returning one")
    if callable(target):
        params = inspect.signature(target).parameters
        unknown = [k for k in options if k not in params]
        if unknown:
            raise ConfigError(f"agent {spec!r} does not take option(s): {', '.join(unknown)}")
        try:
            agent = target(**options)
        except TypeError as exc:
            raise ConfigError(f"{spec!r} is not an agent factory: {exc}") from None
        if not isinstance(agent, Agent):
            raise ConfigError(f"{spec!r} returned {type(agent).__name__}, not an Agent")
        return agent
    raise ConfigError(f"{spec!r} is neither an Agent nor a function returning one")
