"""`govsync worker`, `sink`, `monitor`: govsync's long-running processes, in the foreground
or under the stack's supervisord (`--background`, which runs the same command via
`python -m govsync.cli` as a supervised program, restarted when it dies)."""

from __future__ import annotations

from typing import Annotated

import typer

from govsync.cli.output import EXIT_INVALID, JsonFlag, console, errors, print_json
from streams.config import logs
from streams.config.settings import Settings

# Added without a name: these are top-level commands of `govsync`.
app = typer.Typer()


@app.command()
def worker(
    background: Annotated[
        bool, typer.Option(help="Start another instance under supervisord; logs in the state dir.")
    ] = False,
    instance: Annotated[
        int | None,
        typer.Option(help="With --background: start, or restart, this instance.", min=0),
    ] = None,
) -> None:
    """Run the stream processors (normalize, route, ledger), exactly once."""
    settings = Settings.from_env()
    if background:
        from govsync.stack import background as supervised

        with errors():
            started = (
                supervised.add_worker(settings)
                if instance is None
                else supervised.restart_worker(settings, instance)
            )
        log = settings.path("logs", f"{started.name}.log")
        console.print(f"worker {started.instance} running (pid {started.pid}, log {log})")
        return
    if instance is not None:
        console.print(
            "[red]--instance needs --background[/]; in the foreground set GOVSYNC_WORKER_INSTANCE"
        )
        raise typer.Exit(EXIT_INVALID)
    from streams.worker import process

    process.main()


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
            started = start_app_process(settings, name, ["sink", department])
        log = settings.path("logs", f"{name}.log")
        console.print(f"{name} running (pid {started.pid}, log {log})")
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
            started = start_app_process(
                settings, "monitor", ["monitor", "--port", str(settings.monitor_port)]
            )
        log = settings.path("logs", "monitor.log")
        console.print(f"monitor on {url} (pid {started.pid}, log {log})")
        return
    from govsync.ops import monitor as dashboard

    logs.configure()
    with errors():
        dashboard.serve(settings)


@app.command()
def api(
    port: Annotated[
        int | None, typer.Option(help="Port on the host (default: GOVSYNC_API_PORT, 16080).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="uvicorn worker processes (default: GOVSYNC_API_WORKERS, 2)."),
    ] = None,
    background: Annotated[bool, typer.Option(help="Run detached; logs in the state dir.")] = False,
) -> None:
    """Serve the query API: GET /v1/<entity>/<key> as each department's subscription sees
    it (HTTP Basic, the department's Kafka login); the OpenAPI document at /openapi.json."""
    settings = Settings.from_env()
    if port is not None:
        settings = settings.model_copy(update={"api_port": port})
    if workers is not None:
        settings = settings.model_copy(update={"api_workers": workers})
    if background:
        from govsync.stack.background import API_PROGRAM, start_api

        with errors():
            started = start_api(settings)
        log = settings.path("logs", f"{API_PROGRAM}.log")
        console.print(
            f"api on http://{settings.host}:{settings.api_port}/ (pid {started.pid}, log {log})"
        )
        return
    from govsync.api import app as http

    http.serve(settings)


@app.command()
def acl(
    follow: Annotated[
        bool,
        typer.Option(help="Keep reconciling every 5 s (supervised: `govsync up` starts it)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Reconcile Kafka's ACLs with the topology in force: a department reads a delivery
    topic only while its subscription is active, so a suspension, revocation or expiry
    closes it within seconds."""
    from govsync.control import access
    from streams.kafka import admin, applied

    settings = Settings.from_env()
    if follow:
        from streams.worker.process import stop_on_signals

        logs.configure()
        with errors():
            access.keep(settings, stop_on_signals())
        return
    with errors():
        counts = access.reconcile_acls(
            admin.admin_client(settings.bootstrap), applied.in_force(settings).topology
        )
    if as_json:
        print_json(counts)
    else:
        console.print(
            f"ACLs: {counts['created']} created, {counts['deleted']} deleted, "
            f"{counts['total']} in force"
        )


@app.command()
def indexer(
    background: Annotated[bool, typer.Option(help="Run detached; logs in the state dir.")] = False,
) -> None:
    """Keep the operations indexes (lineage, audit entries, awaited receipts) in the index
    database, exactly once with govsync.trace and govsync.audit."""
    settings = Settings.from_env()
    if background:
        from govsync.stack.background import INDEXER_PROGRAM, start_indexer

        with errors():
            started = start_indexer(settings)
        log = settings.path("logs", f"{INDEXER_PROGRAM}.log")
        console.print(f"indexer running (pid {started.pid}, log {log})")
        return
    from govsync.index import indexer as index_writer
    from streams.worker.process import stop_on_signals

    logs.configure()
    with errors():
        index_writer.run(settings, stop_on_signals())
