"""`govsync receipts`: deliveries a department has not yet acknowledged (the receipt SLA)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, errors, index_behind, print_json
from govsync.cli.topology import in_force_meanwhile
from streams.config.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The receipt SLA: unanswered deliveries.")


@app.command("overdue")
def receipts_overdue(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also deliveries still within receipt_within.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Deliveries a department has not answered within its subscription's receipt_within."""
    import time
    from datetime import datetime

    from govsync.index import queries
    from streams.model.topology import CST

    settings = Settings.from_env()
    with (
        errors(),
        in_force_meanwhile(settings) as in_force_now,
        queries.current(settings) as (conn, missing),
    ):
        waiting = queries.unanswered(conn, in_force_now.result(), int(time.time() * 1000))
    index_behind(missing)
    shown = [w for w in waiting if show_all or w.overdue]
    if as_json:
        print_json([{**w.model_dump(), "overdue": w.overdue} for w in shown])
        return
    overdue = sum(w.overdue for w in waiting)
    table = Table(title=f"receipts: {overdue} overdue, {len(waiting) - overdue} awaited")
    for column in ("delivered (CST)", "subscription", "entity key", "waited", "limit", "event_id"):
        table.add_column(column)
    for w in shown:
        colour = "red" if w.overdue else "yellow"
        table.add_row(
            f"{datetime.fromtimestamp(w.delivered_at_ms / 1000, CST):%Y-%m-%d %H:%M:%S}",
            w.subscription,
            w.entity_key,
            f"[{colour}]{w.waited_ms / 1000:.0f}s[/{colour}]",
            f"{w.receipt_within_ms / 1000:.0f}s",
            w.event_id,
        )
    console.print(table)
