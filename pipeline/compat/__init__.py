"""The original exercise's data and exact strings (a copy of the seed, shipped with the package)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SEED_PATH = Path(__file__).parent / "seed.json"


@cache
def seed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SEED_PATH.read_text())
    return data


def line(section: str, name: str, **values: Any) -> str:
    """A seed line, e.g. ``line("notifications", "completed", id=3)``."""
    template: str = seed()[section]["lines"][name]
    return template.format(**values)
