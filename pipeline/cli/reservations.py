"""``pipeline audit``, ``pipeline replay <projection>``, ``pipeline inventory reset|show``."""

from __future__ import annotations

import importlib
import json
from typing import Annotated, Any, Optional

import typer

from pipeline.cli.common import run, with_client
from pipeline.cli.shape import OneLineCommand, OneLineGroup, console, prepare
from pipeline.errors import ConfigError

inventory_app = typer.Typer(
    name="inventory", cls=OneLineGroup, no_args_is_help=True,
    help="Products and seats.\n\nExample: pipeline inventory show",
)


def audit(
    ctx: typer.Context,
    until: Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional
        "--until", help="Fold only up to this ledger entry id or ISO time (naive = UTC) and "
        "show the counts as of then.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Fold the reservations ledger and compare it with the write and read models.

    Prints every difference and exits 1 if there is one; prints `audit: OK` otherwise.

    Example: pipeline audit --until 2026-01-31T12:00:00Z
    """
    from pipeline.audit import audit as run_audit

    s = prepare(ctx)
    report = run(lambda: with_client(s, lambda redis: run_audit(redis, until=until)))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    ledger = report.ledger
    if report.until is not None:
        out.print(f"ledger as of {report.as_of}: {ledger.entries} entries")
    else:
        out.print(f"ledger: {ledger.entries} entries, to {report.as_of}")
        if report.projector_position is None:
            out.print("projector: not started (read model expected empty)")
        else:
            out.print(f"projector: at {report.projector_position}, "
                      f"{report.projector_pending} pending, lag {report.lag}")
    table = Table()
    table.add_column("resource", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("ledger", justify="right", no_wrap=True)
    if report.until is None:
        table.add_column("write", justify="right", no_wrap=True)
        table.add_column("read", justify="right", no_wrap=True)
    for rid, count in ledger.counts.items():
        row = [escape(rid), escape(str(ledger.catalog.get(rid, {}).get("kind", ""))), str(count)]
        if report.until is None:
            row += [str(report.write_counts.get(rid, "-")), str(report.read_counts.get(rid, "-"))]
        table.add_row(*row)
    out.print(table)
    holders = sum(1 for v in ledger.customers.values() if v)
    out.print(f"customers holding reservations: {holders}")
    if report.differences:
        diffs = Table(title="differences")
        for name in ("model", "key", "expected (ledger)", "actual"):
            diffs.add_column(name, overflow="fold")
        for d in report.differences:
            diffs.add_row(escape(d.model), escape(d.key), escape(str(d.expected)),
                          escape(str(d.actual)))
        out.print(diffs)
        n = len(report.differences)
        out.print(f"audit: {n} difference{'s' if n != 1 else ''}")
    else:
        out.print("audit: OK")


def load_projection(name: str) -> Any:
    """``inventory`` (= ``agents.inventory_projector:projection``) or ``module:attribute``."""
    from pipeline.projector import Projection

    if ":" in name:
        module_name, _, attr = name.partition(":")
    elif "." in name:
        module_name, attr = name, "projection"
    else:
        module_name, attr = f"agents.{name}_projector", "projection"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise ConfigError(f"no projection {name!r}: give a name such as inventory, or "
                          "module:attribute") from None
    target = getattr(module, attr, None)
    if not isinstance(target, Projection):
        raise ConfigError(f"{module_name}:{attr} is not a Projection")
    return target


def replay(
    ctx: typer.Context,
    projection: Annotated[str, typer.Argument(help="inventory, or module:attribute")],
) -> None:
    """Rebuild a projection's read models from the log and swap them in atomically.

    Moves the projector's group to the end of the log and acks what was pending, so
    nothing is applied twice when the projector goes on.

    Example: pipeline replay inventory
    """
    from pipeline.replay import replay as run_replay

    s = prepare(ctx)

    async def body() -> Any:
        target = load_projection(projection)
        return await with_client(s, lambda redis: run_replay(redis, target))

    result = run(body)
    print(f"replayed {result.entries} entries into {', '.join(result.keys.values())}; "
          f"position {result.position}; {result.acked_pending} pending entries acked"
          + (f"; {result.skipped} undecodable entries skipped" if result.skipped else ""))


@inventory_app.command("reset", cls=OneLineCommand)
def reset(ctx: typer.Context) -> None:
    """Put the seed's products and seats back to their initial counts, on purpose.

    Recorded on the ledger (InventoryDefined), so the projector and the audit follow.

    Example: pipeline inventory reset
    """
    from pipeline.reservations import SEED_RESOURCES, Inventory

    s = prepare(ctx)

    async def body(redis: Any) -> dict[str, int]:
        inventory = Inventory(redis)
        await inventory.reset(SEED_RESOURCES)
        return await inventory.counts()

    counts = run(lambda: with_client(s, body))
    print("inventory reset: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


@inventory_app.command("show", cls=OneLineCommand)
def show(ctx: typer.Context) -> None:
    """The products and seats with their available counts (the write model).

    Example: pipeline inventory show
    """
    from rich.markup import escape
    from rich.table import Table

    from pipeline.reservations import Inventory

    s = prepare(ctx)

    async def body(redis: Any) -> tuple[list[Any], dict[str, int]]:
        inventory = Inventory(redis)
        return await inventory.catalog(), await inventory.counts()

    catalog, counts = run(lambda: with_client(s, body))
    if not catalog:
        print("no inventory defined yet (pipeline inventory reset defines the seed's)")
        return
    table = Table()
    for name in ("resource", "kind", "name", "price", "initial", "available"):
        table.add_column(name, no_wrap=True)
    for r in catalog:
        table.add_row(*(escape(str(x)) for x in (r.resource_id, r.kind, r.name, r.price,
                                                  r.quantity, counts.get(r.resource_id, "-"))))
    console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``pipeline audit``, ``pipeline replay`` and ``pipeline inventory ...`` to ``app``."""
    app.command("audit", cls=OneLineCommand)(audit)
    app.command("replay", cls=OneLineCommand)(replay)
    app.add_typer(inventory_app, name="inventory")
