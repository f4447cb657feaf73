"""Placeholder for ``pipeline control`` (filled in by issue 4's work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``pipeline control`` to ``app`` (nothing yet)."""
