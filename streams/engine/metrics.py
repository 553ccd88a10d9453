"""The worker's Prometheus metrics: what was captured, delivered, filtered, dropped or held.

Accounting that proves nothing is lost reads from these: for every source,
captured = normalized + dead-lettered; for every subscription, each normalized change
is delivered, filtered (minimum necessary, inactive, or no canonical field changed), or a
dropped duplicate.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from streams.engine.state import AfterCommit

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
DELIVERY_LATENCY = Histogram(
    "govsync_source_to_delivery_seconds",
    "Source commit to delivery produce time",
    ["subscription"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
TRANSACTIONS = Counter(
    "govsync_transactions_total", "Worker transactions by outcome", ["stage", "outcome"]
)
DEDUP_ENTRIES = Gauge("govsync_dedup_entries", "event_ids remembered by the dedup store", ["stage"])


class Tally(AfterCommit):
    """Metric updates held until the transaction they describe commits."""

    def inc(self, counter: Counter, *labels: str) -> None:
        self.add(lambda: counter.labels(*labels).inc())

    def observe(self, histogram: Histogram, value: float, *labels: str) -> None:
        self.add(lambda: histogram.labels(*labels).observe(value))
