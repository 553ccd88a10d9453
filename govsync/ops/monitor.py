"""`govsync monitor`: one page and one scrape for the operator of the exchange.

One refresher thread computes the state every few seconds (the lag report, the dead-letter
queue, deliveries awaiting a receipt) and caches it; the page (``/``), its data
(``/api/state``) and Prometheus (``/metrics``) are served from that cache (Starlette on
uvicorn, as the query API), so however many browsers and scrapers look, Kafka sees one
reader. A failed refresh keeps the last good
state and says why, on the page and as ``govsync_monitor_refresh_ok 0``.

``/metrics`` names consumer lag as kafka_exporter does, so dashboards and alerts written
for it work unchanged, and appends the exposition of every worker instance found in the
stage groups (throughput, latency histogram, duplicates, DLQ counters), each sample with a
``worker_instance`` label, so one scrape gets everything.

Per instance, not summed: a sum of counters drops when one instance restarts and rate()
reads that as a reset of the whole, and a sum of gauges such as ``process_*`` means
nothing. ``sum without (worker_instance) (rate(...))`` aggregates correctly in PromQL.
The label is not ``instance``: Prometheus sets that one to the scrape target (the
monitor) and would rename ours to ``exported_instance``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import resources
from typing import Literal

import httpx
import uvicorn
from confluent_kafka.admin import AdminClient
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from govsync.errors import OperationFailed
from govsync.index import freshness, queries, store
from govsync.ops import dlq, lag
from govsync.ops.dlq import SourceAccount
from govsync.ops.instances import WorkerInstance, worker_instances
from govsync.ops.lag import STATUS_ORDER, GroupState, LagReport, Status
from govsync.ops.quality import SourceQuality, source_rates
from streams.config.settings import Settings
from streams.contract.topics import NORMALIZE, stage_group
from streams.kafka import admin, applied
from streams.kafka.admin import AdminError
from streams.kafka.serde import RegistryUnreachable
from streams.model.topology import Topology
from streams.trail.receipts import Unanswered

log = logging.getLogger("govsync.monitor")

REFRESH_S = 5.0
WORKER_TIMEOUT_S = 2.0
INSTANCE_LABEL = "worker_instance"

# Failures with a message that says it all; anything else is logged with its traceback.
KNOWN = (AdminError, RegistryUnreachable, OSError)

Light = Literal["green", "yellow", "red", "grey"]


class DepartmentState(BaseModel):
    """What concerns one department: the groups reading its subscriptions and normalize
    reading its sources' cdc topics. Grey where neither is measured."""

    department: str
    name: str
    status: Light
    lag: int
    lag_seconds: float | None
    receives: list[str]
    sends: list[str]


class DeadLetters(BaseModel):
    source: str
    open: int
    total: int
    account: SourceAccount | None  # counted by the index, every refresh
    balanced: bool | None  # None: not accounted yet, or the index had not read everything


class ReceiptsDue(BaseModel):
    subscription: str
    department: str
    overdue: int
    awaited: int  # unanswered, still within receipt_within
    oldest: Unanswered | None  # the longest-waiting overdue delivery


class Sleeping(BaseModel):
    """An active subscription nobody reads: its records pile up unseen."""

    subscription: str
    department: str
    topic: str
    state: GroupState
    waiting: int


class WorkerState(WorkerInstance):
    up: bool  # its /metrics answered at the last refresh


class MonitorState(BaseModel):
    at: datetime | None = None  # when the data shown was measured; None before the first
    checked_at: datetime | None = None  # the last attempt, successful or not
    seconds_taken: float | None = None
    error: str | None = None  # why the last attempt failed; the data is the last good one
    # What the measurement under way is waiting for (None between measurements): the page
    # says it instead of a bare "no measurement yet", and when the numbers shown are stale.
    waiting_for: str | None = None
    index_behind: int | None = None  # trail records the receipts index lacks (govsync.index)
    departments: list[DepartmentState] = []
    dead_letters: list[DeadLetters] = []
    quality: list[SourceQuality] = []  # error and objection rates per source
    accounted_at: datetime | None = None
    receipts: list[ReceiptsDue] = []
    sleeping: list[Sleeping] = []
    lag: LagReport | None = None
    workers: list[WorkerState] = []


# --- the state, from what was measured (pure) -------------------------------------------


def departments(topology: Topology, report: LagReport) -> list[DepartmentState]:
    normalized = {g.topic: g for g in report.pipeline if g.group == stage_group(NORMALIZE)}
    found = []
    for department_id, department in topology.departments.items():
        receives = [s.id for s in topology.subscriptions if s.department == department_id]
        sources = [s for s in topology.sources if s.department == department_id]
        rows = [g for g in report.subscriptions if g.department == department_id]
        rows += [normalized[s.cdc_topic] for s in sources if s.cdc_topic in normalized]
        ages = [g.lag_seconds for g in rows if g.lag_seconds is not None]
        found.append(
            DepartmentState(
                department=department_id,
                name=department.name,
                status=max((g.status for g in rows), key=STATUS_ORDER.__getitem__)
                if rows
                else "grey",
                lag=sum(g.lag for g in rows),
                lag_seconds=max(ages) if ages else None,
                receives=receives,
                sends=[s.id for s in sources],
            )
        )
    return found


def sleeping(topology: Topology, report: LagReport, now: datetime) -> list[Sleeping]:
    active = {s.id for s in topology.subscriptions if s.is_active(now)}
    return [
        Sleeping(
            subscription=g.name,
            department=g.department or "",
            topic=g.topic,
            state=g.state,
            waiting=g.lag,
        )
        for g in report.subscriptions
        if g.name in active and g.state in ("no_group", "no_commits")
    ]


def dead_letters(topology: Topology, accounts: list[SourceAccount]) -> list[DeadLetters]:
    by_source = {a.source: a for a in accounts}
    found = []
    for source in topology.sources:
        account = by_source.get(source.id)
        found.append(
            DeadLetters(
                source=source.id,
                open=account.dead_letters_open if account else 0,
                total=account.dead_letters_held if account else 0,
                account=account,
                balanced=account.balanced if account else None,
            )
        )
    return found


def receipts_due(topology: Topology, waiting: list[Unanswered]) -> list[ReceiptsDue]:
    found = []
    for subscription in topology.subscriptions:
        mine = [w for w in waiting if w.subscription == subscription.id]
        overdue = [w for w in mine if w.overdue]  # oldest first, as unanswered() sorts
        found.append(
            ReceiptsDue(
                subscription=subscription.id,
                department=subscription.department,
                overdue=len(overdue),
                awaited=len(mine) - len(overdue),
                oldest=overdue[0] if overdue else None,
            )
        )
    return found


# --- Prometheus ---------------------------------------------------------------------------


def metric_families(state: MonitorState) -> list[Metric]:
    """The cached state as gauges; partition-level names and labels as kafka_exporter's."""
    by_partition = ["consumergroup", "topic", "partition"]
    group_lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Records from the committed offset to the end",
        labels=by_partition,
    )
    group_offset = GaugeMetricFamily(
        "kafka_consumergroup_current_offset", "The group's committed offset", labels=by_partition
    )
    topic_offset = GaugeMetricFamily(
        "kafka_topic_partition_current_offset",
        "End offset a read_committed consumer can reach",
        labels=["topic", "partition"],
    )
    lag_seconds = GaugeMetricFamily(
        "govsync_consumergroup_lag_seconds",
        "Age of the oldest record the group has not consumed (0: nothing waits)",
        labels=by_partition,
    )
    status = GaugeMetricFamily(
        "govsync_subscription_status",
        "Against the subscription's SLA: 0 green, 1 yellow, 2 red",
        labels=["subscription", "department"],
    )
    dlq_open = GaugeMetricFamily(
        "govsync_dlq_open_records", "Dead-lettered records not yet closed", labels=["source"]
    )
    objections_open = GaugeMetricFamily(
        "govsync_objections_open",
        "Objections to a source's data (数据异议) its department has not answered",
        labels=["source"],
    )
    error_rate = GaugeMetricFamily(
        "govsync_source_error_rate",
        "Records of the source dead-lettered, per record processed",
        labels=["source"],
    )
    overdue = GaugeMetricFamily(
        "govsync_receipts_overdue",
        "Deliveries without a receipt past the subscription's receipt_within",
        labels=["subscription"],
    )
    refresh_ok = GaugeMetricFamily(
        "govsync_monitor_refresh_ok", "1 if the last refresh succeeded; 0: values are older"
    )
    measured_at = GaugeMetricFamily(
        "govsync_monitor_measured_timestamp_seconds", "When the values were measured"
    )
    report = state.lag
    if report is not None:
        groups = {(g.group, g.topic): g for g in [*report.subscriptions, *report.pipeline]}
        ends: dict[tuple[str, int], int] = {}
        for (group, _), g in groups.items():
            for row in g.partitions:
                if row.state == "topic_missing":
                    continue
                ends[(row.topic, row.partition)] = row.end
                if group is None:
                    continue  # nobody reads it: only the topic's end is a fact
                labels = [group, row.topic, str(row.partition)]
                group_lag.add_metric(labels, row.lag)
                if row.committed is not None:
                    group_offset.add_metric(labels, row.committed)
                if row.lag_seconds is not None or row.lag == 0:
                    lag_seconds.add_metric(labels, row.lag_seconds or 0.0)
        for (topic, partition), end in sorted(ends.items()):
            topic_offset.add_metric([topic, str(partition)], end)
        worst: dict[tuple[str, str], Status] = {}
        for g in report.subscriptions:
            key = (g.name, g.department or "")
            if key not in worst or STATUS_ORDER[g.status] > STATUS_ORDER[worst[key]]:
                worst[key] = g.status
        for (subscription, department), light in worst.items():
            status.add_metric([subscription, department], STATUS_ORDER[light])
    for d in state.dead_letters:
        dlq_open.add_metric([d.source], d.open)
    for q in state.quality:
        objections_open.add_metric([q.source], q.open)
        if q.error_rate is not None:
            error_rate.add_metric([q.source], q.error_rate)
    for r in state.receipts:
        overdue.add_metric([r.subscription], r.overdue)
    refresh_ok.add_metric([], 0 if state.error else 1)
    if state.at is not None:
        measured_at.add_metric([], state.at.timestamp())
    return [
        group_lag,
        group_offset,
        topic_offset,
        lag_seconds,
        status,
        dlq_open,
        objections_open,
        error_rate,
        overdue,
        refresh_ok,
        measured_at,
    ]


class StateCollector(Collector):
    """Collects from whatever state is current at scrape time."""

    def __init__(self, current: Callable[[], MonitorState]) -> None:
        self._current = current

    def collect(self) -> Iterable[Metric]:
        return metric_families(self._current())


class Scraped(BaseModel):
    instance: str
    url: str
    text: str | None  # None: it did not answer


def scrape(workers: list[WorkerInstance]) -> list[Scraped]:
    """Every instance's /metrics, concurrently, each within WORKER_TIMEOUT_S."""

    def one(worker: WorkerInstance) -> Scraped:
        try:
            response = httpx.get(worker.metrics_url, timeout=WORKER_TIMEOUT_S)
            response.raise_for_status()
        except httpx.HTTPError:
            return Scraped(instance=worker.id, url=worker.metrics_url, text=None)
        return Scraped(instance=worker.id, url=worker.metrics_url, text=response.text)

    if not workers:
        return []
    with ThreadPoolExecutor(max_workers=min(len(workers), 16)) as pool:
        return list(pool.map(one, workers))


def exposition(registry: CollectorRegistry, workers: list[Scraped]) -> bytes:
    """The monitor's own metrics, then every worker instance's, labelled by instance (or
    why they are missing)."""
    up = GaugeMetricFamily(
        "govsync_worker_up", "1 if the worker instance's /metrics answered", labels=[INSTANCE_LABEL]
    )
    families: dict[str, Metric] = {"govsync_worker_up": up}
    notes = "" if workers else "# no worker instance found in the stage groups\n"
    for worker in workers:
        try:
            parsed = list(text_string_to_metric_families(worker.text or ""))
        except ValueError:
            parsed = None
        up.add_metric([worker.instance], 0 if worker.text is None or parsed is None else 1)
        if worker.text is None or parsed is None:
            why = "did not answer" if worker.text is None else "answered what is no exposition"
            notes += f"# worker instance {worker.instance} at {worker.url} {why}\n"
            continue
        for family in parsed:
            merged = families.setdefault(
                family.name, Metric(family.name, family.documentation, family.type, family.unit)
            )
            merged.samples += [
                s._replace(labels={**s.labels, INSTANCE_LABEL: worker.instance})
                for s in family.samples
            ]
    workers_registry = CollectorRegistry(auto_describe=False)
    workers_registry.register(_Fixed(list(families.values())))
    return generate_latest(registry) + notes.encode() + generate_latest(workers_registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


# --- refreshing -----------------------------------------------------------------------------


class Refresher:
    """Keeps ``state`` current from one thread; readers take the cached copy (replaced
    whole, never mutated, so a reader never sees half a refresh)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = MonitorState()
        self._admin: AdminClient | None = None  # made on first use, by the refresher

    def run(self, stop: threading.Event) -> None:
        while True:
            started = time.monotonic()
            self.refresh()
            if stop.wait(max(0.5, REFRESH_S - (time.monotonic() - started))):
                return

    def refresh(self) -> None:
        now = datetime.now(UTC)
        started = time.monotonic()
        try:
            state = self._measure(now)
        except Exception as exc:  # the server must outlive a broker outage
            message = str(exc) or type(exc).__name__
            if message != self.state.error:  # once per outage, not every few seconds
                log.warning("refresh failed: %s", message, exc_info=not isinstance(exc, KNOWN))
            self.state = self.state.model_copy(update={"checked_at": now, "error": message})
            return
        if self.state.error:
            log.info("refresh works again")
        state.seconds_taken = round(time.monotonic() - started, 3)
        self.state = state

    def _waiting_for(self, what: str) -> None:
        self.state = self.state.model_copy(update={"waiting_for": what})

    def _measure(self, now: datetime) -> MonitorState:
        settings = self.settings
        self._waiting_for(f"the topology in force (Kafka at {settings.bootstrap})")
        topology = applied.in_force(settings).topology
        self._admin = self._admin or admin.admin_client(settings.bootstrap)
        self._waiting_for("consumer lag of every group (Kafka)")
        report = lag.report(self._admin, settings.bootstrap, topology)
        self._waiting_for(f"the dead-letter accounting (database {store.DATABASE})")
        # Not waiting for the index: the page says how far behind it is instead.
        accounts = dlq.accounting(settings, topology, wait=0)
        self._waiting_for(f"the objections (database {store.DATABASE})")
        with store.reading(settings) as conn:
            objected = queries.objections(conn)
        self._waiting_for(f"the receipts index (database {store.DATABASE})")
        waiting, behind = self._unanswered(topology)
        self._waiting_for("the worker instances' metrics")
        found = worker_instances(settings, self._admin)
        answered = {w.instance: w.text is not None for w in scrape(found)}
        return MonitorState(
            index_behind=behind,
            at=now,
            checked_at=now,
            departments=departments(topology, report),
            dead_letters=dead_letters(topology, accounts),
            quality=source_rates(topology, accounts, objected),
            accounted_at=now,
            receipts=receipts_due(topology, waiting),
            sleeping=sleeping(topology, report, now),
            lag=report,
            workers=[WorkerState(**w.model_dump(), up=answered[w.id]) for w in found],
        )

    def _unanswered(self, topology: Topology) -> tuple[list[Unanswered], int]:
        """From the index (govsync.index): a lookup, however long the trail's history;
        and how many trail records the index has still to read."""
        with store.reading(self.settings) as conn:
            return (
                queries.unanswered(conn, topology, int(time.time() * 1000)),
                freshness.lacking(self.settings, conn),
            )


# --- serving --------------------------------------------------------------------------------


def page() -> bytes:
    return resources.files("govsync.ops").joinpath("monitor_assets/index.html").read_bytes()


NO_STORE = {"Cache-Control": "no-store"}


def application(refresher: Refresher, index: bytes) -> Starlette:
    """The page, its data and the scrape, all from the refresher's cache (the workers'
    own metrics are scraped per request). Plain ``def`` endpoints: Starlette runs them in
    its thread pool, so a slow worker scrape never holds the event loop."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(lambda: refresher.state))

    def page_(_: Request) -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=NO_STORE)

    def state(_: Request) -> Response:
        body = refresher.state.model_dump_json()
        return Response(body, media_type="application/json", headers=NO_STORE)

    def metrics(_: Request) -> Response:
        # The instances as last discovered; their metrics as they are now.
        body = exposition(registry, scrape(list(refresher.state.workers)))
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers=NO_STORE)

    return Starlette(
        routes=[
            Route("/", page_),
            Route("/index.html", page_),
            Route("/api/state", state),
            Route("/metrics", metrics),
        ]
    )


def serve(settings: Settings) -> None:
    """Serve on uvicorn until SIGTERM/SIGINT; raises OperationFailed when the port cannot
    be bound. The socket is bound here, before uvicorn starts, so that failure is one
    clear line rather than uvicorn's exit."""
    refresher = Refresher(settings)
    address = (settings.listen_host, settings.monitor_port)
    listening = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as exc:
        listening.close()
        raise OperationFailed(
            f"the monitor cannot listen on {settings.listen_host}:{settings.monitor_port}: "
            f"{exc.strerror} (set GOVSYNC_MONITOR_PORT or --port)"
        ) from None
    stop = threading.Event()
    threading.Thread(target=refresher.run, args=(stop,), name="refresher", daemon=True).start()
    server = uvicorn.Server(
        uvicorn.Config(
            application(refresher, page()), access_log=False, log_config=None, lifespan="off"
        )
    )
    log.info("monitor on http://%s:%d/ (metrics on /metrics)", *address)
    try:
        server.run(sockets=[listening])  # uvicorn re-raises SIGTERM once it has shut down
    finally:
        stop.set()
        listening.close()
