"""Load generator and checker for the fault tests.

``prepare`` makes brand-new enterprises and waits until they are delivered;
``run_load`` (or ``start_load``, the same in a background thread) commits numbered
renames ``<base name>#<run_id>#<seq>`` round-robin over them; ``check`` reads what
reached the raw CDC topic, ``changes.*``, ``master.*`` and the delivery topics and
reports, per topic, what is missing, duplicated or out of order. ``recovery`` turns the
report's timestamps into how long the pipeline took to deliver again after a fault.

Reading is fast: values after ``cdc.*`` are not Avro-decoded; the seq is found in the raw
bytes by its marker (the run id is unique and the seq has a fixed width), the event id
comes from the ``event_id`` header, and a sample of records is fully decoded to prove the
shortcut right. Raw Debezium records of the run are decoded, to give them the event id
normalize gives them.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer
from streams.kafka.topic_reader import Offsets
from streams.transform import normalize
from tests.integration.companies import (
    CDC_TOPIC,
    CHANGES,
    MASTER,
    SOCIAL,
    TAX,
    insert_many,
    new_company,
)
from tests.integration.conftest import Stack

DELIVERIES = (TAX, SOCIAL)
# The raw CDC topic too, so a loss or a copy can be placed: Debezium or the worker.
REPORT_TOPICS = (CDC_TOPIC, CHANGES, MASTER, TAX, SOCIAL)
SEQ_WIDTH = 6  # fixed width, so the seq ends where the marker says and nowhere else
VERIFY_EVERY = 500  # fully decode every n-th record of the run to check the byte probe
RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Any run's marker in a record's bytes: a record may carry two runs' names (a ``before``
# renamed by one run, an ``after`` by the next), and only the last one is its own.
_MARKER = re.compile(b"#(" + RUN_ID.pattern.encode() + rb")#(\d{%d})" % SEQ_WIDTH)

# Offsets each run started from, by run id: what ``check`` reads from unless told.
_STARTS: dict[str, Offsets] = {}


# --- preparing ---------------------------------------------------------------------------


def prepare(stack: Stack, companies: int = 200, timeout: float = 120.0) -> list[str]:
    """Insert ``companies`` brand-new active enterprises in one transaction; return their
    USCCs once every registration is on deliver.tax.enterprise."""
    fresh = [new_company(reg_status="1") for _ in range(companies)]
    usccs = [company.credit_code for company in fresh]
    start = stack.offsets(TAX)
    insert_many(stack, fresh)
    waiting = set(usccs)
    for record in topic_reader.read(
        stack.settings.bootstrap,
        _NoValues(stack.decode),
        start,
        until=lambda _: not waiting,
        timeout=timeout,
    ):
        waiting.discard(record.key or "")
    if waiting:
        raise AssertionError(
            f"{len(waiting)} of {companies} new enterprises were not registered on {TAX}"
            f" within {timeout:.0f}s"
        )
    return usccs


# --- loading -----------------------------------------------------------------------------


def name_of(base: str, run_id: str, seq: int) -> str:
    """The name change number ``seq`` of a run gives its company."""
    return f"{base}#{run_id}#{seq:0{SEQ_WIDTH}d}"


@dataclass
class Progress:
    """How far a load has got; written by the loading thread, read by the test."""

    run_id: str
    total: int
    start: Offsets = field(default_factory=dict, repr=False)
    committed: int = 0
    started_at: float | None = None  # epoch seconds of the first commit's start
    finished_at: float | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def fraction(self) -> float:
        return self.committed / self.total if self.total else 1.0

    def wait_for(self, fraction: float, timeout: float = 300.0) -> int:
        """Block until at least ``fraction`` of the load is committed; return the count."""
        deadline = time.monotonic() + timeout
        while self.fraction < fraction:
            if self.error is not None:
                raise RuntimeError(f"the load of run {self.run_id} failed") from self.error
            if self.done.is_set() or time.monotonic() > deadline:
                raise AssertionError(
                    f"run {self.run_id} stopped at {self.committed}/{self.total} commits"
                    f" before reaching {fraction:.0%}"
                )
            time.sleep(0.01)
        return self.committed


def run_load(
    stack: Stack,
    usccs: list[str],
    total: int,
    run_id: str,
    batch: int = 100,
    *,
    rate: float | None = None,
    progress: Progress | None = None,
) -> None:
    """Commit ``total`` renames in transactions of ``batch`` rows, round-robin over
    ``usccs``: change ``seq`` (0..total-1) renames ``usccs[seq % len(usccs)]``. ``rate``
    (changes per second) paces the commits; None commits as fast as PostgreSQL takes them.
    Records the topics' offsets first, for ``check``."""
    if not usccs or total >= 10**SEQ_WIDTH or not RUN_ID.fullmatch(run_id):
        raise ValueError(f"need companies, total < 10**{SEQ_WIDTH}, a run id like {RUN_ID.pattern}")
    progress = progress or Progress(run_id, total)
    try:
        progress.start = _STARTS[run_id] = stack.offsets(*REPORT_TOPICS)
        with psycopg.connect(
            stack.settings.pg_conninfo("market_regulation"), autocommit=True
        ) as conn:
            rows = conn.execute(
                "SELECT credit_code, ent_name FROM enterprise WHERE credit_code = ANY(%s)",
                (usccs,),
            ).fetchall()
            base = {code: name.split("#", 1)[0] for code, name in rows}
            if len(base) != len(set(usccs)):
                raise AssertionError(f"{len(set(usccs)) - len(base)} companies do not exist")
            progress.started_at = time.time()
            began = time.monotonic()
            for first in range(0, total, batch):
                seqs = range(first, min(first + batch, total))
                params = [
                    (name_of(base[usccs[s % len(usccs)]], run_id, s), usccs[s % len(usccs)])
                    for s in seqs
                ]
                with conn.transaction(), conn.cursor() as cursor:
                    cursor.executemany(
                        "UPDATE enterprise SET ent_name = %s, updated_at = now()"
                        " WHERE credit_code = %s",
                        params,
                    )
                    if cursor.rowcount != len(params):
                        raise AssertionError(
                            f"updated {cursor.rowcount} rows for {len(params)} changes"
                        )
                progress.committed = seqs.stop
                if rate:
                    pause = seqs.stop / rate - (time.monotonic() - began)
                    if pause > 0:
                        time.sleep(pause)
        progress.finished_at = time.time()
    except BaseException as exc:
        progress.error = exc
        raise
    finally:
        progress.done.set()


class LoadThread(threading.Thread):
    """``run_load`` in the background; ``progress`` tells how far it got."""

    def __init__(
        self,
        stack: Stack,
        usccs: list[str],
        total: int,
        run_id: str,
        batch: int = 100,
        rate: float | None = None,
    ) -> None:
        super().__init__(name=f"load-{run_id}", daemon=True)
        self.progress = Progress(run_id, total)
        self._args = (stack, usccs, total, run_id, batch)
        self._rate = rate

    def run(self) -> None:
        # An error is kept in progress.error; finish() raises it in the test's thread.
        with contextlib.suppress(BaseException):
            run_load(*self._args, rate=self._rate, progress=self.progress)

    def finish(self, timeout: float = 600.0) -> Progress:
        """Wait for the last commit; raise what the load raised."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"the load of run {self.progress.run_id} did not finish")
        if self.progress.error is not None:
            raise RuntimeError(f"the load of run {self.progress.run_id} failed") from (
                self.progress.error
            )
        return self.progress


def start_load(
    stack: Stack,
    usccs: list[str],
    total: int,
    run_id: str,
    batch: int = 100,
    rate: float | None = None,
) -> LoadThread:
    """Start ``run_load`` in a background thread and return it once the offsets are taken."""
    thread = LoadThread(stack, usccs, total, run_id, batch, rate)
    thread.start()
    while not thread.progress.start and not thread.progress.done.is_set():
        time.sleep(0.01)
    return thread


# --- checking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One record of the run as the checker keeps it."""

    key: str
    partition: int
    offset: int
    seq: int
    event_id: str
    timestamp_ms: int


@dataclass
class TopicReport:
    """What one topic holds of a run."""

    topic: str
    expected: int
    received: int = 0  # records of the run, copies included
    missing: list[int] = field(default_factory=list)  # seqs never seen
    duplicate_event_ids: int = 0  # extra copies of an event_id
    duplicate_seqs: int = 0  # extra copies of a change (seq)
    seqs_with_several_event_ids: int = 0  # one change under two ids: dedup cannot catch it
    order_violations: int = 0  # a change first delivered after a later one of its company
    rewinds: int = 0  # places where a company's next record has a lower seq (copies too)
    misrouted: int = 0  # seq out of range, on the wrong key, or a key on two partitions
    examples: list[str] = field(default_factory=list)
    records: list[Seen] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, int]:
        """The counts a benchmark's JSON line reports for the topic."""
        return {
            "received": self.received,
            "missing": len(self.missing),
            "duplicate_event_ids": self.duplicate_event_ids,
            "order_violations": self.order_violations,
        }

    @property
    def exactly_once_in_order(self) -> bool:
        return not (
            self.missing
            or self.duplicate_event_ids
            or self.duplicate_seqs
            or self.order_violations
            or self.misrouted
        )

    def __str__(self) -> str:
        missing = f"{len(self.missing)}" + (
            f" (first {_abbreviate(self.missing)})" if self.missing else ""
        )
        line = (
            f"{self.topic}: expected {self.expected}, received {self.received},"
            f" missing {missing}, duplicated event_ids {self.duplicate_event_ids}"
            f" / seqs {self.duplicate_seqs}"
            f" (seqs under several event_ids {self.seqs_with_several_event_ids}),"
            f" order violations {self.order_violations} (rewinds {self.rewinds}),"
            f" misrouted {self.misrouted}"
        )
        return "\n".join([line, *(f"    e.g. {example}" for example in self.examples)])


@dataclass
class Report:
    """A run as the topics saw it, per topic."""

    run_id: str
    total: int
    companies: int
    complete: bool  # every change reached every topic before the timeout
    waited_s: float
    topics: dict[str, TopicReport]
    checked_at: float = field(default_factory=time.time)  # epoch seconds of the last read

    def __getitem__(self, topic: str) -> TopicReport:
        return self.topics[topic]

    def __str__(self) -> str:
        state = "complete" if self.complete else "INCOMPLETE (timed out)"
        head = (
            f"run {self.run_id}: {self.total} changes over {self.companies} companies,"
            f" {state} after {self.waited_s:.1f}s of checking"
        )
        return "\n".join([head, *(f"  {report}" for report in self.topics.values())])


def check(
    stack: Stack,
    usccs: list[str],
    run_id: str,
    total: int,
    timeout: float = 300.0,
    *,
    start: Offsets | None = None,
    topics: Iterable[str] = REPORT_TOPICS,
    settle: float = 5.0,
) -> Report:
    """Wait until every change of the run is on every topic (or ``timeout``), read ``settle``
    seconds more for late copies, and report per topic. Reads from ``start``, by default the
    offsets ``run_load`` recorded for ``run_id``."""
    topics = tuple(topics)
    offsets = start if start is not None else _STARTS[run_id]
    position = {tp: o for tp, o in offsets.items() if tp[0] in topics}
    probe = _SeqProbe(stack.decode, run_id)
    seen: dict[str, list[Seen]] = {topic: [] for topic in topics}
    distinct: dict[str, set[int]] = {topic: set() for topic in topics}
    began = time.monotonic()
    deadline = began + timeout
    complete = False
    settled_at: float | None = None
    while True:
        try:
            records = list(topic_reader.read(stack.settings.bootstrap, probe, position, timeout=30))
        except RuntimeError:  # a broker that is still coming back: try again
            records = []
        for record in records:
            position[(record.topic, record.partition)] = record.offset + 1
            if record.value is None:
                continue
            seq = record.value["seq"]
            envelope = record.value.get("envelope")
            event_id = (
                normalize.event_id(envelope, json.loads(record.key or "null"))
                if envelope is not None  # a raw Debezium record: the id normalize gives it
                else record.headers.get("event_id", "")
            )
            seen[record.topic].append(
                Seen(
                    record.key or "",
                    record.partition,
                    record.offset,
                    seq,
                    event_id,
                    record.timestamp_ms,
                )
            )
            distinct[record.topic].add(seq)
        now = time.monotonic()
        complete = all(len(seqs) >= total for seqs in distinct.values())
        if complete and settled_at is None:
            settled_at = now + settle
        if (settled_at is not None and now >= settled_at) or now >= deadline:
            break
        time.sleep(0.5)
    return Report(
        run_id=run_id,
        total=total,
        companies=len(usccs),
        complete=complete,
        waited_s=time.monotonic() - began,
        topics={topic: _analyse(topic, seen[topic], usccs, total) for topic in topics},
    )


def _analyse(topic: str, records: list[Seen], usccs: list[str], total: int) -> TopicReport:
    report = TopicReport(topic, expected=total, received=len(records), records=records)
    ids: dict[str, int] = defaultdict(int)
    copies: dict[int, int] = defaultdict(int)
    ids_of: dict[int, set[str]] = defaultdict(set)
    by_key: dict[str, list[Seen]] = defaultdict(list)
    keyed_by_uscc = topic != CDC_TOPIC  # Debezium keys by primary key, as JSON here
    for r in records:
        ids[r.event_id] += 1
        copies[r.seq] += 1
        ids_of[r.seq].add(r.event_id)
        by_key[r.key].append(r)
        if not 0 <= r.seq < total or (keyed_by_uscc and usccs[r.seq % len(usccs)] != r.key):
            report.misrouted += 1
            _example(report, f"seq {r.seq} on key {r.key} at {r.partition}@{r.offset}")
    report.missing = sorted(set(range(total)) - set(copies))
    report.duplicate_event_ids = sum(n - 1 for n in ids.values())
    report.duplicate_seqs = sum(n - 1 for n in copies.values())
    report.seqs_with_several_event_ids = sum(1 for s in ids_of.values() if len(s) > 1)
    for seq, n in sorted(copies.items()):
        if n > 1:
            _example(report, f"seq {seq} {n} times, event_ids {sorted(ids_of[seq])}")
    for key, mine in by_key.items():
        if len({r.partition for r in mine}) > 1:
            report.misrouted += 1
            _example(report, f"key {key} on partitions {sorted({r.partition for r in mine})}")
        mine.sort(key=lambda r: (r.partition, r.offset))
        first: set[int] = set()
        latest = previous = -1
        for r in mine:
            if r.seq < previous:
                report.rewinds += 1
            if r.seq < latest and r.seq not in first:
                report.order_violations += 1
                _example(report, f"{key}: seq {r.seq} after {latest} at offset {r.offset}")
            first.add(r.seq)
            latest = max(latest, r.seq)
            previous = r.seq
    return report


def _example(report: TopicReport, text: str, limit: int = 5) -> None:
    if len(report.examples) < limit:
        report.examples.append(text)


def _abbreviate(seqs: list[int], limit: int = 10) -> str:
    return ", ".join(map(str, seqs[:limit])) + (" …" if len(seqs) > limit else "")


# --- recovery ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """How deliveries on one topic went on after a fault (from the records' timestamps)."""

    topic: str
    committed_at_fault: int  # changes committed in PostgreSQL when the fault hit
    delivered_at_fault: int  # of those, already on the topic then
    first_post_fault_change_s: float | None  # fault -> first change committed after it
    longest_stall_s: float  # longest gap between deliveries from the fault on (to the
    # end of checking, when the run did not complete)

    def __str__(self) -> str:
        first = (
            "never delivered"
            if self.first_post_fault_change_s is None
            else f"delivered after {self.first_post_fault_change_s:.1f}s"
        )
        return (
            f"{self.topic}: first change committed after the fault {first};"
            f" longest stall {self.longest_stall_s:.1f}s; at the fault"
            f" {self.delivered_at_fault}/{self.committed_at_fault} committed changes"
            f" were delivered"
        )


def recovery(
    report: Report, fault_at: float, committed_at_fault: int, topic: str = TAX
) -> Recovery:
    """Recovery after a fault at epoch ``fault_at``, when ``committed_at_fault`` changes were
    committed. Timestamps are the producer's (when the worker wrote the record)."""
    records = report[topic].records
    fault_ms = fault_at * 1000
    delivered = {r.seq for r in records if r.timestamp_ms <= fault_ms}
    after = sorted(r.timestamp_ms for r in records if r.timestamp_ms > fault_ms)
    post = [r.timestamp_ms for r in records if r.seq >= committed_at_fault]
    ends = after if report.complete else [*after, report.checked_at * 1000]  # still stalled
    gaps = [b - a for a, b in zip([fault_ms, *ends], ends, strict=False)]
    return Recovery(
        topic=topic,
        committed_at_fault=committed_at_fault,
        delivered_at_fault=len(delivered),
        first_post_fault_change_s=(min(post) - fault_ms) / 1000 if post else None,
        longest_stall_s=max(gaps, default=0.0) / 1000,
    )


# --- reading -----------------------------------------------------------------------------


class _NoValues(ValueDeserializer):
    """Decodes nothing: for when the key is all that matters."""

    def __init__(self, full: ValueDeserializer) -> None:
        self._full = full

    def __call__(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        return None

    def key(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        return self._full.key(topic, data)


class _SeqProbe(_NoValues):
    """``{"seq": n}`` for a record of the run, None for any other, without Avro decoding.

    The new name is the last run marker in the bytes: ``after`` follows ``before`` in
    change and delivery events, and master holds one state. A record whose last marker is
    another run's is not this run's, even if its ``before`` was renamed by it. Every
    ``VERIFY_EVERY``-th match is fully decoded and compared, so a schema change that
    broke this shows up as a harness error, not as a wrong report.
    """

    def __init__(self, full: ValueDeserializer, run_id: str) -> None:
        super().__init__(full)
        self._run_id = run_id
        self._marker = f"#{run_id}#".encode()
        self._matches = 0

    def __call__(self, topic: str, data: bytes | None) -> dict[str, Any] | None:
        if data is None or self._marker not in data:
            return None
        *_, last = _MARKER.finditer(data)
        if last.group(1).decode() != self._run_id:
            return None
        seq = int(last.group(2))
        if topic == CDC_TOPIC:  # no event_id header yet: decode, check, keep the envelope
            envelope = self._verify(topic, data, seq)
            return {"seq": seq, "envelope": envelope}
        if self._matches % VERIFY_EVERY == 0:
            self._verify(topic, data, seq)
        self._matches += 1
        return {"seq": seq}

    def _verify(self, topic: str, data: bytes, seq: int) -> dict[str, Any]:
        value = self._full(topic, data) or {}
        state = value.get("after", value)
        name = (state or {}).get("name") or (state or {}).get("ent_name") or ""
        suffix = f"#{self._run_id}#{seq:0{SEQ_WIDTH}d}"
        if not name.endswith(suffix):
            raise AssertionError(f"byte probe read seq {seq} on {topic}, the record says {name}")
        return value
