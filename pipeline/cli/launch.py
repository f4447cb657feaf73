"""The ``pipeline`` console script. Importing the CLI takes a moment; a Ctrl-C meanwhile is
the same one-line ``error: interrupted`` (exit 130) as later, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from pipeline.cli.main import main as cli
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    cli()
