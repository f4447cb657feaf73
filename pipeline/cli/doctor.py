"""``pipeline doctor``: can the pipeline run on this server, and how far away is it?"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pipeline.cli.common import run, with_client
from pipeline.cli.shape import OneLineCommand, console, prepare
from pipeline.doctor import Report, diagnose


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    pings: Annotated[int, typer.Option(min=1, max=10_000,
                                       help="PINGs to time for the latency figures.")] = 50,
) -> None:
    """Check the server: name, version, every stream feature the pipeline uses, latency.

    Exits 1 when a required feature is missing.

    Example: REDIS_URL=redis://localhost:6379 pipeline doctor
    """
    s = prepare(ctx)

    async def body() -> Report:
        return await with_client(s, lambda redis: diagnose(redis, pings))

    report = run(body)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: Report) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    out.print(escape(f"server:  {report.server} {report.version} ({report.mode})"))
    out.print(f"latency: median {report.ping_median_ms:.3f} ms, "
                  f"p99 {report.ping_p99_ms:.3f} ms (PING round trip)")
    table = Table()
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        result = "ok" if c.ok else ("MISSING" if c.required else "warning")
        style = "green" if c.ok else ("red" if c.required else "yellow")
        table.add_row(escape(c.name), f"[{style}]{result}[/{style}]", escape(c.detail))
    out.print(table)
    out.print("all required features work" if report.ok
                  else "[red]a required feature is missing: the pipeline cannot run here[/red]")


def register(app: typer.Typer) -> None:
    """Add ``pipeline doctor`` to ``app``."""
    app.command("doctor", cls=OneLineCommand)(doctor)
