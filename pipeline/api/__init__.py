"""The HTTP API: the seed's six routes byte for byte, the versioned ``/v1`` JSON API with
problem details, ``/metrics`` and ``/openapi.json``. Build it with ``create_app``; serve it
with ``pipeline serve``."""

from __future__ import annotations

from pipeline.api.app import create_app

__all__ = ["create_app"]
