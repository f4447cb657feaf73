"""The Lua scripts in ``pipeline/lua``, loaded once and called by SHA (EVALSHA, EVAL on NOSCRIPT)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_INCLUDE = "--#include effects"
LUA_DIR = Path(__file__).parent / "lua"


@cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua`` with its includes expanded."""
    text = (LUA_DIR / f"{name}.lua").read_text()
    if _INCLUDE in text:
        shared = (LUA_DIR / "_effects.lua").read_text()
        text = text.replace(_INCLUDE, shared)
    return text


class Scripts:
    """The scripts registered on one client."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = {}

    def get(self, name: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            script = self._redis.register_script(source(name))
            self._scripts[name] = script
        return script

    async def __call__(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.get(name)(keys=keys, args=args)
