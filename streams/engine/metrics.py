"""The worker's Prometheus metrics: what was captured, delivered, filtered, dropped or held.

Accounting that proves nothing is lost reads from these: for every source,
captured = normalized + dead-lettered; for every subscription, each normalized change
is delivered, filtered (minimum necessary, inactive, or no canonical field changed), or a
dropped duplicate.
"""

from __future__ import annotations

import collections

from prometheus_client import Counter, Gauge, Histogram

CAPTURED = Counter(
    "govsync_captured_records_total", "Change records read from cdc topics", ["source"]
)
NORMALIZED = Counter(
    "govsync_normalized_records_total", "Canonical change events produced", ["source", "entity"]
)
DEAD_LETTERED = Counter(
    "govsync_dead_lettered_records_total",
    "Records held on the dead-letter queue",
    ["source", "error_code"],
)
DUPLICATES = Counter(
    "govsync_duplicates_dropped_total", "Changes dropped as already delivered", ["entity"]
)
DISCREPANCIES = Counter(
    "govsync_quality_discrepancies_total",
    "Values a non-authoritative source holds that differ from the canonical value (一数一源)",
    ["source", "field"],
)
DELIVERED = Counter(
    "govsync_delivered_records_total", "Records delivered to a subscription", ["subscription"]
)
FILTERED = Counter(
    "govsync_filtered_records_total",
    "Changes a subscription does not receive (no subscribed field changed, or inactive)",
    ["subscription"],
)
REPEATS = Counter(
    "govsync_audit_repeats_skipped_total",
    "Inputs read again whose audit record the chain already held (a standby taking over)",
    ["kind"],
)
DELIVERY_LATENCY = Histogram(
    "govsync_source_to_delivery_seconds",
    "Source commit to delivery produce time",
    ["subscription"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
TRANSACTIONS = Counter(
    "govsync_transactions_total", "Worker transactions by outcome", ["stage", "outcome"]
)
DEDUP_ENTRIES = Gauge(
    "govsync_dedup_entries",
    "event_ids remembered by the dedup store",
    ["stage"],
    # Each stage runs in a process of its own (streams.worker): the live one's value.
    multiprocess_mode="livesum",
)


class Tally:
    """Metric updates held until the transaction they describe commits (an aborted batch
    is processed again and must not be counted twice), added up per label set so a
    commit touches each counter once."""

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[Counter, tuple[str, ...]]] = collections.Counter()
        self._observed: list[tuple[Histogram, tuple[str, ...], float]] = []

    def inc(self, counter: Counter, *labels: str) -> None:
        self._counts[(counter, labels)] += 1

    def observe(self, histogram: Histogram, value: float, *labels: str) -> None:
        self._observed.append((histogram, labels, value))

    def commit(self) -> None:
        counts, self._counts = self._counts, collections.Counter()
        observed, self._observed = self._observed, []
        for (counter, labels), count in counts.items():
            counter.labels(*labels).inc(count)
        for histogram, labels, value in observed:
            histogram.labels(*labels).observe(value)

    def abort(self) -> None:
        self._counts.clear()
        self._observed.clear()
