"""The ledger stage: lineage on ``govsync.trace`` and the hash-chained ``govsync.audit``,
written from what the pipeline committed.

It follows the change, delivery, receipt and topology-change topics (read committed), so
it sees exactly what departments can see, at the offsets they see it, and the normalize
and route stages carry no extra work; and the query API's look-ups (``govsync.queries``),
so a question answered is on the trail like a delivery. It runs as its own Kafka
principal, ``ledger``: the only one besides departments that may read deliveries, and the
only writer of the audit trail.

One chain per partition of ``govsync.audit``: records from input partition ``p`` of any
topic extend chain ``p mod n`` (n: the audit topic's partitions). A chain has one writer
however many instances run, by this rule: **chain c is written by the member assigned
partition c of ``govsync.receipts``**, the anchor (a fixed name every member subscribes
to, with as many partitions as the audit topic). Any other assigned partition whose
chain this member does not anchor is held paused until the next rebalance, never
processed. The range assignor normally gives one member partition ``p`` of every topic,
so nothing is held; the rule matters while a new ``deliver.*`` topic is being discovered:
a member that knows it already gets all its partitions, the chains of some of which
another member writes. Those wait until the others see the topic too and the group
rebalances. A chain's head is read back from the topic after every start, rebalance or
abort.

With the head, the last ``repeat_window`` records of the chain are read back, and an input
whose audit record is already among them is not written again (:class:`Repeats`). Within a
node that never happens: offsets are committed in the output's transaction. It happens
on a standby taking over from MirrorMaker 2's copy of the topics (docs/operating.md): a
mirrored record has another offset there, committed offsets are translated only up to
the last offset sync, so the standby's ledger reads a tail again that its chain holds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from streams.config.settings import Settings
from streams.contract import headers, schemas, signatures
from streams.contract.approvals import Decision, Request
from streams.contract.headers import as_dict
from streams.contract.objections import Objection
from streams.contract.records import AuditRecord, Hop, QueryRecord
from streams.contract.replay import ReplayRequest
from streams.contract.topics import (
    APPROVALS_TOPIC,
    AUDIT_TOPIC,
    CHANGES_PATTERN,
    DELIVERIES_PATTERN,
    DELIVERY_PREFIX,
    LEDGER,
    LEDGER_TAIL_GROUP,
    OBJECTIONS_PATTERN,
    OBJECTIONS_PREFIX,
    QUERIES_TOPIC,
    RECEIPTS_TOPIC,
    REQUESTS_TOPIC,
    TOPOLOGY_CHANGES_TOPIC,
    TRACE_TOPIC,
)
from streams.engine import metrics
from streams.engine.restoring import Hold
from streams.engine.state import AfterCommit, KeyedState
from streams.engine.transactional import NOTHING, Output, Produced
from streams.kafka import applied, clients, credentials, lifecycle, topic_reader
from streams.kafka.serde import Codec
from streams.model.topology import Subscription, Topology
from streams.trail import tracing
from streams.trail.audit import Chain

log = logging.getLogger("govsync.ledger")

CHECKPOINT_EVERY = 1000
TAIL_WINDOW = 64  # records read back from a chain's end to find its head
# Records per chain whose inputs are not chained again (Repeats); settings.py says how big.
REPEAT_WINDOW: int = Settings.model_fields["ledger_repeat_window"].default
# Where an audit record names the input's own position: offsets differ between a node and
# its standby, so these are left out of what makes two records the same act.
POSITION_DETAILS = frozenset({"position", "at"})
WORKER_ACTOR = "worker"
UNVERIFIED_ACTOR = "unverified"  # a refused receipt: nobody proved who sent it
ANCHOR = RECEIPTS_TOPIC  # whose partition c makes its holder the writer of chain c
_NO_KEYS = Path("/nonexistent")  # no published key: nothing signed is believed


def approval_of(subscription: Subscription | None) -> dict[str, str]:
    """The approval a delivery was made under, as the audit trail keeps it (plain text)."""
    if subscription is None:
        return {}
    approval = subscription.approval.model_dump(mode="json")
    return {name: str(value) for name, value in approval.items() if value is not None}


def anchored(partitions: Sequence[TopicPartition], chains: int) -> set[int]:
    """The chains a member assigned ``partitions`` writes: chain c only while assigned
    partition c of the anchor, ``govsync.receipts``."""
    return {tp.partition for tp in partitions if tp.topic == ANCHOR and tp.partition < chains}


def unanchored(partitions: Sequence[TopicPartition], chains: int) -> list[tuple[str, int]]:
    """The (topic, partition)s of ``partitions`` whose audit chain is not this member's."""
    mine = anchored(partitions, chains)
    return [(tp.topic, tp.partition) for tp in partitions if tp.partition % chains not in mine]


RepeatIdentity = tuple[Any, ...]


def repeat_identity(record: Mapping[str, Any]) -> RepeatIdentity:
    """What makes two audit records the same act: everything the input decides, without
    the chain's own fields (seq, hashes), the approval text and field list (the topology's),
    and the input's position."""
    detail = record.get("detail") or {}
    return (
        record["kind"],
        record["at_ms"],
        record["actor"],
        record.get("event_id"),
        record.get("entity_key"),
        record.get("department"),
        record.get("subscription"),
        tuple(sorted((k, v) for k, v in detail.items() if k not in POSITION_DETAILS)),
    )


class Repeats:
    """The acts a chain's tail already holds, each as often as it holds it: an input
    sealing one of them again is a re-read, not a new act, and is dropped once per copy.
    Bounded by the window read back; empty (and free) once every copy is matched."""

    def __init__(self, tail: Sequence[AuditRecord] = ()) -> None:
        self._left = Counter(
            repeat_identity(r.model_dump()) for r in tail if r.kind != "checkpoint"
        )
        self._times = {identity[1] for identity in self._left}  # a cheap first test
        self.matched = 0

    def __bool__(self) -> bool:
        return bool(self._left)

    def take(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` is one of the tail's acts (then it is matched, once)."""
        if record["at_ms"] not in self._times:
            return False
        identity = repeat_identity(record)
        if self._left[identity] <= 0:
            return False
        self._left[identity] -= 1
        self.matched += 1
        if self._left[identity] == 0:
            del self._left[identity]
        return True


class LedgerStage:
    name = LEDGER
    topics: Sequence[str] = (
        CHANGES_PATTERN,
        DELIVERIES_PATTERN,
        RECEIPTS_TOPIC,
        TOPOLOGY_CHANGES_TOPIC,
        QUERIES_TOPIC,
        REQUESTS_TOPIC,
        APPROVALS_TOPIC,
        OBJECTIONS_PATTERN,
    )

    def __init__(
        self,
        topology: Topology,
        codec: Codec,
        bootstrap: str,
        audit_partitions: int,
        receipt_key: Callable[[str], bytes],
        chain_tails: Callable[[Collection[int]], dict[int, list[AuditRecord]]] | None = None,
        keys: Path | None = None,
        repeat_window: int = REPEAT_WINDOW,
    ) -> None:
        """``receipt_key`` gives a department's receipt key (signatures.py);
        ``chain_tails`` reads the last committed records of some chains, oldest first, at
        least the last one and up to ``repeat_window`` (default: from ``govsync.audit`` on
        Kafka, all at once); ``keys`` holds the published public keys requests and
        decisions are checked with (None: none is believed)."""
        self._receipt_key = receipt_key
        self._keys = keys
        self.reload(topology)
        self._bootstrap = bootstrap
        self._partitions = audit_partitions
        self._codec = codec
        self._hop = codec.serializer(TRACE_TOPIC, schemas.lineage_schema())
        self._audit = codec.serializer(AUDIT_TOPIC, schemas.audit_schema())
        self._chain_tails = chain_tails or self._last_records
        self._repeat_window = repeat_window
        # Each chain's head, per audit partition; moved by the open transaction until it commits.
        self.heads: KeyedState[str, int, Chain] = KeyedState()
        self._anchored: set[int] = set()  # the chains this member writes
        self._resumed: dict[int, Chain] = {}  # chains read back and not yet written to
        self._repeats: dict[int, Repeats] = {}  # per chain, since it was read back
        self._repeated = False  # the input being processed sealed a repeat
        self.tally = metrics.Tally()
        self._spans = tracing.spans()
        self._exports = AfterCommit()  # spans of the open transaction's hops

    def reload(self, topology: Topology) -> None:
        """Approvals recorded from the next record on are those of ``topology``."""
        self.topology = topology
        self._subscriptions = {s.id: s for s in topology.subscriptions}

    # --- the Stage protocol -------------------------------------------------------------

    def assigned(self, partitions: list[TopicPartition]) -> Hold:
        """Hold the partitions whose chain another member writes (the module's rule)."""
        self._forget()
        self._anchored = anchored(partitions, self._partitions)
        return Hold(held=unanchored(partitions, self._partitions))

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self._forget()

    def committed(self, produced: Produced = NOTHING) -> None:
        self.heads.commit()
        self._exports.commit()
        self.tally.commit()

    def aborted(self) -> None:
        self._forget()
        self._exports.abort()
        self.tally.abort()

    def process(self, message: Message) -> list[Output]:
        self._repeated = False
        outputs = self._process(message)
        if self._repeated:  # read again: its hops are on the trail with the first reading
            return [output for output in outputs if output.topic != TRACE_TOPIC]
        return outputs

    def _process(self, message: Message) -> list[Output]:
        topic = message.topic()
        if topic == TOPOLOGY_CHANGES_TOPIC:
            return self._topology_changes(message)
        if topic == QUERIES_TOPIC:
            return self._query(message)
        if topic in (REQUESTS_TOPIC, APPROVALS_TOPIC) or topic.startswith(OBJECTIONS_PREFIX):
            return self._signed(message)
        if headers.control(message.headers()) is not None:
            return self._replay(message)
        value = self._codec.decode(topic, message.value())
        if value is None:
            return []
        if topic == RECEIPTS_TOPIC:
            return self._receipt(message, value)
        if topic.startswith(DELIVERY_PREFIX):
            return self._delivery(message, value)
        return self._change(message, value)

    # --- per input ----------------------------------------------------------------------

    def _change(self, message: Message, change: dict[str, Any]) -> list[Output]:
        """A change on changes.<entity>: it was captured (the cdc record normalize read,
        named in its ``captured`` header), sent by an upstream node if it came from one,
        and normalized (this record)."""
        outputs = []
        found = as_dict(message.headers())
        captured = headers.parse_captured(found.get(headers.CAPTURED))
        if captured is not None:
            topic, partition, offset, at_ms = captured
            outputs.append(
                self._output(self._lineage(change, "captured", topic, partition, offset, at_ms))
            )
        upstream = headers.parse_upstream(found.get(headers.UPSTREAM))
        if upstream is not None:
            outputs += self._received(message, change, *upstream)
        outputs.append(
            self._output(
                self._lineage(
                    change,
                    "normalized",
                    message.topic(),
                    message.partition(),
                    message.offset(),
                    message.timestamp()[1],
                )
            )
        )
        return outputs

    def _received(
        self,
        message: Message,
        change: dict[str, Any],
        node: str,
        topic: str,
        partition: int,
        offset: int,
        at_ms: int,
    ) -> list[Output]:
        """A change an upstream node sent: the hop of its sending (when it delivered the
        record MirrorMaker copied), and an audit record of what this node received."""
        return [
            self._output(
                self._lineage(change, "sent", topic, partition, offset, at_ms, department=node)
            ),
            *self._seal(
                message.partition(),
                key=change["key"],
                kind="received",
                at_ms=message.timestamp()[1],
                actor=node,
                event_id=change["event_id"],
                entity=change["entity"],
                entity_key=change["key"],
                fields=_with_values(change),
                detail={
                    "from": node,
                    "mirrored": f"{topic}[{partition}]@{offset}",
                    "position": f"{message.topic()}[{message.partition()}]@{message.offset()}",
                },
            ),
        ]

    def _delivery(self, message: Message, delivery: dict[str, Any]) -> list[Output]:
        subscription_id = delivery["subscription"]
        department = message.topic().split(".")[1]
        at_ms = message.timestamp()[1]
        delivered = self._lineage(
            delivery,
            "delivered",
            message.topic(),
            message.partition(),
            message.offset(),
            at_ms,
            department=department,
            subscription=subscription_id,
        )
        subscription = self._subscriptions.get(subscription_id)
        masks = subscription.mask if subscription is not None else {}
        received = _with_values(delivery)
        detail = {
            "kind": delivery["kind"],
            "position": f"{message.topic()}[{message.partition()}]@{message.offset()}",
        }
        replayed = as_dict(message.headers()).get(headers.REPLAY)
        if replayed:
            detail["replay"] = replayed
        masked = [f"{name}:{masks[name].rule}" for name in received if name in masks]
        if masked:
            detail["masked"] = ",".join(masked)
        return [
            self._output(delivered),
            *self._seal(
                message.partition(),
                key=delivery["key"],
                kind="delivery",
                at_ms=at_ms,
                actor=WORKER_ACTOR,
                event_id=delivery["event_id"],
                entity=delivery["entity"],
                entity_key=delivery["key"],
                department=department,
                subscription=subscription_id,
                fields=received,
                approval=approval_of(subscription),
                detail=detail,
            ),
        ]

    def _receipt(self, message: Message, receipt: dict[str, Any]) -> list[Output]:
        refused = self._forged(message, receipt)
        if refused is not None:
            return refused
        subscription = self._subscriptions.get(receipt["subscription"])
        entity = subscription.entity if subscription is not None else ""
        hop = self._lineage(
            {
                "event_id": receipt["event_id"],
                "kind": "receipt",
                "entity": entity,
                "key": receipt["entity_key"],
                "source_ts_ms": int(as_dict(message.headers()).get("source_ts", 0)),
            },
            "receipt",
            message.topic(),
            message.partition(),
            message.offset(),
            receipt["applied_at_ms"],
            department=receipt["department"],
            subscription=receipt["subscription"],
            outcome=receipt["outcome"],
            reason=receipt["reason"],
        )
        outputs = [self._output(hop)]
        detail = {
            "outcome": receipt["outcome"],
            "delivery": f"{receipt['topic']}[{receipt['partition']}]@{receipt['offset']}",
        }
        if receipt["reason"]:
            detail["reason"] = receipt["reason"]
        outputs += self._seal(
            message.partition(),
            key=receipt["entity_key"],
            kind="receipt",
            at_ms=receipt["applied_at_ms"],
            actor=receipt["department"],
            event_id=receipt["event_id"],
            entity=entity or None,
            entity_key=receipt["entity_key"],
            department=receipt["department"],
            subscription=receipt["subscription"],
            detail=detail,
        )
        return outputs

    def _forged(self, message: Message, receipt: dict[str, Any]) -> list[Output] | None:
        """A receipt its department did not sign (signatures.py), or from a department
        the topology does not know, is refused onto the trail and answers nothing; None
        when it is the department's own."""
        department = receipt["department"]
        if department in self.topology.departments:
            why = signatures.refusal(
                self._receipt_key(department),
                message.value() or b"",
                dict(message.headers() or []).get(signatures.SIGNATURE_HEADER),
            )
        else:
            why = "the topology has no such department"
        if why is None:
            return None
        log.warning(
            "%s[%d]@%d: a receipt in the name of %s refused: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            department,
            why,
        )
        return self._seal(
            message.partition(),
            key=receipt["entity_key"],
            kind="receipt_refused",
            at_ms=receipt["applied_at_ms"],
            actor=UNVERIFIED_ACTOR,
            event_id=receipt["event_id"],
            entity_key=receipt["entity_key"],
            department=department,
            subscription=receipt["subscription"],
            detail={
                "reason": why,
                "claimed_department": department,
                "at": f"{message.topic()}[{message.partition()}]@{message.offset()}",
            },
        )

    def _signed(self, message: Message) -> list[Output]:
        """A subscription request, decision or objection step, with its verified signer as
        the actor; one whose signer cannot be proven is refused onto the trail instead."""
        if not message.value():
            return []
        at = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        keys, topic = self._keys or _NO_KEYS, message.topic()
        try:
            if topic == REQUESTS_TOPIC:
                return self._request(message, lifecycle.verify_request(message, keys), at)
            if topic == APPROVALS_TOPIC:
                decision = lifecycle.verify_decision(message, keys, self.topology)
                return self._decision(message, decision, at)
            step = lifecycle.verify_objection(message, keys, self.topology)
            return self._objection(message, step, at)
        except lifecycle.Unproven as exc:
            log.warning("%s refused: %s", at, exc)
            key = (message.key() or b"").decode(errors="replace")
            return self._seal(
                message.partition(),
                key=key,
                kind="signature_refused",
                at_ms=message.timestamp()[1],
                actor=UNVERIFIED_ACTOR,
                detail={
                    "reason": str(exc),
                    "claimed_signer": as_dict(message.headers()).get(lifecycle.SIGNER_HEADER, ""),
                    "record_key": key,
                    "at": at,
                },
            )

    def _request(self, message: Message, request: Request, at: str) -> list[Output]:
        return self._seal(
            message.partition(),
            key=request.subscription,
            kind="subscription_request",
            at_ms=int(request.requested_at.timestamp() * 1000),
            actor=request.department,
            department=request.department,
            subscription=request.subscription,
            fields=request.fields,
            approval={
                "purpose": request.purpose,
                "legal_basis": request.legal_basis,
                "expires": str(request.expires),
            },
            detail={"request": request.id, "at": at},
        )

    def _decision(self, message: Message, decision: Decision, at: str) -> list[Output]:
        wired = self._subscriptions.get(decision.subscription)
        detail = {"action": str(decision.action), "at": at}
        if decision.reason:
            detail["reason"] = decision.reason
        if decision.request:
            detail["request"] = decision.request
        return self._seal(
            message.partition(),
            key=decision.subscription,
            kind="subscription_decision",
            at_ms=int(decision.decided_at.timestamp() * 1000),
            actor=decision.principal,
            department=wired.department if wired is not None else None,
            subscription=decision.subscription,
            fields=decision.fields or [],
            approval={
                name: str(value)
                for name, value in decision.approval().model_dump(mode="json").items()
                if value is not None
            },
            detail=detail,
        )

    def _objection(self, message: Message, step: Objection, at: str) -> list[Output]:
        detail = {"objection": step.id, "step": str(step.step), "reason": step.reason, "at": at}
        detail |= {
            "source": step.source,
            "source_id": step.source_id,
            "delivered_at": step.position or "",
        }
        return self._seal(
            message.partition(),
            key=step.entity_key,
            kind="objection",
            at_ms=int(step.at.timestamp() * 1000),
            actor=step.principal,
            event_id=step.event_id,
            entity=step.entity,
            entity_key=step.entity_key,
            department=step.department,
            subscription=step.subscription,
            fields=sorted((step.record or {}).get("after") or {}) if step.record else [],
            detail={name: value for name, value in detail.items() if value},
        )

    def _replay(self, message: Message) -> list[Output]:
        """A replay request reaches every partition; it is one act, recorded once."""
        if message.partition() != 0:
            return []
        request = ReplayRequest.model_validate_json(message.value() or b"{}")
        subscription = self._subscriptions.get(request.subscription)
        return self._seal(
            0,
            key=request.subscription,
            kind="replay",
            at_ms=request.requested_at_ms,
            actor=request.requested_by,
            entity=request.entity,
            department=subscription.department if subscription is not None else None,
            subscription=request.subscription,
            approval=approval_of(subscription),
            detail={
                "replay_id": request.replay_id,
                "what": request.what,
                **({"from_ms": str(request.from_ms)} if request.from_ms is not None else {}),
                **({"to_ms": str(request.to_ms)} if request.to_ms is not None else {}),
            },
        )

    def _query(self, message: Message) -> list[Output]:
        """A look-up: who asked (the API's verified login), for which entity, under which
        subscription and approval, and what was answered. A record that is not one is
        logged and skipped, never chained half-read."""
        try:
            query = QueryRecord.model_validate_json(message.value() or b"")
        except ValueError as exc:
            log.error(
                "%s[%d]@%d is not a query record: %s",
                QUERIES_TOPIC,
                message.partition(),
                message.offset(),
                exc,
            )
            return []
        subscription = self._subscriptions.get(query.subscription or "")
        entity = self.topology.entities.get(query.entity)
        answered = query.status == 200 and subscription is not None and entity is not None
        detail = {"status": str(query.status)}
        if query.reason:
            detail["reason"] = query.reason
        if answered and subscription.mask:
            detail["masked"] = ",".join(f"{f}:{m.rule}" for f, m in subscription.mask.items())
        return self._seal(
            message.partition(),
            key=query.entity_key,
            kind="query",
            at_ms=query.at_ms,
            actor=query.department,
            event_id=query.event_id,
            entity=query.entity,
            entity_key=query.entity_key,
            department=query.department,
            subscription=query.subscription,
            fields=subscription.fields_in(entity) if answered else [],
            approval=approval_of(subscription),
            detail=detail,
        )

    def _topology_changes(self, message: Message) -> list[Output]:
        record = applied.ChangeRecord.model_validate_json(message.value() or b"{}")
        at_ms = int(record.applied_at.timestamp() * 1000)
        outputs: list[Output] = []
        for change in record.changes:
            outputs += self._seal(
                message.partition(),
                key=change.path,
                kind="topology_change",
                at_ms=at_ms,
                # Who applied it, as Kafka proves it (only admin may write the topic); the
                # approver the file names is a claim, kept as such.
                actor=credentials.ADMIN,
                detail={
                    "path": change.path,
                    "before": _text(change.before),
                    "after": _text(change.after),
                    "topology_sha256": record.sha256,
                    **({"named_approver": change.by} if change.by else {}),
                },
            )
        return outputs

    # --- lineage and the chain ----------------------------------------------------------

    def _lineage(
        self,
        change: dict[str, Any],
        stage: str,
        topic: str,
        partition: int,
        offset: int,
        at_ms: int,
        **extra: str | None,
    ) -> dict[str, Any]:
        """A hop (the shape of records.Hop), as a dict: one per input and stage, so no
        model is built unless spans are exported."""
        return {
            "event_id": change["event_id"],
            "stage": stage,
            "kind": change["kind"],
            "entity": change["entity"],
            "entity_key": change["key"],
            "department": None,
            "subscription": None,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "at_ms": at_ms,
            "source_ts_ms": change["source_ts_ms"],
            "outcome": None,
            "reason": None,
            **extra,
        }

    def _output(self, hop: dict[str, Any]) -> Output:
        if self._spans.enabled:
            self._exports.add(lambda: self._spans.hop(Hop.model_validate(hop)))
        return Output(
            TRACE_TOPIC,
            hop["event_id"].encode(),
            self._hop(hop),
            # Let readers skip other entities and stages without decoding.
            [("entity_key", hop["entity_key"].encode()), ("stage", hop["stage"].encode())],
        )

    def _seal(self, input_partition: int, *, key: str, **record: Any) -> list[Output]:
        partition = input_partition % self._partitions
        chain = self._chain(partition)
        repeats = self._repeats.get(partition)
        if repeats and repeats.take(record):
            # The first one says why; a take-over meets hundreds.
            log.log(
                logging.DEBUG if repeats.matched > 1 else logging.INFO,
                "audit chain %d already holds this %s (%s): not chained again%s",
                partition,
                record["kind"],
                record.get("event_id") or key,
                "" if repeats.matched > 1 else " (an input read again; more are logged at DEBUG)",
            )
            self._repeated = True
            self.tally.inc(metrics.REPEATS, record["kind"])
            return []
        return [
            Output(AUDIT_TOPIC, key.encode(), self._audit(sealed), [], partition)
            for sealed in chain.seal(**record)
        ]

    def _chain(self, partition: int) -> Chain:
        chain = self.heads.pending(AUDIT_TOPIC, partition)
        if chain is None:
            base = self.heads.get(AUDIT_TOPIC, partition) or self._resume(partition)
            chain = Chain(base.head_sha256, base.next_seq, base.checkpoint_every)
            self.heads.put(AUDIT_TOPIC, partition, chain)
        return chain

    def _resume(self, partition: int) -> Chain:
        """The chain continued from its last record on the topic. The first chain needed
        reads every chain this member writes, in one pass: after a broker restart each
        read takes seconds, and aborts make it read them all again."""
        if partition not in self._resumed:
            unread = {partition} | {
                p
                for p in self._anchored
                if p not in self._resumed and self.heads.get(AUDIT_TOPIC, p) is None
            }
            tails = self._chain_tails(unread)
            for p in unread:
                tail = tails[p]
                self._resumed[p] = Chain.resume(tail[-1] if tail else None, CHECKPOINT_EVERY)
                self._repeats[p] = Repeats(tail[max(0, len(tail) - self._repeat_window) :])
        return self._resumed.pop(partition)

    def _forget(self) -> None:
        """Heads are read back from the topic after a start, a rebalance or an abort."""
        self.heads.drop([AUDIT_TOPIC])
        self._resumed.clear()
        self._repeats.clear()

    def _last_records(self, partitions: Collection[int]) -> dict[int, list[AuditRecord]]:
        """The committed ends of some chains, read together: the last ``repeat_window``
        offsets of each partition, or more until a record turns up or the partition's
        start is reached (transaction markers and aborted batches take offsets too)."""
        consumer = Consumer(
            clients.config(
                self._bootstrap,
                credentials.LEDGER,
                **{
                    "group.id": LEDGER_TAIL_GROUP,  # never committed
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                },
            )
        )
        try:
            marks = {
                (AUDIT_TOPIC, p): consumer.get_watermark_offsets(
                    TopicPartition(AUDIT_TOPIC, p), timeout=10
                )
                for p in partitions
            }
            window = max(TAIL_WINDOW, self._repeat_window)
            tails = topic_reader.last_records(consumer, marks, window)
        finally:
            consumer.close()
        records: dict[int, list[AuditRecord]] = {}
        for (_, p), messages in sorted(tails.items()):
            values = [value for m in messages if (value := m.value()) is not None]
            records[p] = [
                AuditRecord.model_validate(self._codec.decode(AUDIT_TOPIC, value))
                for value in values[-max(1, self._repeat_window) :]
            ]
            if records[p]:
                log.info("audit chain %d continues after seq %d", p, records[p][-1].seq)
        return records


def _with_values(record: dict[str, Any]) -> list[str]:
    """The fields a delivered or received record carries a value for (its state after the
    change, or before it for a deletion): what the audit trail says was received."""
    state = record.get("after") or record.get("before") or {}
    return sorted(name for name, value in state.items() if value is not None)


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
