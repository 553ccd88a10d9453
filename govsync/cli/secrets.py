"""`govsync secrets export`: the state directory's generated files that the rendered
Deployments read, as Kubernetes manifests, so every pod reads the same ones and none makes
its own (govsync/control/state_secrets.py)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from govsync.cli.output import EXIT_INVALID, console, err, errors
from govsync.cli.topology import TopologyFile
from streams.config.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Hand the state directory's secrets to a cluster.")


class Target(StrEnum):
    KUBERNETES = "kubernetes"


@app.command("export")
def secrets_export(
    # Required, as render's --target, though there is one so far.
    target: Annotated[Target, typer.Option(help="Where they go.")],
    file: TopologyFile = None,
    namespace: Annotated[
        str | None, typer.Option(help="Their namespace (default: govsync, as rendered).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="File to create, readable by its owner only (default: stdout)."),
    ] = None,
) -> None:
    """Print the Secret of the files in <state>/secrets that the Deployments of
    `topology render --target strimzi` mount, and the ConfigMap of the public keys they
    check signatures with. Nothing is generated: a missing file exits 2, naming it.
    Not the Kafka passwords: Strimzi's User Operator makes those."""
    from connectors.sinks import SINKS
    from govsync.control import state_secrets, strimzi
    from streams.config.secrets import write_private
    from streams.model.topology import load_topology

    settings = Settings.from_env()
    with errors():
        topology = load_topology(file or settings.topology)
    try:
        resources = state_secrets.manifests(
            settings, topology, SINKS, namespace or strimzi.NAMESPACE
        )
    except state_secrets.Missing as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    text = state_secrets.text(resources)
    if output is None:
        typer.echo(text, nl=False)
        return
    write_private(output, text)
    secret, keys = resources
    console.print(
        f"wrote Secret {secret['metadata']['name']} ({len(secret['data'])} files) and "
        f"ConfigMap {keys['metadata']['name']} ({len(keys['data'])} keys) to {output}"
    )
