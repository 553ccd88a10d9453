"""The monitor's pure parts: department lights, sleeping subscriptions, the receipts panel,
the Prometheus exposition from a hand-built lag report, and a failed refresh."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from govsync.ops.dlq import SourceAccount
from govsync.ops.lag import GroupLag, LagReport, PartitionLag
from govsync.ops.monitor import (
    MonitorState,
    Refresher,
    Scraped,
    StateCollector,
    dead_letters,
    departments,
    exposition,
    receipts_due,
    sleeping,
)
from streams.config.settings import Settings
from streams.kafka.admin import BrokerUnreachable
from streams.trail.receipts import Unanswered
from tests.unit.examples import TOPOLOGY

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # within every example approval
TAX_TOPIC = "deliver.tax.enterprise"
MEDICAL_TOPIC = "deliver.medical_insurance.person"
CDC = "cdc.market_regulation.public.enterprise"


def group(
    name: str,
    department: str | None,
    group_id: str | None,
    topic: str,
    rows: list[PartitionLag],
    status: str,
    state: str = "consuming",
) -> GroupLag:
    ages = [r.lag_seconds for r in rows if r.lag_seconds is not None]
    return GroupLag(
        name=name,
        department=department,
        group=group_id,
        topic=topic,
        state=state,  # type: ignore[arg-type]
        lag=sum(r.lag for r in rows),
        lag_seconds=max(ages) if ages else None,
        status=status,  # type: ignore[arg-type]
        partitions=rows,
    )


def row(
    topic: str, partition: int, committed: int | None, end: int, seconds: float | None
) -> PartitionLag:
    return PartitionLag(
        topic=topic,
        partition=partition,
        committed=committed,
        end=end,
        lag=end - (committed or 0),
        lag_seconds=seconds,
        state="committed" if committed is not None else "no_commit",
    )


REPORT = LagReport(
    at=NOW,
    seconds_taken=0.1,
    subscriptions=[
        group(
            "tax.enterprise",
            "tax",
            "tax-sink",
            TAX_TOPIC,
            [row(TAX_TOPIC, 0, 7, 10, 7.5), row(TAX_TOPIC, 1, 4, 4, None)],
            "yellow",
        ),
        group(
            "medical_insurance.person",
            "medical_insurance",
            None,
            MEDICAL_TOPIC,
            [row(MEDICAL_TOPIC, 0, None, 5, 9000.0)],
            "red",
            state="no_group",
        ),
    ],
    departments=[],
    pipeline=[
        group(
            f"normalize ← {CDC}",
            None,
            "govsync-normalize",
            CDC,
            [row(CDC, 0, 90, 90, None)],
            "green",
        )
    ],
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_department_has_a_light_from_what_concerns_it() -> None:
    lights = {d.department: d for d in departments(TOPOLOGY, REPORT)}
    assert set(lights) == set(TOPOLOGY.departments)
    assert (lights["tax"].status, lights["tax"].lag, lights["tax"].lag_seconds) == (
        "yellow",
        3,
        7.5,
    )
    assert lights["tax"].name == "税务局"
    assert lights["medical_insurance"].status == "red"
    # A source-only department: normalize reading its cdc topic.
    assert (lights["market_regulation"].status, lights["market_regulation"].sends) == (
        "green",
        ["market_regulation.enterprise"],
    )
    assert lights["public_security"].status == "grey"  # nothing measured for it here


def test_an_active_subscription_nobody_reads_is_sleeping() -> None:
    (found,) = sleeping(TOPOLOGY, REPORT, NOW)
    assert (found.subscription, found.state, found.waiting) == (
        "medical_insurance.person",
        "no_group",
        5,
    )
    assert sleeping(TOPOLOGY, REPORT, datetime(2030, 1, 1, tzinfo=UTC)) == []  # approvals expired


def test_receipts_panel_counts_per_subscription_and_names_the_oldest_overdue() -> None:
    def waiting(event_id: str, at_ms: int, waited_ms: int) -> Unanswered:
        return Unanswered(
            event_id=event_id,
            subscription="tax.enterprise",
            department="tax",
            entity_key="91310000MA1FL8XQ30",
            delivered_at_ms=at_ms,
            waited_ms=waited_ms,
            receipt_within_ms=3_600_000,
        )

    due = {
        r.subscription: r
        for r in receipts_due(
            TOPOLOGY, [waiting("a", 1, 7_200_000), waiting("b", 2, 3_700_000), waiting("c", 3, 10)]
        )
    }
    assert set(due) == {s.id for s in TOPOLOGY.subscriptions}
    tax = due["tax.enterprise"]
    assert (tax.overdue, tax.awaited, tax.oldest and tax.oldest.event_id) == (2, 1, "a")
    assert (due["social_security.person"].overdue, due["social_security.person"].oldest) == (
        0,
        None,
    )


def account(index_behind: int = 0, **counts: int) -> SourceAccount:
    numbers = {
        "captured": 10,
        "processed": 10,
        "in_flight": 0,
        "normalized": 8,
        "dead_lettered": 2,
        "dead_letters_held": 2,
        "dead_letters_open": 1,
        "reprocessed": 1,
        "processed_after": 10,
    }
    return SourceAccount(
        source="market_regulation.enterprise",
        index_behind=index_behind,
        **{**numbers, **counts},
    )


def test_dead_letters_count_open_and_total_per_source() -> None:
    found = {d.source: d for d in dead_letters(TOPOLOGY, [account()])}
    mine = found["market_regulation.enterprise"]
    assert (mine.open, mine.total, mine.balanced) == (1, 2, True)
    assert found["public_security.person"].total == 0
    assert found["public_security.person"].balanced is None  # not yet accounted


def test_the_accounting_balances_processed_against_normalized_and_dead_lettered() -> None:
    assert account().balanced is True
    # One record processed without an outcome on any topic: something was lost.
    assert account(normalized=7).balanced is False
    # The worker went on while counting: outcomes between processed before and after.
    assert account(normalized=9, processed_after=11).balanced is True
    # The index had not read everything yet: no verdict.
    assert account(index_behind=3, normalized=7).balanced is None


def test_exposition_follows_kafka_exporter_names_and_appends_the_workers() -> None:
    state = MonitorState(
        at=NOW,
        checked_at=NOW,
        lag=REPORT,
        dead_letters=dead_letters(TOPOLOGY, []),
        receipts=receipts_due(TOPOLOGY, []),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(lambda: state))

    def worker(delivered: int) -> str:
        return (
            "# HELP govsync_delivered_records_total Records delivered\n"
            "# TYPE govsync_delivered_records_total counter\n"
            f'govsync_delivered_records_total{{subscription="tax.enterprise"}} {delivered}.0\n'
        )

    workers = [
        Scraped(instance="0", url="http://a/metrics", text=worker(12)),
        Scraped(instance="1", url="http://b/metrics", text=worker(3)),
        Scraped(instance="2", url="http://c/metrics", text=None),
        Scraped(instance="3", url="http://d/metrics", text="<html>proxy error</html>"),
    ]
    text = exposition(registry, workers).decode()
    found = samples(text)

    tax0 = (("consumergroup", "tax-sink"), ("partition", "0"), ("topic", TAX_TOPIC))
    assert found[("kafka_consumergroup_lag", tax0)] == 3
    assert found[("kafka_consumergroup_current_offset", tax0)] == 7
    assert found[("govsync_consumergroup_lag_seconds", tax0)] == 7.5
    assert (
        found[("kafka_topic_partition_current_offset", (("partition", "0"), ("topic", TAX_TOPIC)))]
        == 10
    )
    # Nobody reads the medical insurance topic: its end is a fact, a group's lag is not.
    assert not any(
        n == "kafka_consumergroup_lag" and ("topic", MEDICAL_TOPIC) in labels for n, labels in found
    )
    assert (
        found[
            ("kafka_topic_partition_current_offset", (("partition", "0"), ("topic", MEDICAL_TOPIC)))
        ]
        == 5
    )
    status = "govsync_subscription_status"
    assert found[(status, (("department", "tax"), ("subscription", "tax.enterprise")))] == 1
    medical = (("department", "medical_insurance"), ("subscription", "medical_insurance.person"))
    assert found[(status, medical)] == 2
    assert found[("govsync_dlq_open_records", (("source", "market_regulation.enterprise"),))] == 0
    # The receipt SLA is the monitor's alone, from govsync.trace (no worker counts it).
    assert text.count("# TYPE govsync_receipts_overdue gauge") == 1
    assert found[("govsync_receipts_overdue", (("subscription", "tax.enterprise"),))] == 0
    # Each instance's samples under its own label, in one family.
    assert text.count("# TYPE govsync_delivered_records_total counter") == 1
    delivered = "govsync_delivered_records_total"
    for instance, value in (("0", 12), ("1", 3)):
        labels = (("subscription", "tax.enterprise"), ("worker_instance", instance))
        assert found[(delivered, labels)] == value
    up = "govsync_worker_up"
    assert [found[(up, (("worker_instance", i),))] for i in "0123"] == [1, 1, 0, 0]
    assert "# worker instance 2 at http://c/metrics did not answer" in text
    assert "# worker instance 3 at http://d/metrics answered what is no exposition" in text
    assert found[("govsync_monitor_refresh_ok", ())] == 1

    none = exposition(registry, []).decode()
    assert "# no worker instance found in the stage groups" in none
    assert not any(name == up for name, _ in samples(none))


def test_a_failed_refresh_keeps_the_last_good_state_and_says_why() -> None:
    class Flaky(Refresher):
        fail = False

        def _measure(self, now: datetime) -> MonitorState:
            if self.fail:
                raise BrokerUnreachable("Kafka is not reachable: down")
            return MonitorState(at=now, checked_at=now, lag=REPORT)

    refresher = Flaky(Settings(kafka_port=1))
    refresher.refresh()
    good_at = refresher.state.at
    refresher.fail = True
    refresher.refresh()
    state = refresher.state
    assert state.error == "Kafka is not reachable: down"
    assert state.at == good_at and state.lag == REPORT
    assert state.checked_at is not None and good_at is not None and state.checked_at >= good_at
    refresher.fail = False
    refresher.refresh()
    assert refresher.state.error is None
