"""`govsync standby`: this node as a standby of a primary node, and the take-over
(docs/operating.md, "The standby node")."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from govsync.cli.output import JsonFlag, console, err, errors, print_json
from streams.config.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Follow a primary node; take over from it.")


@app.command("follow")
def standby_follow(
    primary_bootstrap: Annotated[
        str, typer.Option(help="The primary's Kafka bootstrap (host:port).")
    ],
    primary_registry: Annotated[
        str, typer.Option(help="The primary's schema registry base URL (http://host:port).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Copy the primary's topics, consumer offsets and schemas here, and keep copying.

    This state directory's `secrets/` must be a copy of the primary's. Run it again after
    a `topology apply` on the primary: the registry's schemas are copied when it runs."""
    from govsync.stack import standby

    primary = standby.Primary(bootstrap=primary_bootstrap, registry=primary_registry)
    with errors(), err.status("following") as spinner:
        role = standby.follow(Settings.from_env(), primary, progress=spinner.update)
    if as_json:
        print_json(role.model_dump(mode="json"))
    else:
        console.print(f"following {primary.bootstrap} since {role.following_since:%H:%M:%S}Z")


@app.command("promote")
def standby_promote(
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="The primary is lost: take over with what was copied, without draining.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the drain before refusing.")
    ] = 300.0,
    as_json: JsonFlag = False,
) -> None:
    """Take over: drain the copy, stop copying, start the worker and the query API here.

    While the primary is reachable it first waits for the primary's stages to stop and for
    every record they committed to be copied here (stop the primary's worker instances,
    not its Kafka). Capture moves separately (the connectors' offsets came with the
    topics): `topology apply` here once the departments' databases are reachable."""
    from govsync.stack import standby

    with errors(), err.status("taking over") as spinner:
        role = standby.promote(
            Settings.from_env(), progress=spinner.update, now=now, timeout=timeout
        )
    if as_json:
        print_json(role.model_dump(mode="json"))
    else:
        how = "drained" if role.drained else "without draining: the last records may be missing"
        console.print(
            f"took over from {role.primary.bootstrap} at {role.promoted_at:%H:%M:%S}Z ({how})"
        )


@app.command("status")
def standby_status(as_json: JsonFlag = False) -> None:
    """Whom this node follows, whether it is copying, how far behind capture is, which
    topics are not copied to their end, and which consumer groups have their offsets here."""
    from govsync.stack import standby

    with errors():
        found = standby.status(Settings.from_env())
    if as_json:
        print_json(found.model_dump(mode="json"))
        return
    if found.role is None:
        console.print("this node follows no primary")
        return
    table = Table(title=f"standby of {found.role.primary.bootstrap} (mirror {found.mirror})")
    table.add_column("")
    table.add_column("", justify="right")
    if found.role.promoted_at is not None:
        table.add_row("took over at", f"{found.role.promoted_at:%Y-%m-%d %H:%M:%S}Z")
    for topic, behind in found.capture_behind.items():
        table.add_row(f"records behind {topic}", str(behind))
    for topic, partitions in found.uncopied.items():
        table.add_row(f"partitions of {topic} not copied to their end", str(partitions))
    for group, here in found.groups.items():
        table.add_row(f"offsets of group {group}", "here" if here else "not yet")
    console.print(table)
