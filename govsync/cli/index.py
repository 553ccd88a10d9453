"""`govsync index`: the operations indexes in PostgreSQL — how far they are, and
recreating them from the topics."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, errors, print_json, progress
from streams.config.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The operations indexes: status, rebuild.")


@app.command("status")
def index_status(as_json: JsonFlag = False) -> None:
    """Records the index has still to read per topic, and what it holds."""
    from govsync.index import rebuild

    with errors():
        found = rebuild.status(Settings.from_env())
    if as_json:
        print_json(found.model_dump())
        return
    table = Table(title=f"index database {found.database!r}")
    table.add_column("")
    table.add_column("", justify="right")
    for topic, behind in found.behind.items():
        table.add_row(f"behind {topic}", str(behind))
    for name, rows in found.rows.items():
        table.add_row(f"rows in {name} (estimate)", str(rows))
    table.add_row("records not indexed (undecodable)", str(found.unindexed))
    table.add_row("rebuild under way", "yes" if found.rebuilding else "no")
    console.print(table)


@app.command("rebuild")
def index_rebuild(
    restart: Annotated[
        bool, typer.Option(help="Start over even if an earlier rebuild stopped half-way.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Recreate the indexes from the topics (the record of truth): govsync.trace,
    govsync.audit, govsync.dlq, govsync.dlq.closed and the change topics' counts.

    The running indexer is stopped meanwhile and started again after. A rebuild that is
    interrupted goes on from where it stopped when run again."""
    from govsync.index import rebuild
    from govsync.stack import background, supervision

    settings = Settings.from_env()
    with errors():
        was_running = supervision.stop(settings, background.INDEXER_PROGRAM)
        try:
            with progress("rebuilding the index", quiet=as_json) as update:
                done = rebuild.rebuild(settings, update, restart=restart)
        finally:
            if was_running:
                background.start_indexer(settings)
    if as_json:
        print_json(done.model_dump())
    else:
        how = "went on with the stopped rebuild" if done.resumed else "rebuilt"
        console.print(f"{how}: {done.records} records read, the index is at the topics' ends")
