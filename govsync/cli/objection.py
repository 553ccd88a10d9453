"""`govsync objection`: 使用—评价. A department objects to a record it was delivered
(数据异议); the finding, carrying the record, reaches the source department, which resolves
or rejects it with a reason. Every step is signed by its author and on the audit trail;
`govsync quality` and the monitor show the rates per source.

``--as`` acts as that principal (default: GOVSYNC_KAFKA_PRINCIPAL), as in
`govsync subscription`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, print_json
from govsync.cli.subscription import As, acting

app = typer.Typer(no_args_is_help=True, help="Raise and answer objections to delivered data.")

Reason = Annotated[str, typer.Option("--reason", help="Why (kept on the audit trail).")]


@app.command("raise")
def objection_raise(
    event_id: Annotated[str, typer.Argument(help="The delivered change's event_id.")],
    reason: Reason,
    subscription: Annotated[
        str | None, typer.Option("--subscription", help="If it reached you twice.")
    ] = None,
    principal: As = None,
    as_json: JsonFlag = False,
) -> None:
    """Object to a record delivered to you; its source department gets it to answer."""
    from govsync.ops.objections import raise_objection
    from streams.model.topology import load_topology

    with acting(principal) as settings:
        # The shared topology.yaml says which department answers for the record's source.
        topology = load_topology(settings.topology)
        raised = raise_objection(settings, topology, event_id, reason, subscription)
    if as_json:
        print_json(raised.model_dump(mode="json"))
        return
    console.print(f"objection {raised.id} raised: {raised.source} ({raised.source_id}) answers")


def _answer(
    objection_id: str, answer: str, reason: str, principal: str | None, as_json: bool
) -> None:
    from govsync.ops.objections import answer_objection
    from streams.contract.objections import Step

    with acting(principal) as settings:
        answered = answer_objection(settings, objection_id, Step(answer), reason)
    if as_json:
        print_json(answered.model_dump(mode="json"))
        return
    console.print(f"objection {objection_id} {answer} by {answered.principal}: {reason}")


@app.command("resolve")
def objection_resolve(
    objection_id: str, reason: Reason, principal: As = None, as_json: JsonFlag = False
) -> None:
    """Answer as the source department: the data was wrong and is corrected."""
    _answer(objection_id, "resolved", reason, principal, as_json)


@app.command("reject")
def objection_reject(
    objection_id: str, reason: Reason, principal: As = None, as_json: JsonFlag = False
) -> None:
    """Answer as the source department: the data stands."""
    _answer(objection_id, "rejected", reason, principal, as_json)


@app.command("list")
def objection_list(
    source: Annotated[
        str | None, typer.Option("--source", help="Only this source (department or source id).")
    ] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only those not answered.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Objections on the audit trail, with their answers (from the index)."""
    from govsync.ops.objections import listed

    with acting(None) as settings:
        found = [o for o in listed(settings, source) if o.open or not open_only]
    if as_json:
        print_json([o.model_dump(mode="json") for o in found])
        return
    table = Table(title=f"objections: {sum(o.open for o in found)} open of {len(found)}")
    for column in ("raised (UTC)", "id", "by", "source", "entity key", "reason", "answer"):
        table.add_column(column)
    for o in found:
        raised = datetime.fromtimestamp(o.raised_at_ms / 1000, UTC)
        table.add_row(
            f"{raised:%Y-%m-%d %H:%M}",
            o.id,
            o.department,
            o.source_id,
            o.entity_key,
            o.reason,
            f"{o.answer}: {o.answer_reason}" if o.answer else "[red]open[/red]",
        )
    console.print(table)


@app.command("show")
def objection_show(objection_id: str, principal: As = None, as_json: JsonFlag = False) -> None:
    """The objection as its source reads it, with the record objected to."""
    from govsync.ops.objections import find, record

    with acting(principal) as settings:
        raised = record(settings, find(settings, objection_id))
    if as_json:
        print_json(raised)
        return
    console.print_json(data=raised)
