"""The HTTP API: the seed's six routes byte for byte, the versioned ``/v1`` JSON API with
problem details, ``/metrics`` and ``/openapi.json``. Build it with ``create_app``; serve it
with ``pipeline serve``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app"]

if TYPE_CHECKING:
    from pipeline.api.app import create_app


def __getattr__(name: str) -> Any:
    # imported on first use: the submodules stay importable on their own
    if name == "create_app":
        from pipeline.api.app import create_app

        return create_app
    raise AttributeError(f"module 'pipeline.api' has no attribute {name!r}")
