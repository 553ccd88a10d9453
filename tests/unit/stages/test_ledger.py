"""The ledger stage on in-memory Avro, its chain ends given instead of read from Kafka:
lineage hops for changes, deliveries and receipts, and an audit chain that continues
from the committed head, and from the topic again after an abort."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from typing import Any

import pytest
from confluent_kafka import Message, TopicPartition

from streams.contract import headers, signatures
from streams.contract.records import AuditRecord, Hop, QueryRecord
from streams.contract.schemas import change_event_schema, delivery_schema, receipt_schema
from streams.contract.topics import (
    AUDIT_TOPIC,
    QUERIES_TOPIC,
    RECEIPTS_TOPIC,
    TOPOLOGY_CHANGES_TOPIC,
    TRACE_TOPIC,
    changes_topic,
    delivery_topic,
)
from streams.engine.transactional import Output
from streams.model.topology import Subscription
from streams.stages.ledger import LedgerStage, approval_of, repeat_identity, unanchored
from streams.trail import tracing
from streams.trail.audit import GENESIS, Chain, record_hash, who_received
from tests.unit.avro import MemoryCodec
from tests.unit.examples import CHANGE, PROVINCE, SOCIAL, STATE, TAX, TOPOLOGY, delivery
from tests.unit.stages import count

AUDIT_PARTITIONS = 4
PARTITION = 6  # of every input topic: extends chain 6 % 4
CHAIN = PARTITION % AUDIT_PARTITIONS
USCC = STATE["uscc"]
EVENT_ID = CHANGE["event_id"]
CDC = "cdc.market_regulation.public.enterprise"
CAPTURED_MS, NORMALIZED_MS, DELIVERED_MS, APPLIED_MS = (
    CHANGE["source_ts_ms"] + lag for lag in (200, 300, 450, 5_000)
)


class ChainEnds:
    """What ``govsync.audit`` holds at the end of each chain (``earlier`` records, then
    the ``last``), and which ends were read (one list per read)."""

    def __init__(self) -> None:
        self.last: dict[int, AuditRecord] = {}
        self.earlier: dict[int, list[AuditRecord]] = {}
        self.read: list[list[int]] = []

    def __call__(self, partitions: Collection[int]) -> dict[int, list[AuditRecord]]:
        self.read.append(sorted(partitions))
        return {
            p: self.earlier.get(p, []) + ([self.last[p]] if p in self.last else [])
            for p in partitions
        }


@pytest.fixture()
def ends() -> ChainEnds:
    return ChainEnds()


@pytest.fixture()
def stage(codec: MemoryCodec, ends: ChainEnds, monkeypatch: pytest.MonkeyPatch) -> LedgerStage:
    monkeypatch.delenv(tracing.ENDPOINT_VARIABLE, raising=False)  # spans: not exported
    return LedgerStage(
        TOPOLOGY, codec, "unused:9092", AUDIT_PARTITIONS, receipt_key, chain_tails=ends
    )


def receipt_key(department: str) -> bytes:
    """Each department's receipt key, as the ledger would read it from the secrets."""
    return hashlib.sha256(f"receipt key of {department}".encode()).digest()


def change_record(codec: MemoryCodec, captured: bool = True) -> Message:
    """CHANGE on changes.enterprise, naming the cdc record it was normalized from."""
    pairs = headers.for_change(CHANGE, "normalize")
    if captured:
        pairs.append(headers.captured(CDC, 1, 41, CAPTURED_MS))
    return Message(
        topic=changes_topic("enterprise"),
        partition=PARTITION,
        offset=10,
        key=USCC.encode(),
        value=codec.serializer(
            changes_topic("enterprise"), change_event_schema(TOPOLOGY, "enterprise")
        )(CHANGE),
        headers=pairs,
        timestamp=(1, NORMALIZED_MS),
    )


def delivery_record(
    codec: MemoryCodec, subscription: Subscription, offset: int, partition: int = PARTITION
) -> Message:
    """CHANGE as the route delivered it to ``subscription``."""
    topic = delivery_topic(subscription)
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        key=USCC.encode(),
        value=codec.serializer(topic, delivery_schema(TOPOLOGY, subscription))(
            delivery(CHANGE, subscription)
        ),
        headers=headers.for_change(CHANGE, f"deliver/{subscription.id}"),
        timestamp=(1, DELIVERED_MS),
    )


RECEIPT: dict[str, Any] = {
    "event_id": EVENT_ID,
    "subscription": TAX.id,
    "department": "tax",
    "entity_key": USCC,
    "outcome": "rejected",
    "reason": "taxpayer unknown",
    "topic": delivery_topic(TAX),
    "partition": PARTITION,
    "offset": 20,
    "applied_at_ms": APPLIED_MS,
}


def receipt_record(
    codec: MemoryCodec, receipt: dict[str, Any] = RECEIPT, signed_by: str | None = "tax"
) -> Message:
    """Tax's answer to its delivery at offset 20, as the subscriber SDK writes it: signed
    with the key of ``signed_by`` (None: unsigned)."""
    value = codec.serializer(RECEIPTS_TOPIC, receipt_schema())(receipt)
    signature = (
        [(signatures.SIGNATURE_HEADER, signatures.sign(receipt_key(signed_by), value))]
        if signed_by
        else []
    )
    return Message(
        topic=RECEIPTS_TOPIC,
        partition=PARTITION,
        offset=5,
        key=USCC.encode(),
        value=value,
        headers=[*signature, ("source_ts", str(CHANGE["source_ts_ms"]).encode())],
        timestamp=(1, APPLIED_MS + 20),
    )


def hops(codec: MemoryCodec, outputs: list[Output]) -> list[Hop]:
    """The lineage hops among ``outputs``, each checked to be keyed and labelled for
    readers that skip other entities and stages without decoding."""
    found: list[Hop] = []
    for out in outputs:
        if out.topic == TRACE_TOPIC:
            hop = Hop.model_validate(codec.decode(TRACE_TOPIC, out.value))
            assert (out.key, out.partition) == (hop.event_id.encode(), None)
            assert out.headers == [
                ("entity_key", hop.entity_key.encode()),
                ("stage", hop.stage.encode()),
            ]
            found.append(hop)
    return found


def sealed(codec: MemoryCodec, outputs: list[Output], chain: int = CHAIN) -> list[AuditRecord]:
    """The audit records among ``outputs``, each checked to carry its own hash."""
    records: list[AuditRecord] = []
    for out in outputs:
        if out.topic == AUDIT_TOPIC:
            assert out.partition == chain
            record = AuditRecord.model_validate(codec.decode(AUDIT_TOPIC, out.value))
            assert record.sha256 == record_hash(record.prev_sha256, record.body())
            records.append(record)
    return records


HOP = {
    "event_id": EVENT_ID,
    "kind": CHANGE["kind"],
    "entity": "enterprise",
    "entity_key": USCC,
    "source_ts_ms": CHANGE["source_ts_ms"],
}


def test_a_change_was_captured_and_normalized(codec: MemoryCodec, stage: LedgerStage) -> None:
    outputs = stage.process(change_record(codec))
    assert [out.topic for out in outputs] == [TRACE_TOPIC, TRACE_TOPIC]
    assert hops(codec, outputs) == [
        Hop(**HOP, stage="captured", topic=CDC, partition=1, offset=41, at_ms=CAPTURED_MS),
        Hop(
            **HOP,
            stage="normalized",
            topic=changes_topic("enterprise"),
            partition=PARTITION,
            offset=10,
            at_ms=NORMALIZED_MS,
        ),
    ]
    (normalized,) = hops(codec, stage.process(change_record(codec, captured=False)))
    assert normalized.stage == "normalized"


def test_a_delivery_is_a_lineage_hop_and_a_sealed_audit_record(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    outputs = stage.process(delivery_record(codec, TAX, offset=20))
    assert [out.topic for out in outputs] == [TRACE_TOPIC, AUDIT_TOPIC]
    assert hops(codec, outputs) == [
        Hop(
            **HOP,
            stage="delivered",
            department="tax",
            subscription=TAX.id,
            topic=delivery_topic(TAX),
            partition=PARTITION,
            offset=20,
            at_ms=DELIVERED_MS,
        )
    ]
    (record,) = sealed(codec, outputs)
    assert outputs[1].key == USCC.encode()
    assert record == AuditRecord(
        seq=0,
        kind="delivery",
        at_ms=DELIVERED_MS,
        actor="worker",
        event_id=EVENT_ID,
        entity="enterprise",
        entity_key=USCC,
        department="tax",
        subscription=TAX.id,
        # What tax received with a value: its contact_phone is unknown, so not listed.
        fields=[
            "address",
            "enterprise_type",
            "industry",
            "name",
            "registered_capital",
            "status",
            "uscc",
        ],
        approval=approval_of(TAX),
        detail={"kind": CHANGE["kind"], "position": f"deliver.tax.enterprise[{PARTITION}]@20"},
        prev_sha256=GENESIS,  # the chain was empty
        sha256=record.sha256,
    )
    assert record.approval["legal_basis"] == TAX.approval.legal_basis
    assert ends.read == [[CHAIN]]


def test_deliveries_chain_onto_the_committed_head(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    (last,) = Chain(next_seq=41).append("receipt", 1, "tax", event_id="earlier")
    ends.last[CHAIN] = last  # the chain on Kafka ends with seq 41
    (first,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    assert (first.seq, first.prev_sha256) == (42, last.sha256)
    stage.committed()
    (second,) = sealed(codec, stage.process(delivery_record(codec, SOCIAL, offset=21)))
    assert (second.seq, second.prev_sha256) == (43, first.sha256)
    assert second.detail["masked"] == "legal_rep_id:partial,legal_rep_name:hash"
    assert ends.read == [[CHAIN]]  # read once; after that the committed head is known


def test_after_an_abort_the_chain_continues_from_the_topic(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    (first,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    stage.committed()
    (attempt,) = sealed(codec, stage.process(delivery_record(codec, SOCIAL, offset=21)))
    stage.aborted()
    ends.last[CHAIN] = first  # what the topic holds: the aborted attempt never landed
    (redone,) = sealed(codec, stage.process(delivery_record(codec, SOCIAL, offset=21)))
    assert ends.read == [[CHAIN], [CHAIN]]
    assert (redone.seq, redone.prev_sha256) == (1, first.sha256)
    assert redone == attempt  # the same record: nothing in the chain tells an abort happened


def test_the_first_chain_needed_reads_every_chain_the_member_writes_at_once(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    """After a broker restart each read of a chain's end takes seconds; aborts repeat them."""
    stage.assigned(assignment((RECEIPTS_TOPIC, [1, 2]), (delivery_topic(TAX), [1, 2, 5, 6])))
    (last,) = Chain(next_seq=7).append("receipt", 1, "tax", event_id="earlier")
    ends.last[1] = last
    stage.process(delivery_record(codec, TAX, offset=20, partition=6))  # chain 2
    other_chain = stage.process(delivery_record(codec, TAX, offset=9, partition=5))
    (other,) = sealed(codec, other_chain, chain=1)
    assert ends.read == [[1, 2]]
    assert (other.seq, other.prev_sha256) == (8, last.sha256)
    stage.aborted()
    stage.process(delivery_record(codec, TAX, offset=20, partition=6))
    assert ends.read == [[1, 2], [1, 2]]


def test_after_an_abort_the_topic_not_the_last_commit_decides_the_head(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    stage.process(delivery_record(codec, TAX, offset=20))
    stage.committed()
    stage.aborted()
    (moved,) = Chain(next_seq=99).append("receipt", 1, "tax", event_id="elsewhere")
    ends.last[CHAIN] = moved  # e.g. the abort was a fencing: another instance wrote on
    (record,) = sealed(codec, stage.process(delivery_record(codec, SOCIAL, offset=21)))
    assert (record.seq, record.prev_sha256) == (100, moved.sha256)


def test_what_a_standby_reads_again_its_chain_already_holds_is_not_written_again(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    """On a standby, MirrorMaker's copies sit at other offsets, and the stages resume a
    little before where the node's last commit ended (docs/operating.md)."""
    (tax,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    (social,) = sealed(codec, stage.process(delivery_record(codec, SOCIAL, offset=21)))
    stage.committed()
    stage.aborted()  # as a start on the standby: the heads are read back from the topic
    ends.earlier[CHAIN], ends.last[CHAIN] = [tax], social
    skipped = count("audit_repeats_skipped", kind="delivery")
    assert stage.process(delivery_record(codec, TAX, offset=120)) == []  # not even its hop
    assert stage.process(delivery_record(codec, SOCIAL, offset=121)) == []
    stage.committed()
    assert count("audit_repeats_skipped", kind="delivery") == skipped + 2
    outputs = stage.process(receipt_record(codec))
    assert [out.topic for out in outputs] == [TRACE_TOPIC, AUDIT_TOPIC]
    (receipt,) = sealed(codec, outputs)
    assert (receipt.seq, receipt.prev_sha256) == (2, social.sha256)


def test_each_copy_on_the_chain_cancels_one_reading_and_no_more(
    codec: MemoryCodec, stage: LedgerStage, ends: ChainEnds
) -> None:
    (tax,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    stage.committed()
    stage.aborted()
    ends.last[CHAIN] = tax
    assert stage.process(delivery_record(codec, TAX, offset=120)) == []
    # Read a second time: the chain holds one copy, so this is an act of its own.
    (again,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=121)))
    assert (again.seq, again.prev_sha256) == (1, tax.sha256)


def windowed(codec: MemoryCodec, ends: ChainEnds, window: int) -> LedgerStage:
    """A ledger that matches reads against the last ``window`` records of each chain."""
    return LedgerStage(
        TOPOLOGY,
        codec,
        "unused:9092",
        AUDIT_PARTITIONS,
        receipt_key,
        chain_tails=ends,
        repeat_window=window,
    )


def test_only_the_window_read_back_is_matched(codec: MemoryCodec, ends: ChainEnds) -> None:
    stage = windowed(codec, ends, 1)
    (tax,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    (social,) = sealed(codec, stage.process(delivery_record(codec, SOCIAL, offset=21)))
    stage.committed()
    stage.aborted()
    ends.earlier[CHAIN], ends.last[CHAIN] = [tax], social
    assert stage.process(delivery_record(codec, SOCIAL, offset=121)) == []
    (older,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=120)))
    assert older.seq == 2  # beyond the window: written again


def test_without_a_window_nothing_is_matched(codec: MemoryCodec, ends: ChainEnds) -> None:
    stage = windowed(codec, ends, 0)
    (tax,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    stage.committed()
    stage.aborted()
    ends.last[CHAIN] = tax
    (again,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=120)))
    assert (again.seq, again.prev_sha256) == (1, tax.sha256)


def test_a_repeat_is_the_same_act_whatever_its_position_or_chain_fields() -> None:
    (record,) = Chain(next_seq=5).append(
        "delivery", 7, "worker", event_id="e", detail={"kind": "u", "position": "t[0]@1"}
    )
    moved = {**record.model_dump(), "seq": 9, "detail": {"kind": "u", "position": "t[0]@50"}}
    assert repeat_identity(moved) == repeat_identity(record.model_dump())
    other = {**moved, "detail": {"kind": "d", "position": "t[0]@50"}}
    assert repeat_identity(other) != repeat_identity(record.model_dump())


def test_a_receipt_is_a_lineage_hop_and_an_audit_record_by_its_department(
    codec: MemoryCodec, stage: LedgerStage
) -> None:
    (delivered,) = sealed(codec, stage.process(delivery_record(codec, TAX, offset=20)))
    outputs = stage.process(receipt_record(codec))
    assert [out.topic for out in outputs] == [TRACE_TOPIC, AUDIT_TOPIC]
    assert hops(codec, outputs) == [
        Hop(
            **{**HOP, "kind": "receipt"},
            stage="receipt",
            department="tax",
            subscription=TAX.id,
            topic=RECEIPTS_TOPIC,
            partition=PARTITION,
            offset=5,
            at_ms=APPLIED_MS,
            outcome="rejected",
            reason="taxpayer unknown",
        )
    ]
    (record,) = sealed(codec, outputs)
    assert outputs[1].key == USCC.encode()
    assert record == AuditRecord(
        seq=1,
        kind="receipt",
        at_ms=APPLIED_MS,
        actor="tax",  # the department answered, not the worker
        event_id=EVENT_ID,
        entity="enterprise",
        entity_key=USCC,
        department="tax",
        subscription=TAX.id,
        detail={
            "outcome": "rejected",
            "delivery": f"deliver.tax.enterprise[{PARTITION}]@20",
            "reason": "taxpayer unknown",
        },
        prev_sha256=delivered.sha256,  # one chain per input partition, whatever the topic
        sha256=record.sha256,
    )


def query_record(**fields: Any) -> Message:
    query = QueryRecord(
        department="social_security",
        entity="enterprise",
        entity_key=USCC,
        at_ms=APPLIED_MS,
        status=200,
        subscription=SOCIAL.id,
        event_id=EVENT_ID,
    ).model_copy(update=fields)
    return Message(
        topic=QUERIES_TOPIC,
        partition=PARTITION,
        offset=3,
        key=USCC.encode(),
        value=query.model_dump_json().encode(),
    )


def test_an_answered_look_up_is_an_audit_record_by_the_asking_department(
    codec: MemoryCodec, stage: LedgerStage
) -> None:
    outputs = stage.process(query_record())
    assert [out.topic for out in outputs] == [AUDIT_TOPIC]  # no lineage: nothing moved
    (record,) = sealed(codec, outputs)
    assert record == AuditRecord(
        seq=0,
        kind="query",
        at_ms=APPLIED_MS,
        actor="social_security",
        event_id=EVENT_ID,
        entity="enterprise",
        entity_key=USCC,
        department="social_security",
        subscription=SOCIAL.id,
        fields=SOCIAL.fields_in(TOPOLOGY.entity("enterprise")),
        approval=approval_of(SOCIAL),
        detail={"status": "200", "masked": "legal_rep_name:hash,legal_rep_id:partial"},
        prev_sha256=GENESIS,
        sha256=record.sha256,
    )
    received = who_received({CHAIN: [(0, record)]}, USCC)
    assert [(r.via, r.department, r.receipt) for r in received] == [
        ("query", "social_security", None)
    ]


def test_a_refused_look_up_is_on_the_trail_and_received_nothing(
    codec: MemoryCodec, stage: LedgerStage
) -> None:
    refusal = query_record(
        department="public_security",
        status=403,
        subscription=None,
        event_id=None,
        reason="not_subscribed",
    )
    (record,) = sealed(codec, stage.process(refusal))
    assert (record.kind, record.actor, record.fields) == ("query", "public_security", [])
    assert record.detail == {"status": "403", "reason": "not_subscribed"}
    assert who_received({CHAIN: [(0, record)]}, USCC) == []
    # A record that is not a query record is skipped, never chained half-read.
    garbage = Message(topic=QUERIES_TOPIC, partition=PARTITION, offset=4, value=b"{")
    assert stage.process(garbage) == []


@pytest.mark.parametrize(
    ("department", "entity", "subscription", "reason"),
    [
        ("social_security", "enterprise", None, "history"),
        ("data_resource_bureau", "audit", None, "who-received"),
        ("data_resource_bureau", "audit", None, "trace"),
    ],
)
def test_a_question_that_showed_no_state_is_on_the_trail_and_received_nothing(
    codec: MemoryCodec,
    stage: LedgerStage,
    department: str,
    entity: str,
    subscription: str | None,
    reason: str,
) -> None:
    """A department's own delivery history and the authority's audit questions are
    answered 200, but show nothing of the entity: who-received must not list them."""
    asked = query_record(
        department=department,
        entity=entity,
        subscription=subscription,
        event_id=None,
        reason=reason,
    )
    (record,) = sealed(codec, stage.process(asked))
    assert (record.kind, record.actor, record.detail) == (
        "query",
        department,
        {"status": "200", "reason": reason},
    )
    assert who_received({CHAIN: [(0, record)]}, USCC) == []


# --- one writer per chain -------------------------------------------------------------------

NEW_DELIVERIES = "deliver.tax.person"


def assignment(*parts: tuple[str, list[int]]) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for topic, numbers in parts for p in numbers]


def test_a_member_processes_only_partitions_whose_chain_its_receipts_partition_anchors() -> None:
    """Two members, range-assigned while only the first has discovered a new delivery
    topic: the first got all of it, but writes only chains 0 and 1."""
    first = assignment(
        (RECEIPTS_TOPIC, [0, 1]),
        (changes_topic("enterprise"), [0, 1]),
        (TOPOLOGY_CHANGES_TOPIC, [0]),
        (NEW_DELIVERIES, [0, 1, 2, 3]),
    )
    second = assignment((RECEIPTS_TOPIC, [2, 3]), (changes_topic("enterprise"), [2, 3]))

    assert unanchored(first, AUDIT_PARTITIONS) == [(NEW_DELIVERIES, 2), (NEW_DELIVERIES, 3)]
    assert unanchored(second, AUDIT_PARTITIONS) == []


def test_partitions_beyond_the_chain_count_follow_the_anchor_of_their_chain() -> None:
    members = assignment((RECEIPTS_TOPIC, [1]), (delivery_topic(TAX), [1, 5, 6]))
    assert unanchored(members, AUDIT_PARTITIONS) == [(delivery_topic(TAX), 6)]
    # A receipts partition past the chain count anchors nothing: chain 1 is partition 1's.
    extra = assignment((RECEIPTS_TOPIC, [5]))
    assert unanchored(extra, AUDIT_PARTITIONS) == [(RECEIPTS_TOPIC, 5)]


def test_the_stage_holds_the_unanchored_partitions_until_the_next_rebalance(
    stage: LedgerStage,
) -> None:
    hold = stage.assigned(assignment((RECEIPTS_TOPIC, [0]), (NEW_DELIVERIES, [0, 1])))
    assert list(hold.held) == [(NEW_DELIVERIES, 1)]
    assert not hold.restores  # nothing to restore: chain heads are read back on first use


@pytest.mark.parametrize(
    ("receipt", "signed_by", "reason"),
    [
        (RECEIPT, None, "unsigned"),
        # tax answering in social security's name, with its own key
        ({**RECEIPT, "department": "social_security"}, "tax", "signature does not match"),
        ({**RECEIPT, "department": "nobody"}, "tax", "the topology has no such department"),
    ],
)
def test_a_receipt_its_department_did_not_sign_is_refused_and_answers_nothing(
    stage: LedgerStage,
    codec: MemoryCodec,
    receipt: dict[str, Any],
    signed_by: str | None,
    reason: str,
) -> None:
    stage.process(delivery_record(codec, TAX, offset=20))
    outputs = stage.process(receipt_record(codec, receipt, signed_by))
    assert [out.topic for out in outputs] == [AUDIT_TOPIC]  # no receipt hop: still awaited
    (refused,) = sealed(codec, outputs)
    assert (refused.kind, refused.actor, refused.department) == (
        "receipt_refused",
        "unverified",
        receipt["department"],
    )
    assert refused.detail["reason"].startswith(reason)
    assert refused.detail["claimed_department"] == receipt["department"]


# --- federation: a change an upstream node sent ---------------------------------------------

MIRRORED = "city.deliver.province.enterprise"
SENT_MS = CAPTURED_MS + 100  # when the city delivered it (the mirrored record's timestamp)
FROM_CITY = {
    **CHANGE,
    "source": "city.enterprise",
    "before": {name: STATE[name] for name in PROVINCE.entity("enterprise").fields},
    "after": {
        **{name: STATE[name] for name in PROVINCE.entity("enterprise").fields},
        "status": "deregistered",
        "address": None,
    },
}


def received_record(codec: MemoryCodec, captured: bool = True) -> Message:
    """FROM_CITY on the province's changes.enterprise, as its normalize wrote it from the
    record MirrorMaker copied to city.deliver.province.enterprise[2]@9."""
    pairs = headers.for_change(FROM_CITY, "normalize")
    if captured:
        pairs.append((headers.CAPTURED, f"city:{CDC}/1/41/{CAPTURED_MS}".encode()))
    pairs.append(headers.upstream("city", MIRRORED, 2, 9, SENT_MS))
    topic = changes_topic("enterprise")
    return Message(
        topic=topic,
        partition=PARTITION,
        offset=10,
        key=USCC.encode(),
        value=codec.serializer(topic, change_event_schema(PROVINCE, "enterprise"))(FROM_CITY),
        headers=pairs,
        timestamp=(1, NORMALIZED_MS),
    )


@pytest.fixture()
def province(codec: MemoryCodec, ends: ChainEnds, monkeypatch: pytest.MonkeyPatch) -> LedgerStage:
    monkeypatch.delenv(tracing.ENDPOINT_VARIABLE, raising=False)
    return LedgerStage(
        PROVINCE, codec, "unused:9092", AUDIT_PARTITIONS, receipt_key, chain_tails=ends
    )


def test_a_change_from_an_upstream_node_was_sent_by_it_and_received_here(
    codec: MemoryCodec, province: LedgerStage
) -> None:
    outputs = province.process(received_record(codec))
    assert [out.topic for out in outputs] == [TRACE_TOPIC, TRACE_TOPIC, AUDIT_TOPIC, TRACE_TOPIC]
    assert hops(codec, outputs) == [
        Hop(
            **HOP,
            stage="captured",
            topic=f"city:{CDC}",  # the upstream's capture, named as its node
            partition=1,
            offset=41,
            at_ms=CAPTURED_MS,
        ),
        Hop(
            **HOP,
            stage="sent",
            department="city",
            topic=MIRRORED,
            partition=2,
            offset=9,
            at_ms=SENT_MS,
        ),
        Hop(
            **HOP,
            stage="normalized",
            topic=changes_topic("enterprise"),
            partition=PARTITION,
            offset=10,
            at_ms=NORMALIZED_MS,
        ),
    ]
    (record,) = sealed(codec, outputs)
    assert outputs[2].key == USCC.encode()
    assert record == AuditRecord(
        seq=0,
        kind="received",
        at_ms=NORMALIZED_MS,
        actor="city",  # the node that sent it, not this node's worker
        event_id=EVENT_ID,
        entity="enterprise",
        entity_key=USCC,
        # What arrived with a value: the address came empty.
        fields=[
            "enterprise_type",
            "established_on",
            "industry",
            "legal_rep_name",
            "name",
            "registered_capital",
            "status",
            "uscc",
        ],
        detail={
            "from": "city",
            "mirrored": f"{MIRRORED}[2]@9",
            "position": f"changes.enterprise[{PARTITION}]@10",
        },
        prev_sha256=GENESIS,
        sha256=record.sha256,
    )


def test_without_the_upstreams_capture_the_sending_is_still_on_the_trail(
    codec: MemoryCodec, province: LedgerStage
) -> None:
    outputs = province.process(received_record(codec, captured=False))
    assert [hop.stage for hop in hops(codec, outputs)] == ["sent", "normalized"]
    assert [record.kind for record in sealed(codec, outputs)] == ["received"]


def test_a_change_of_this_node_has_no_sending_and_no_received_record(
    codec: MemoryCodec, stage: LedgerStage
) -> None:
    outputs = stage.process(change_record(codec))
    assert [hop.stage for hop in hops(codec, outputs)] == ["captured", "normalized"]
    assert sealed(codec, outputs) == []
