"""`govsync quality`: 一数一源 findings, where a source disagrees with the authoritative one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, errors, print_json
from streams.config.settings import Settings

# Added without a name: `quality` is a top-level command of `govsync`.
app = typer.Typer()


@app.command("quality")
def quality(
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this entity key.")] = None,
    source: Annotated[str | None, typer.Option(help="Only findings involving this source.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """一数一源 findings: where a source's copy differs from the authoritative value."""
    from govsync.ops.quality import findings

    with errors():
        found = findings(Settings.from_env(), entity=entity, key=key, source=source)
    if as_json:
        print_json([f.model_dump(mode="json") for f in found])
        return
    table = Table(title=f"govsync.quality: {len(found)} findings")
    for column in ("recorded", "entity", "key", "field", "authoritative", "other"):
        table.add_column(column)
    for f in found:
        table.add_row(
            f"{f.recorded_at:%Y-%m-%d %H:%M:%S}",
            f.entity,
            f.key,
            f.field,
            f"{f.authoritative_value} ({f.authoritative_source})",
            f"{f.other_value} ({f.other_source})",
        )
    console.print(table)
