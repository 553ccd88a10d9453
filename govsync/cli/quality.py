"""`govsync quality`: 一数一源 findings, where a source disagrees with the authoritative one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, errors, print_json
from govsync.cli.topology import in_force
from streams.config.settings import Settings

if TYPE_CHECKING:
    from govsync.ops.quality import SourceQuality

# Added without a name: `quality` is a top-level command of `govsync`.
app = typer.Typer()


@app.command("quality")
def quality(
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this entity key.")] = None,
    source: Annotated[str | None, typer.Option(help="Only findings involving this source.")] = None,
    rates_only: Annotated[
        bool, typer.Option("--rates", help="Only each source's error and objection rates.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Each source's error and objection rates, then the 一数一源 findings: where a
    source's copy differs from the authoritative value. --json: the findings (with
    --rates: the rates)."""
    from govsync.ops.quality import findings, rates

    settings = Settings.from_env()
    with errors():
        per_source = rates(settings, in_force(settings))
        found = [] if rates_only else findings(settings, entity=entity, key=key, source=source)
    if as_json:
        shown = per_source if rates_only else found
        print_json([item.model_dump(mode="json") for item in shown])
        return
    console.print(rates_table(per_source))
    if rates_only:
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


def rates_table(per_source: list[SourceQuality]) -> Table:
    table = Table(title="per source: errors (dead-lettered) and objections (数据异议)")
    for column in ("source", "processed", "dead-lettered", "error rate", "objections", "open"):
        table.add_column(column)
    table.add_column("resolved / rejected")
    table.add_column("objection rate")
    for q in per_source:
        table.add_row(
            q.source,
            f"{q.processed:,}",
            f"{q.dead_lettered:,}",
            _percent(q.error_rate),
            str(q.objections),
            f"[red]{q.open}[/red]" if q.open else "0",
            f"{q.resolved} / {q.rejected}",
            _percent(q.objection_rate),
        )
    return table


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.3%}"
