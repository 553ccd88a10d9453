"""`govsync`: operate the embedded stack, the topology, the worker and the demo.

Exit codes: 0 success, 1 the operation failed, 2 invalid input (e.g. topology),
3 a required component is not running or unreachable.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from streams.config.settings import Settings
from streams.contract.topics import TOPOLOGY_CHANGES_TOPIC, TRACE_TOPIC

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
topology_app = typer.Typer(no_args_is_help=True, help="Validate, apply and show topology.yaml.")
connector_app = typer.Typer(no_args_is_help=True, help="The Debezium connectors on Connect.")
dlq_app = typer.Typer(
    no_args_is_help=True, help="The dead-letter queue: held records, reprocessing."
)
app.add_typer(topology_app, name="topology")
app.add_typer(connector_app, name="connector")
audit_app = typer.Typer(
    no_args_is_help=True, help="The tamper-evident audit trail: verify it, ask who received what."
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")
replay_app = typer.Typer(
    no_args_is_help=True, help="Backfill a new or reset subscription without disturbing others."
)
app.add_typer(replay_app, name="replay")
receipts_app = typer.Typer(no_args_is_help=True, help="The receipt SLA: unanswered deliveries.")
app.add_typer(receipts_app, name="receipts")

# Rich wraps at 80 columns when not on a terminal; CI logs and pipes deserve wider tables.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TopologyFile = Annotated[
    Path | None, typer.Option("--file", "-f", help="Topology file (default: GOVSYNC_TOPOLOGY).")
]

EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE = 1, 2, 3
LOG_FORMAT = "[%(asctime)s] %(levelname)s %(name)s %(threadName)s: %(message)s"


@contextmanager
def _errors() -> Iterator[None]:
    """Known failures become one clear line and a meaningful exit code, not a traceback."""
    from connectors.sources.debezium import ConnectError
    from govsync.errors import OperationFailed
    from streams.kafka.admin import AdminError, BrokerUnreachable
    from streams.kafka.applied import NotApplied
    from streams.kafka.serde import RegistryUnreachable, SchemaRejected
    from streams.model.topology import TopologyError

    try:
        yield
    except TopologyError as exc:
        err.print(f"[red]topology is invalid[/red]\n{exc}", highlight=False)
        raise typer.Exit(EXIT_INVALID) from None
    except (BrokerUnreachable, ConnectError, RegistryUnreachable) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    except (OperationFailed, NotApplied, AdminError, SchemaRejected) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def _configure_logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # One line per schema lookup would drown the worker's own log.
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2, default=str) + "\n")


@app.command()
def up() -> None:
    """Start the embedded stack (PostgreSQL, Kafka, Apicurio, Connect); idempotent."""
    from govsync.stack import embedded

    settings = Settings.from_env()
    with _errors(), console.status("starting") as spinner:
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
        _print_json(report.model_dump(mode="json"))
    else:
        _status_table(report)
    if not report.all_up:
        raise typer.Exit(EXIT_UNAVAILABLE)


def _status_table(report) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"govsync stack ({report.state_dir})")
    for column in ("component", "state", "address", "version", "pid"):
        table.add_column(column)
    for name, component in report.components:
        data = component.model_dump()
        address = (
            data.get("bootstrap")
            or data.get("url")
            or (f"{data['host']}:{data['port']}" if "host" in data else "")
        )
        colour = "green" if data["state"] == "up" else "red"
        table.add_row(
            name,
            f"[{colour}]{data['state']}[/{colour}]",
            address,
            data.get("version") or "",
            str(data.get("pid") or ""),
        )
    console.print(table)


@app.command()
def worker(
    background: Annotated[bool, typer.Option(help="Run detached; logs in the state dir.")] = False,
) -> None:
    """Run the stream processors (normalize, route, ledger), exactly once."""
    settings = Settings.from_env()
    if background:
        from govsync.stack.background import start_app_process

        with _errors():
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

        with _errors():
            pid = start_app_process(settings, name, ["sink", department])
        console.print(f"{name} running (pid {pid}, log {settings.path('logs', f'{name}.log')})")
        return
    from connectors.subscriber import Subscriber

    _configure_logging()
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
    if port is not None:
        os.environ["GOVSYNC_MONITOR_PORT"] = str(port)  # inherited by --background
    settings = Settings.from_env()
    url = f"http://{settings.host}:{settings.monitor_port}/"
    if background:
        from govsync.stack.background import start_app_process

        with _errors():
            pid = start_app_process(settings, "monitor", ["monitor"])
        console.print(f"monitor on {url} (pid {pid}, log {settings.path('logs', 'monitor.log')})")
        return
    from govsync.ops import monitor as dashboard

    _configure_logging()
    with _errors():
        dashboard.serve(settings)


@topology_app.command("validate")
def topology_validate(file: TopologyFile = None) -> None:
    """Check the topology; errors name the YAML path and the problem."""
    from streams.model.topology import load_topology

    path = file or Settings.from_env().topology
    with _errors():
        topology = load_topology(path)
    console.print(
        f"[green]{path} is valid[/green]: {len(topology.departments)} departments, "
        f"{len(topology.entities)} entities, {len(topology.sources)} sources, "
        f"{len(topology.subscriptions)} subscriptions"
    )


@topology_app.command("apply")
def topology_apply(file: TopologyFile = None, as_json: JsonFlag = False) -> None:
    """Create topics, register schemas (BACKWARD), create or update the Debezium connectors."""
    from govsync.stack import embedded
    from streams.model.topology import load_topology

    settings = Settings.from_env()
    path = file or settings.topology
    with _errors():
        topology = load_topology(path)
        report = embedded.apply_topology(topology, settings, path.read_text(encoding="utf-8"))
    if as_json:
        _print_json(report.model_dump())
        return
    table = Table(title="topology apply")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("result")
    for name, action in report.topics.items():
        table.add_row("topic", name, action)
    for topic, schema_id in report.schemas.items():
        table.add_row("schema", f"{topic}-value", f"id {schema_id}, BACKWARD")
    for name, action in report.connectors.items():
        table.add_row("connector", name, action)
    table.add_row("acls", f"{report.acls['total']} bindings", str(report.acls))
    table.add_row("registry", "users", report.registry_users)
    for change in report.changes:
        table.add_row("change", change.path, _change_text(change))
    console.print(table)


def _change_text(change) -> str:  # type: ignore[no-untyped-def]
    before, after = (json.dumps(v, ensure_ascii=False) for v in (change.before, change.after))
    return f"{before} -> {after}" + (f" (by {change.by})" if change.by else "")


@topology_app.command("history")
def topology_history(as_json: JsonFlag = False) -> None:
    """Every applied change: what, when, and who approved it (as the topology says)."""
    from streams.kafka import applied

    settings = Settings.from_env()
    with _errors():
        records = applied.history(settings.bootstrap)
    if as_json:
        _print_json([r.model_dump(mode="json") for r in records])
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


@topology_app.command("show")
def topology_show(file: TopologyFile = None, as_json: JsonFlag = False) -> None:
    """Departments and who subscribes to what: in force, or in --file."""
    from datetime import UTC, datetime

    from streams.contract.topics import delivery_topic
    from streams.model.topology import load_topology

    with _errors():
        topology = load_topology(file) if file else _in_force(Settings.from_env())
    if as_json:
        _print_json(topology.model_dump(mode="json"))
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


@connector_app.command("status")
def connector_status(as_json: JsonFlag = False) -> None:
    """State of each Debezium connector and its tasks."""
    from connectors.sources import debezium

    settings = Settings.from_env()
    with _errors():
        names = list(debezium.render(_in_force(settings), settings))
        report = {name: debezium.status(settings, name) for name in names}
    if as_json:
        _print_json(report)
        return
    for name, state in report.items():
        tasks = ", ".join(t.get("state", "?") for t in state.get("tasks", [])) or "none"
        console.print(
            f"{name}: {state.get('connector', {}).get('state', 'absent')} (tasks: {tasks})"
        )


@connector_app.command("restart")
def connector_restart(name: str) -> None:
    """Restart a connector and its tasks (re-emitted changes are deduplicated downstream)."""
    from connectors.sources import debezium

    with _errors():
        debezium.restart(Settings.from_env(), name)
    console.print(f"{name} restarted")


@connector_app.command("resnapshot")
def connector_resnapshot(name: str) -> None:
    """Take a fresh snapshot of the connector's tables; unchanged rows are not re-delivered."""
    from connectors.sources import debezium

    with _errors():
        debezium.resnapshot(Settings.from_env(), name)
    console.print(f"{name}: offsets reset, snapshot running")


@app.command("quality")
def quality(
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this entity key.")] = None,
    source: Annotated[str | None, typer.Option(help="Only findings involving this source.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """一数一源 findings: where a source's copy differs from the authoritative value."""
    from govsync.ops.quality import findings

    with _errors():
        found = findings(Settings.from_env(), entity=entity, key=key, source=source)
    if as_json:
        _print_json([f.model_dump(mode="json") for f in found])
        return
    table = Table(title=f"govsync.quality: {len(found)} findings")
    for column in ("recorded", "entity", "key", "field", "authoritative", "other"):
        table.add_column(column)
    for f in found:
        table.add_row(
            f"{f.recorded_at:%Y-%m-%d %H:%M:%S}",
            f.entity,
            f.key,
            f.field,
            f"{f.authoritative_value} ({f.authoritative_source})",
            f"{f.other_value} ({f.other_source})",
        )
    console.print(table)


@dlq_app.command("list")
def dlq_list(
    show_all: Annotated[bool, typer.Option("--all", help="Include closed records.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Held records and the accounting: processed = normalized + dead-lettered, per source."""
    from govsync.ops import dlq

    settings = Settings.from_env()
    with _errors():
        topology = _in_force(settings)
        records, _ = dlq.held(settings)
        accounts = dlq.accounting(settings, topology, records)
    shown = [r for r in records if show_all or r.open]
    if as_json:
        _print_json(
            {
                "records": [r.model_dump() for r in shown],
                "accounting": [{**a.model_dump(), "balanced": a.balanced} for a in accounts],
            }
        )
    else:
        table = Table(title=f"govsync.dlq: {sum(r.open for r in records)} open of {len(records)}")
        for column in ("position", "error", "source record", "reason", "held since", "closed"):
            table.add_column(column)
        for r in shown:
            table.add_row(
                r.position,
                r.error_code,
                f"{r.source_topic}[{r.source_partition}]@{r.source_offset}",
                r.error_message[:80],
                r.dead_lettered_at or "",
                r.closure.outcome if r.closure else "",
            )
        console.print(table)
        summary = Table(title="accounting (counted on the topics)")
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
                "[green]yes[/green]" if a.balanced else "[red]NO[/red]",
            )
        console.print(summary)
    if not all(a.balanced for a in accounts):
        raise typer.Exit(EXIT_FAILED)


@dlq_app.command("show")
def dlq_show(position: str, as_json: JsonFlag = False) -> None:
    """One held record (``<partition>:<offset>``): reason, source position, decoded original."""
    from govsync.ops import dlq

    with _errors():
        try:
            detail = dlq.show(Settings.from_env(), position)
        except KeyError:
            err.print(f"[red]error:[/red] no record at {position} on govsync.dlq")
            raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        _print_json(detail)
    else:
        console.print_json(json.dumps(detail, ensure_ascii=False, default=str))


@dlq_app.command("reprocess")
def dlq_reprocess(
    positions: Annotated[list[str] | None, typer.Argument(help="Only these positions.")] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Report what would happen; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run open records through normalize again, by the rules in force (fix the topology and
    apply it first); close successes."""
    from rich.progress import Progress

    from govsync.ops import dlq

    settings = Settings.from_env()
    with _errors(), Progress(console=err, transient=True) as bar:
        task = bar.add_task("reprocessing", total=None)
        report = dlq.reprocess(
            settings,
            _in_force(settings),
            positions=set(positions) if positions else None,
            dry_run=dry_run,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        _print_json(report.model_dump())
        return
    verb = "would close" if dry_run else "closed"
    console.print(
        f"examined {report.examined}: {verb} {report.reprocessed} reprocessed and "
        f"{report.superseded} superseded; still failing: "
        + (", ".join(f"{code} {n}" for code, n in report.still_failing.items()) or "none")
    )


def _in_force(settings: Settings):  # type: ignore[no-untyped-def]
    """What the pipeline runs: the applied topology, or the file before the first apply."""
    from streams.kafka import applied

    return applied.in_force(settings).topology


@app.command("trace")
def trace(
    query: Annotated[str, typer.Argument(help="An event_id, or an entity key (USCC, ID).")],
    as_json: JsonFlag = False,
) -> None:
    """Where a change went, hop by hop, with latency; an entity key lists its changes.

    Commit, capture, normalize, each department's delivery and its receipt; an entity key
    gives every change of that entity, newest first."""
    import time

    from streams.trail import lineage

    settings = Settings.from_env()
    with _errors():
        topology = _in_force(settings)
        hops = lineage.read(settings, query=query)
        found = lineage.traces(hops, query, topology, int(time.time() * 1000))
    if as_json:
        _print_json([{**t.model_dump(), "complete": t.complete} for t in found])
    else:
        names = {d: dept.name for d, dept in topology.departments.items()}
        for found_trace in found:
            console.print(lineage.table(found_trace, names))
    if not found:
        err.print(f"no change with event_id or entity key {query!r} on {TRACE_TOPIC}")
        raise typer.Exit(EXIT_FAILED)


@receipts_app.command("overdue")
def receipts_overdue(
    show_all: Annotated[
        bool, typer.Option("--all", help="Also deliveries still within receipt_within.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Deliveries a department has not answered within its subscription's receipt_within."""
    import time
    from datetime import datetime

    from streams.model.topology import CST
    from streams.trail import receipts

    settings = Settings.from_env()
    with _errors():
        topology = _in_force(settings)
        book = receipts.from_trace(settings, topology)
    waiting = book.unanswered(topology, int(time.time() * 1000))
    shown = [w for w in waiting if show_all or w.overdue]
    if as_json:
        _print_json([{**w.model_dump(), "overdue": w.overdue} for w in shown])
        return
    overdue = sum(w.overdue for w in waiting)
    table = Table(title=f"receipts: {overdue} overdue, {len(waiting) - overdue} awaited")
    for column in ("delivered (CST)", "subscription", "entity key", "waited", "limit", "event_id"):
        table.add_column(column)
    for w in shown:
        colour = "red" if w.overdue else "yellow"
        table.add_row(
            f"{datetime.fromtimestamp(w.delivered_at_ms / 1000, CST):%Y-%m-%d %H:%M:%S}",
            w.subscription,
            w.entity_key,
            f"[{colour}]{w.waited_ms / 1000:.0f}s[/{colour}]",
            f"{w.receipt_within_ms / 1000:.0f}s",
            w.event_id,
        )
    console.print(table)


def _lag_tables(report) -> list[Table]:  # type: ignore[no-untyped-def]
    colours = {"green": "green", "yellow": "yellow", "red": "red"}

    def light(status: str) -> str:
        return f"[{colours[status]}]● {status}[/{colours[status]}]"

    def age(seconds: float | None) -> str:
        return "" if seconds is None else f"{seconds:.1f}s"

    summary = Table(title=f"lag by department ({report.at:%H:%M:%S} UTC)")
    for column in ("department", "status", "lag (records)", "oldest waiting", "groups"):
        summary.add_column(column)
    for d in report.departments:
        summary.add_row(
            f"{d.name} ({d.department})",
            light(d.status),
            str(d.lag),
            age(d.lag_seconds),
            str(d.groups),
        )
    detail = Table(title="per subscription, group and partition")
    for column in ("subscription", "group", "state", "partition", "committed", "end", "lag", "age"):
        detail.add_column(column)
    for g in [*report.subscriptions, *report.pipeline]:
        detail.add_row(
            g.name,
            g.group or "—",
            f"{light(g.status)} {g.state}",
            "all",
            "",
            "",
            str(g.lag),
            age(g.lag_seconds),
        )
        for r in g.partitions:
            if r.lag or r.state != "committed":
                detail.add_row(
                    "",
                    "",
                    r.state,
                    str(r.partition),
                    "—" if r.committed is None else str(r.committed),
                    str(r.end),
                    str(r.lag),
                    age(r.lag_seconds),
                )
    return [summary, detail]


@app.command("lag")
def lag(
    as_json: JsonFlag = False,
    watch: Annotated[
        float | None, typer.Option(help="Refresh every this many seconds until Ctrl-C.")
    ] = None,
) -> None:
    """Consumer lag per subscription and partition, with SLA status per department."""
    import time

    from rich.console import Group
    from rich.live import Live

    from govsync.ops import lag as consumer_lag
    from streams.kafka import admin

    settings = Settings.from_env()
    with _errors():
        topology = _in_force(settings)
        client = admin.admin_client(settings.bootstrap)
        report = consumer_lag.report(client, settings.bootstrap, topology)
        if as_json:
            _print_json(report.model_dump(mode="json"))
            return
        if watch is None:
            for table in _lag_tables(report):
                console.print(table)
            return
        with Live(Group(*_lag_tables(report)), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(watch)
                    report = consumer_lag.report(client, settings.bootstrap, topology)
                    live.update(Group(*_lag_tables(report)), refresh=True)
            except KeyboardInterrupt:
                pass


@replay_app.command("snapshot")
def replay_snapshot(
    subscription: Annotated[
        str, typer.Option(help="The subscription to fill, e.g. tax.enterprise.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Deliver the current state of every entity to one subscription, then live changes.

    The request goes through the route stage in order with the changes, so the snapshot
    is the state at one point of each partition and every later change follows it once."""
    from rich.progress import Progress

    from govsync.ops import replay
    from streams.kafka import credentials

    settings = Settings.from_env()
    with _errors():
        topology = _in_force(settings)
        pending = replay.request_snapshot(
            settings, topology, subscription, os.environ.get("USER") or credentials.ADMIN
        )
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(
                f"snapshot {pending.request.replay_id} → {subscription}", total=None
            )
            done = replay.wait_done(
                settings,
                pending,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
    if as_json:
        _print_json(done.model_dump())
        return
    console.print(
        f"snapshot {done.replay_id}: {done.records} records delivered to {done.subscription} "
        f"from all {done.partitions} partitions in {done.seconds:.1f}s; live changes follow "
        f"(records carry the header replay={done.replay_id})"
    )


def _epoch_ms(text: str) -> int:
    """ISO 8601; without a zone, China Standard Time (as approvals' dates are read)."""
    from datetime import datetime

    from streams.model.topology import CST

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-23T09:30"
        ) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=CST)).timestamp() * 1000)


@replay_app.command("range")
def replay_range(
    subscription: Annotated[
        str | None, typer.Option(help="The subscription to re-deliver to.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--from", help="Start (ISO 8601; CST if no zone).")
    ] = None,
    until: Annotated[str | None, typer.Option("--to", help="End (default: now).")] = None,
    rate: Annotated[float | None, typer.Option(help="At most this many records a second.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Count what would be re-sent; send nothing.")] = (
        False
    ),
    resume: Annotated[
        str | None, typer.Option(help="Continue an interrupted replay by its id.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-deliver one subscription's records of a time range (marked replay=<id>).

    Records are re-sent as delivered (same event_ids: subscribers skip what they already
    applied), and only those written under the subscription's current fields and masks.
    Interrupted (Ctrl-C), it saves where it stopped; --resume <id> goes on from there."""
    import signal
    import threading

    from rich.progress import BarColumn, Progress, TextColumn

    from govsync.ops import replay
    from streams.kafka import credentials

    settings = Settings.from_env()
    with _errors():
        if resume is not None:
            state = replay.load(settings, resume)
        elif subscription is None or since is None:
            err.print("[red]error:[/red] give --subscription and --from, or --resume <id>")
            raise typer.Exit(EXIT_INVALID)
        else:
            state = replay.plan_range(
                settings,
                _in_force(settings),
                subscription,
                _epoch_ms(since),
                _epoch_ms(until) if until else None,
                os.environ.get("USER") or credentials.ADMIN,
            )
            if not dry_run:
                replay.announce(settings, state.request, [0])  # onto the audit trail
        total = sum(state.end[p] - state.next[p] for p in state.end)
        # Ctrl-C ends the replay at the next record, after saving where it stopped.
        interrupted = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: interrupted.set())
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task(
                f"replay {state.request.replay_id} → {state.request.subscription}",
                total=total or None,
                counts="",
            )
            state = replay.run_range(
                settings,
                state,
                rate=rate,
                dry_run=dry_run,
                progress=lambda s: bar.update(
                    task,
                    completed=total - sum(s.end[p] - s.next[p] for p in s.end),
                    counts=f"{s.replayed} re-sent, {s.skipped_earlier_approval} skipped",
                ),
                stop=interrupted.is_set,
            )
    report = {**state.model_dump(exclude={"end", "next"}), "dry_run": dry_run}
    if as_json:
        _print_json(report)
    else:
        verb = "would re-send" if dry_run else "re-sent"
        console.print(
            f"replay {state.request.replay_id} to {state.request.subscription}: "
            f"{state.in_range} records in range, {verb} "
            f"{state.in_range - state.skipped_earlier_approval if dry_run else state.replayed}, "
            f"skipped {state.skipped_earlier_approval} delivered under an earlier approval"
            + ("" if state.done else f"; interrupted: --resume {state.request.replay_id}")
        )
    if not state.done:
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("verify")
def audit_verify(
    topic: Annotated[str, typer.Option(help="Verify another copy of the trail.")] = "govsync.audit",
    as_json: JsonFlag = False,
) -> None:
    """Walk every hash chain; report altered, removed, reordered or duplicated records."""
    from streams.trail import audit

    with _errors():
        reports = audit.verify_topic(Settings.from_env(), topic)
    if as_json:
        _print_json(
            {
                "topic": topic,
                "intact": all(r.intact for r in reports.values()),
                "chains": {p: {**r.model_dump(), "intact": r.intact} for p, r in reports.items()},
            }
        )
    else:
        table = Table(title=f"{topic}: one hash chain per partition")
        for column in ("partition", "records", "checkpoints", "head", "verdict"):
            table.add_column(column)
        for partition, report in sorted(reports.items()):
            verdict = "[green]intact[/green]" if report.intact else "[red]BROKEN[/red]"
            table.add_row(
                str(partition),
                str(report.records),
                str(report.checkpoints),
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


@audit_app.command("who-received")
def audit_who_received(
    key: Annotated[str, typer.Argument(help="An entity key (USCC, resident ID).")],
    as_json: JsonFlag = False,
) -> None:
    """Which departments received which fields of an entity, when, under which approval."""
    from datetime import datetime

    from streams.model.topology import CST
    from streams.trail import audit

    settings = Settings.from_env()
    with _errors():
        received = audit.who_received(audit.read(settings, key=key), key)
        names = {d: dept.name for d, dept in _in_force(settings).departments.items()}
    if as_json:
        _print_json([r.model_dump() for r in received])
        return
    table = Table(title=f"who received {key}: {len(received)} deliveries")
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
            r.receipt or "[yellow]none yet[/yellow]",
        )
    console.print(table)


@app.command()
def demo() -> None:
    """Start everything and deregister a company end to end; leaves the stack running."""
    from govsync import demo as scenario

    with _errors():
        ok = scenario.run(Settings.from_env(), console)
    if not ok:
        raise typer.Exit(EXIT_FAILED)


if __name__ == "__main__":
    app()
