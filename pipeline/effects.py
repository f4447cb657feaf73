"""Effects: writes that must happen in the same atomic step as an ack or a produce.

A handler (or the job layer) collects them; the settle/produce scripts run them only when
the entry is still owned (fencing) or the event is new (idempotent produce). Arguments are
kept as text from the start, so a batch goes to the script as one JSON string cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Arg = str | bytes | int | float


def _text(value: Arg) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class Effects:
    """An ordered list of whitelisted Redis commands (see ``lua/_effects.lua``)."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __bool__(self) -> bool:
        return bool(self.commands)

    def hset(self, key: str, mapping: Mapping[str, Arg]) -> Effects:
        args = ["HSET", key]
        for k, v in mapping.items():
            args += (k, _text(v))
        self.commands.append(args)
        return self

    def hincrby(self, key: str, field: str, amount: int) -> Effects:
        self.commands.append(["HINCRBY", key, field, str(amount)])
        return self

    def xadd(self, key: str, fields: Mapping[str, Arg], maxlen: int | None = None) -> Effects:
        args = ["XADD", key]
        if maxlen:
            args += ("MAXLEN", "~", str(maxlen))
        args.append("*")
        for k, v in fields.items():
            args += (k, _text(v))
        self.commands.append(args)
        return self

    def publish(self, channel: str, message: Arg) -> Effects:
        self.commands.append(["PUBLISH", channel, _text(message)])
        return self

    def command(self, *args: Arg) -> Effects:
        """Any other whitelisted command, e.g. ``("ZADD", key, score, member)``."""
        self.commands.append([_text(a) for a in args])
        return self

    def extend(self, other: Effects | None) -> Effects:
        if other:
            self.commands.extend(other.commands)
        return self

    def as_lists(self) -> list[list[str]]:
        """The commands as lists of text, for the JSON the scripts read."""
        return self.commands

    def encode(self, out: list[Any]) -> None:
        """Append this block, as ``check_effects``/``run_effects`` read it, to ``out``."""
        out.append(len(self.commands))
        for cmd in self.commands:
            out.append(len(cmd))
            out.extend(cmd)
