"""`govsync audit`: verify the hash-chained audit trail; who received an entity's data."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import (
    EXIT_FAILED,
    JsonFlag,
    console,
    errors,
    index_behind,
    print_json,
    progress,
)
from govsync.cli.topology import in_force_meanwhile
from streams.config.settings import Settings

app = typer.Typer(
    no_args_is_help=True, help="The tamper-evident audit trail: verify it, ask who received what."
)


@app.command("verify")
def audit_verify(
    topic: Annotated[str, typer.Option(help="Verify another copy of the trail.")] = "govsync.audit",
    incremental: Annotated[
        bool,
        typer.Option(
            help="Start each chain at the last checkpoint an earlier walk found intact "
            "(kept in the index database) instead of at its start."
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Walk every hash chain; report altered, removed, reordered or duplicated records,
    and against the witness's checkpoints a tail cut off (truncated) or re-hashed.

    Each chain found intact has its last checkpoint remembered, for --incremental."""
    from govsync.index import verified, witness
    from streams.trail import audit

    settings = Settings.from_env()
    with errors():
        resume = verified.checkpoints(settings, topic) if incremental else {}
        testimony = witness.witnessed(settings, topic)
        with progress(f"walking the chains of {topic}", quiet=as_json) as update:
            reports = audit.verify_topic(
                settings, topic, resume=resume, witnessed=testimony, progress=update
            )
        verified.remember(settings, topic, reports)
    if as_json:
        print_json(
            {
                "topic": topic,
                "intact": all(r.intact for r in reports.values()),
                "chains": {
                    p: {
                        **r.model_dump(),
                        "intact": r.intact,
                        "witnessed": len(testimony.get(p, {})),
                    }
                    for p, r in reports.items()
                },
            }
        )
    else:
        table = Table(title=f"{topic}: one hash chain per partition")
        columns = ("partition", "from offset", "records", "checkpoints", "witnessed", "head")
        for column in (*columns, "verdict"):
            table.add_column(column)
        for partition, report in sorted(reports.items()):
            verdict = "[green]intact[/green]" if report.intact else "[red]BROKEN[/red]"
            table.add_row(
                str(partition),
                str(report.from_offset),
                str(report.records),
                str(report.checkpoints),
                str(len(testimony.get(partition, {}))),
                report.head_sha256[:16],
                verdict,
            )
        console.print(table)
        for partition, report in sorted(reports.items()):
            for finding in report.findings:
                console.print(
                    f"[red]{finding.problem}[/red] partition {partition} offset "
                    f"{finding.offset} (seq {finding.seq}): {finding.message}"
                )
    if not all(r.intact for r in reports.values()):
        raise typer.Exit(EXIT_FAILED)


@app.command("who-received")
def audit_who_received(
    key: Annotated[str, typer.Argument(help="An entity key (USCC, resident ID).")],
    as_json: JsonFlag = False,
) -> None:
    """Which departments received which fields of an entity, when, under which approval."""
    from datetime import datetime

    from govsync.index import queries
    from streams.model.topology import CST
    from streams.trail import audit

    settings = Settings.from_env()
    with errors(), in_force_meanwhile(settings) as in_force_now:
        with queries.current(settings) as (conn, missing):
            received = audit.who_received(queries.audit_entries(conn, key), key)
        names = {d: dept.name for d, dept in in_force_now.result().departments.items()}
    index_behind(missing)
    if as_json:
        print_json([r.model_dump() for r in received])
        return
    looked_up = sum(r.via == "query" for r in received)
    table = Table(
        title=f"who received {key}: {len(received) - looked_up} deliveries, {looked_up} look-ups"
    )
    for column in ("when (CST)", "department", "change", "fields", "approval", "receipt"):
        table.add_column(column)
    for r in received:
        fields = ", ".join(f"{f} ({r.masked[f]})" if f in r.masked else f for f in r.fields)
        approval = r.approval
        table.add_row(
            f"{datetime.fromtimestamp(r.at_ms / 1000, CST):%Y-%m-%d %H:%M:%S}",
            names.get(r.department, r.department),
            r.kind,
            fields,
            f"{approval.get('state', '')} by {approval.get('by', '?')}: "
            f"{approval.get('purpose', '')} ({approval.get('legal_basis', '')}, "
            f"until {approval.get('expires', '')})",
            "(look-up)" if r.via == "query" else r.receipt or "[yellow]none yet[/yellow]",
        )
    console.print(table)
