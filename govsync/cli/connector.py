"""`govsync connector`: status, restart and re-snapshot of the Debezium connectors."""

from __future__ import annotations

import typer

from govsync.cli.output import JsonFlag, console, errors, print_json
from govsync.cli.topology import in_force
from streams.config.settings import Settings

app = typer.Typer(no_args_is_help=True, help="The Debezium connectors on Connect.")


@app.command("status")
def connector_status(as_json: JsonFlag = False) -> None:
    """State of each Debezium connector and its tasks."""
    from connectors.sources import debezium

    settings = Settings.from_env()
    with errors():
        names = list(debezium.render(in_force(settings), settings))
        report = {name: debezium.status(settings, name) for name in names}
    if as_json:
        print_json(report)
        return
    for name, state in report.items():
        tasks = ", ".join(t.get("state", "?") for t in state.get("tasks", [])) or "none"
        console.print(
            f"{name}: {state.get('connector', {}).get('state', 'absent')} (tasks: {tasks})"
        )


@app.command("restart")
def connector_restart(name: str) -> None:
    """Restart a connector and its tasks (re-emitted changes are deduplicated downstream)."""
    from connectors.sources import debezium

    with errors():
        debezium.restart(Settings.from_env(), name)
    console.print(f"{name} restarted")


@app.command("resnapshot")
def connector_resnapshot(name: str) -> None:
    """Take a fresh snapshot of the connector's tables; unchanged rows are not re-delivered."""
    from connectors.sources import debezium

    with errors():
        debezium.resnapshot(Settings.from_env(), name)
    console.print(f"{name}: offsets reset, snapshot running")
