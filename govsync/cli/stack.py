"""`govsync up`, `down`, `status`: the embedded stack (PostgreSQL, Kafka, Apicurio, Connect)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from govsync.cli.output import EXIT_UNAVAILABLE, JsonFlag, console, errors, print_json
from streams.config.settings import Settings

if TYPE_CHECKING:
    from govsync.stack.embedded import StackStatus

# Added without a name: these are top-level commands of `govsync`.
app = typer.Typer()


@app.command()
def up() -> None:
    """Start the embedded stack (PostgreSQL, Kafka, Apicurio, Connect); idempotent."""
    from govsync.stack import embedded

    settings = Settings.from_env()
    with errors(), console.status("starting") as spinner:
        embedded.up(settings, progress=lambda step: spinner.update(step))
    _status_table(embedded.status(settings))


@app.command()
def down() -> None:
    """Stop everything govsync started, the worker and sinks first."""
    from govsync.stack import embedded

    with console.status("stopping") as spinner:
        stopped = embedded.down(Settings.from_env(), progress=lambda step: spinner.update(step))
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Health of each component: state, address, version."""
    from govsync.stack import embedded

    report = embedded.status(Settings.from_env())
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        _status_table(report)
    if not report.all_up:
        raise typer.Exit(EXIT_UNAVAILABLE)


def _status_table(report: StackStatus) -> None:
    """One row per component, one per worker instance (`worker/<id>`) and, with several,
    per Kafka node (`kafka/<id>`, at its own port); `up` and `status` show the same table."""
    table = Table(title=f"govsync stack ({report.state_dir})")
    for column in ("component", "state", "address", "version", "pid", "restarts", "last exit"):
        table.add_column(column)
    for name, component in report.components:
        data = component.model_dump()
        address = (
            data.get("bootstrap")
            or data.get("url")
            or (f"{data['host']}:{data['port']}" if "host" in data else "")
            or (f"database {data['database']}" if "database" in data else "")
        )
        parts = data.get("instances") or [
            b for b in data.get("brokers") or [] if len(data["brokers"]) > 1
        ]
        rows = [(f"{name}/{part['id']}", part) for part in parts] or [(name, data)]
        for label, row in rows:
            colour = "green" if row["state"] == "up" else "red"
            own = f"{address.split(':')[0]}:{row['port']}" if "program" in row else None
            table.add_row(
                label,
                f"[{colour}]{row['state']}[/{colour}]",
                own or address or row.get("metrics_url") or "",
                data.get("version") or "",
                str(row.get("pid") or ""),
                str(row.get("restarts") or 0),
                row.get("last_exit") or "",
            )
    console.print(table)
