"""Shared pieces of the CLI's shape: click usage errors as one line (``error: <reason>``),
settings with logging for a command, and a console for tables."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from pipeline.cli.common import fail, settings, setup_logging
from pipeline.errors import ConfigError
from pipeline.settings import Settings

try:  # typer >= 0.22 vendors click; older ones use the click package
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]


def _usage_error(exc: UsageError) -> typer.Exit:
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return fail(exc.format_message().rstrip(".") + hint, exc.exit_code)


class _OneLine:
    """Usage errors raised while parsing the arguments become ``error: <reason>``."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[misc]
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            raise _usage_error(exc) from None


class OneLineCommand(_OneLine, TyperCommand):
    """A command whose usage errors print as ``error: <reason>`` on one line."""


class OneLineGroup(_OneLine, TyperGroup):
    """A command group whose usage errors (unknown command, ...) print on one line."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except UsageError as exc:
            raise _usage_error(exc) from None



def prepare(ctx: typer.Context) -> Settings:
    """Settings for a command, logging configured; a bad setting is a one-line error."""
    try:
        s = settings(ctx)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    setup_logging(s)
    return s


def console() -> Any:
    """A rich console for stdout; off a terminal it is wide, so tables are not cut to 80
    columns for whoever reads them from a pipe or a file."""
    from rich.console import Console

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console(highlight=False)
    return Console(highlight=False, width=200)


