"""`govsync topology`: validate, apply, show topology.yaml and its history; and the topology
in force, which every command about the running pipeline judges by."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from govsync.cli.output import EXIT_INVALID, JsonFlag, console, errors, print_json
from streams.config.settings import Settings
from streams.contract.topics import TOPOLOGY_CHANGES_TOPIC

if TYPE_CHECKING:
    from streams.kafka.applied import Change
    from streams.model.topology import Topology

app = typer.Typer(no_args_is_help=True, help="Validate, apply and show topology.yaml.")

TopologyFile = Annotated[
    Path | None, typer.Option("--file", "-f", help="Topology file (default: GOVSYNC_TOPOLOGY).")
]


def in_force(settings: Settings) -> Topology:
    """What the pipeline runs: the applied topology, or the file before the first apply."""
    from streams.kafka import applied

    return applied.in_force(settings).topology


@contextmanager
def in_force_meanwhile(settings: Settings) -> Iterator[Future[Topology]]:
    """The topology in force, read in a thread while the caller asks the index: the two
    Kafka connections (this one, the index's freshness check) overlap."""
    with ThreadPoolExecutor(1) as beside:
        yield beside.submit(in_force, settings)


@app.command("validate")
def topology_validate(file: TopologyFile = None) -> None:
    """Check the topology; errors name the YAML path and the problem."""
    from streams.model.topology import load_topology

    path = file or Settings.from_env().topology
    with errors():
        topology = load_topology(path)
    console.print(
        f"[green]{path} is valid[/green]: {len(topology.departments)} departments, "
        f"{len(topology.entities)} entities, {len(topology.sources)} sources, "
        f"{len(topology.subscriptions)} subscriptions"
    )


@app.command("apply")
def topology_apply(
    file: TopologyFile = None,
    as_json: JsonFlag = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan: what would change; change nothing.")
    ] = False,
    as_authority: Annotated[
        bool,
        typer.Option(
            "--as-authority",
            help="Record the approval blocks as the data authority's decisions, signed with "
            "its key and written as its principal (the key must be on this machine).",
        ),
    ] = False,
) -> None:
    """Create topics, register schemas (BACKWARD), create or update the Debezium connectors.

    Approval blocks take effect only as the data authority's decisions: with
    --as-authority, or through `govsync subscription approve`."""
    from govsync.stack import embedded
    from streams.model.topology import load_topology

    settings = Settings.from_env()
    path = file or settings.topology
    with errors():
        topology = load_topology(path)
        text = path.read_text(encoding="utf-8")
        report = embedded.apply_topology(
            topology, settings, text, dry_run=dry_run, as_authority=as_authority
        )
    if as_json:
        print_json(report.model_dump())
        return
    table = Table(
        title="topology apply --dry-run: nothing was changed" if dry_run else "topology apply"
    )
    table.add_column("kind")
    table.add_column("name")
    table.add_column("result")
    for name, action in report.topics.items():
        table.add_row("topic", name, action)
    for topic, schema_id in report.schemas.items():
        table.add_row("schema", f"{topic}-value", f"id {schema_id}, BACKWARD")
    for topic in report.new_schemas:
        table.add_row("schema", f"{topic}-value", "new version")
    for name, action in report.connectors.items():
        table.add_row("connector", name, action)
    table.add_row("acls", f"{report.acls['total']} bindings", str(report.acls))
    table.add_row("registry", "users", report.registry_users)
    for change in report.changes:
        table.add_row("change", change.path, _change_text(change))
    for subscription in report.decided:
        table.add_row("decision", subscription, "the approval block, as the data authority's")
    console.print(table)
    if report.undecided:
        console.print(
            f"[yellow]approval blocks not in force[/yellow] ({', '.join(report.undecided)}): "
            "only the data authority's decisions make them so (govsync subscription, or "
            "apply --as-authority)"
        )


def _change_text(change: Change) -> str:
    """One applied change as `before -> after (by approver)`, for apply and history alike."""
    before, after = (json.dumps(v, ensure_ascii=False) for v in (change.before, change.after))
    return f"{before} -> {after}" + (f" (by {change.by})" if change.by else "")


@app.command("history")
def topology_history(as_json: JsonFlag = False) -> None:
    """Every applied change: what, when, and who approved it (as the topology says)."""
    from streams.kafka import applied

    settings = Settings.from_env()
    with errors():
        records = applied.history(settings.bootstrap)
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    table = Table(title=f"{TOPOLOGY_CHANGES_TOPIC}: {len(records)} applies")
    for column in ("applied at", "version", "what", "change"):
        table.add_column(column)
    for record in records:
        for change in record.changes:
            table.add_row(
                f"{record.applied_at:%Y-%m-%d %H:%M:%S}",
                record.sha256[:12],
                change.path,
                _change_text(change),
            )
    console.print(table)


@app.command("show")
def topology_show(file: TopologyFile = None, as_json: JsonFlag = False) -> None:
    """Departments and who subscribes to what: in force, or in --file."""
    from datetime import UTC, datetime

    from streams.contract.topics import delivery_topic
    from streams.model.topology import load_topology

    with errors():
        topology = load_topology(file) if file else in_force(Settings.from_env())
    if as_json:
        print_json(topology.model_dump(mode="json"))
        return
    now = datetime.now(UTC)
    table = Table(title="subscriptions")
    for column in ("subscription", "department", "topic", "fields", "approval", "active"):
        table.add_column(column)
    for sub in topology.subscriptions:
        table.add_row(
            sub.id,
            topology.departments[sub.department].name,
            delivery_topic(sub),
            ", ".join(sub.fields),
            sub.approval.state,
            "yes" if sub.is_active(now) else "no",
        )
    console.print(table)


TARGETS = ("strimzi",)


@app.command("render")
def topology_render(
    target: Annotated[str, typer.Option(help="What to render for: strimzi (Kubernetes).")],
    file: TopologyFile = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Directory to write (default: deploy/kubernetes/strimzi/)."),
    ] = None,
    standby_of: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Render a standby node of the primary with this Kafka bootstrap (as this "
            "cluster reaches it): MirrorMaker 2 copying it here, and only what a standby "
            'runs before its take-over (docs/architecture.md, "On Kubernetes"). Needs '
            "--output.",
        ),
    ] = None,
) -> None:
    """Write the topology as Kubernetes resources for the Strimzi operator, one YAML file
    per kind: Kafka, Connect and the connectors, topics, users and ACLs, govsync's processes."""
    from connectors.sinks import SINKS
    from govsync.control import strimzi
    from streams.model.topology import load_topology

    if target not in TARGETS:
        console.print(f"[red]unknown target {target!r}[/]; known: {', '.join(TARGETS)}")
        raise typer.Exit(EXIT_INVALID)
    if standby_of is not None and output is None:
        console.print(
            "[red]--standby-of needs --output[/]: deploy/kubernetes/strimzi/ holds the "
            "primary's render"
        )
        raise typer.Exit(EXIT_INVALID)
    with errors():
        topology = load_topology(file or Settings.from_env().topology)
    # The defaults, not this shell's GOVSYNC_* variables: the files are committed and
    # must not depend on who rendered them.
    settings = Settings()
    resources = (
        strimzi.render_standby(topology, settings, standby_of)
        if standby_of is not None
        else strimzi.render(topology, settings, sinks=SINKS)
    )
    written = strimzi.write(resources, output or strimzi.OUTPUT_DIR)
    console.print(f"wrote {len(written)} files to {output or strimzi.OUTPUT_DIR}")
