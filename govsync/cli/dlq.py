"""`govsync dlq`: the held records, their accounting against the topics, reprocessing."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import (
    EXIT_FAILED,
    EXIT_INVALID,
    JsonFlag,
    console,
    err,
    errors,
    index_behind,
    print_json,
    progress,
)
from govsync.cli.topology import in_force
from streams.config.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The dead-letter queue: held records, reprocessing.")


@app.command("list")
def dlq_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include closed records.")] = False,
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many records.")] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Held records and the accounting: processed = normalized + dead-lettered, per source.

    Exit 1 when a source does not balance."""
    from govsync.ops import dlq

    settings = Settings.from_env()
    with errors():
        topology = in_force(settings)
        records, behind = dlq.held(settings, closed_too=show_all, limit=limit)
        accounts = dlq.accounting(settings, topology)
    index_behind(max(behind, *(a.index_behind for a in accounts)))
    if as_json:
        print_json(
            {
                "records": [r.model_dump() for r in records],
                "accounting": [{**a.model_dump(), "balanced": a.balanced} for a in accounts],
            }
        )
    else:
        held = sum(a.dead_letters_held for a in accounts)
        still_open = sum(a.dead_letters_open for a in accounts)
        table = Table(
            title=f"govsync.dlq: {still_open} open of {held}"
            + (f" (the first {len(records)} shown)" if len(records) == limit else "")
        )
        for column in ("position", "error", "source record", "reason", "held since", "closed"):
            table.add_column(column)
        for r in records:
            table.add_row(
                r.position,
                r.error_code,
                f"{r.source_topic}[{r.source_partition}]@{r.source_offset}",
                r.error_message[:80],
                r.dead_lettered_at or "",
                r.closure.outcome if r.closure else "",
            )
        console.print(table)
        summary = Table(title="accounting (counted by the index from the topics)")
        columns = ("source", "captured", "processed", "in flight", "normalized", "dead-lettered")
        for column in (*columns, "open", "balanced"):
            summary.add_column(column)
        for a in accounts:
            summary.add_row(
                a.source,
                str(a.captured),
                str(a.processed),
                str(a.in_flight),
                str(a.normalized),
                str(a.dead_lettered),
                str(a.dead_letters_open),
                {True: "[green]yes[/green]", False: "[red]NO[/red]", None: "not yet"}[a.balanced],
            )
        console.print(summary)
    if any(a.balanced is False for a in accounts):
        raise typer.Exit(EXIT_FAILED)


@app.command("show")
def dlq_show(position: str, as_json: JsonFlag = False) -> None:
    """One held record (``<partition>:<offset>``): reason, source position, decoded original."""
    from govsync.ops import dlq

    with errors():
        try:
            detail = dlq.show(Settings.from_env(), position)
        except dlq.NotAPosition as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(EXIT_INVALID) from None
        except KeyError:
            err.print(f"[red]error:[/red] no record at {position} on govsync.dlq")
            raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        print_json(detail)
    else:
        console.print_json(json.dumps(detail, ensure_ascii=False, default=str))


@app.command("reprocess")
def dlq_reprocess(
    positions: Annotated[list[str] | None, typer.Argument(help="Only these positions.")] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Report what would happen; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run open records through normalize again, by the rules in force (fix the topology and
    apply it first); close successes."""
    from govsync.ops import dlq

    settings = Settings.from_env()
    with errors(), progress("reprocessing", quiet=as_json) as update:
        try:
            report = dlq.reprocess(
                settings,
                in_force(settings),
                positions=set(positions) if positions else None,
                dry_run=dry_run,
                progress=update,
            )
        except dlq.NotAPosition as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        print_json(report.model_dump())
        return
    verb = "would close" if dry_run else "closed"
    console.print(
        f"examined {report.examined}: {verb} {report.reprocessed} reprocessed and "
        f"{report.superseded} superseded; still failing: "
        + (", ".join(f"{code} {n}" for code, n in report.still_failing.items()) or "none")
    )
