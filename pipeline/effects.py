"""Effects: writes that must happen in the same atomic step as an ack or a produce.

A handler (or the job layer) collects them; the settle/produce scripts run them only when
the entry is still owned (fencing) or the event is new (idempotent produce).
"""

from __future__ import annotations

from typing import Any

Arg = str | bytes | int | float


class Effects:
    """An ordered list of whitelisted Redis commands (see ``lua/_effects.lua``)."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Arg, ...]] = []

    def __bool__(self) -> bool:
        return bool(self.commands)

    def hset(self, key: str, mapping: dict[str, Arg]) -> Effects:
        args: list[Arg] = ["HSET", key]
        for k, v in mapping.items():
            args += (k, v)
        self.commands.append(tuple(args))
        return self

    def hincrby(self, key: str, field: str, amount: int) -> Effects:
        self.commands.append(("HINCRBY", key, field, amount))
        return self

    def xadd(self, key: str, fields: dict[str, Arg], maxlen: int | None = None) -> Effects:
        args: list[Arg] = ["XADD", key]
        if maxlen:
            args += ("MAXLEN", "~", maxlen)
        args.append("*")
        for k, v in fields.items():
            args += (k, v)
        self.commands.append(tuple(args))
        return self

    def publish(self, channel: str, message: Arg) -> Effects:
        self.commands.append(("PUBLISH", channel, message))
        return self

    def command(self, *args: Arg) -> Effects:
        """Any other whitelisted command, e.g. ``("ZADD", key, score, member)``."""
        self.commands.append(args)
        return self

    def extend(self, other: Effects | None) -> Effects:
        if other:
            self.commands.extend(other.commands)
        return self

    def as_lists(self) -> list[list[str]]:
        """The commands as lists of text, for the JSON the settle script reads."""
        return [[_text(a) for a in cmd] for cmd in self.commands]

    def encode(self, out: list[Any]) -> None:
        """Append this block, as the scripts read it, to ``out``."""
        out.append(len(self.commands))
        for cmd in self.commands:
            out.append(len(cmd))
            out.extend(cmd)


def _text(value: Arg) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
