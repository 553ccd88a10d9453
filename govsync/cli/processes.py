"""`govsync worker`, `sink`, `monitor`: govsync's long-running processes, in the foreground
or detached (`--background`, which re-runs the same command via `python -m govsync.cli`)."""

from __future__ import annotations

from typing import Annotated

import typer

from govsync.cli.output import EXIT_INVALID, console, errors
from streams.config import logs
from streams.config.settings import Settings

# Added without a name: these are top-level commands of `govsync`.
app = typer.Typer()


@app.command()
def worker(
    background: Annotated[bool, typer.Option(help="Run detached; logs in the state dir.")] = False,
) -> None:
    """Run the stream processors (normalize, route, ledger), exactly once."""
    settings = Settings.from_env()
    if background:
        from govsync.stack.background import start_app_process

        with errors():
            pid = start_app_process(settings, "worker", ["worker"])
        console.print(f"worker running (pid {pid}, log {settings.path('logs', 'worker.log')})")
        return
    from streams import worker as stream_worker

    stream_worker.main()


@app.command("sink")
def sink(
    department: Annotated[str, typer.Argument(help="tax, social_security or medical_insurance.")],
    background: Annotated[bool, typer.Option(help="Run detached; logs in the state dir.")] = False,
) -> None:
    """Run a department's reference sink: apply its deliveries to its database, once each."""
    from connectors.sinks import SINKS, process_name

    if department not in SINKS:
        console.print(
            f"[red]no reference sink for {department!r}[/]; known: {', '.join(sorted(SINKS))}"
        )
        raise typer.Exit(EXIT_INVALID)
    settings = Settings.from_env()
    name = process_name(department)
    if background:
        from govsync.stack.background import start_app_process

        with errors():
            pid = start_app_process(settings, name, ["sink", department])
        console.print(f"{name} running (pid {pid}, log {settings.path('logs', f'{name}.log')})")
        return
    from connectors.subscriber import Subscriber

    logs.configure()
    # The department's own Kafka and registry login.
    as_department = settings.model_copy(update={"kafka_principal": department})
    Subscriber(as_department, department, SINKS[department]).run()


@app.command()
def monitor(
    port: Annotated[
        int | None, typer.Option(help="Port on the host (default: GOVSYNC_MONITOR_PORT, 16070).")
    ] = None,
    background: Annotated[bool, typer.Option(help="Run detached; logs in the state dir.")] = False,
) -> None:
    """Serve the lag dashboard (/), its data (/api/state) and Prometheus metrics (/metrics)."""
    settings = Settings.from_env()
    if port is not None:
        settings = settings.model_copy(update={"monitor_port": port})
    url = f"http://{settings.host}:{settings.monitor_port}/"
    if background:
        from govsync.stack.background import start_app_process

        with errors():
            pid = start_app_process(
                settings, "monitor", ["monitor", "--port", str(settings.monitor_port)]
            )
        console.print(f"monitor on {url} (pid {pid}, log {settings.path('logs', 'monitor.log')})")
        return
    from govsync.ops import monitor as dashboard

    logs.configure()
    with errors():
        dashboard.serve(settings)
