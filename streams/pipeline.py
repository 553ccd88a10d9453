"""The worker's two stages, built from the topology.

    cdc.<department>.<table> --normalize--> changes.<entity> --route--> master.<entity>
                 (invalid: govsync.dlq)                        |--> deliver.<department>.<entity>
                                                               \\--> govsync.quality (一数一源)

Each stage turns one input record into the records to produce; the transactional
engine (streams/transactional.py) makes each batch of them happen exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from confluent_kafka import Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import SerializationError

from streams import headers, metrics, replay, schemas
from streams.authority import QUALITY_TOPIC, Authority
from streams.canonical import CHANGELOG_TOPIC as CANONICAL_CHANGELOG
from streams.canonical import CanonicalStore, changelog_key
from streams.dedup import DedupStore, changelog_topic, encode_seen
from streams.masking import mask_delivery
from streams.normalize import NormalizeError, normalize
from streams.projection import project
from streams.serde import ValueDeserializer, ValueSerializer
from streams.topology import (
    DLQ_TOPIC,
    Source,
    Subscription,
    Topology,
    changes_topic,
    delivery_topic,
    master_topic,
)
from streams.transactional import Output

log = logging.getLogger("govsync.worker")


def dead_letter(message: Message, code: str, reason: str) -> Output:
    """The original bytes, where they came from and why they could not go on."""
    return Output(
        DLQ_TOPIC,
        message.key(),
        message.value(),
        [
            ("error_code", code.encode()),
            ("error_message", reason.encode()),
            ("source_topic", message.topic().encode()),
            ("source_partition", str(message.partition()).encode()),
            ("source_offset", str(message.offset()).encode()),
            ("dead_lettered_at", str(int(time.time() * 1000)).encode()),
        ],
    )


class NormalizeStage:
    """Debezium envelopes -> canonical change events; what cannot be normalized is held."""

    name = "normalize"

    def __init__(self, topology: Topology, registry: SchemaRegistryClient) -> None:
        self._sources: dict[str, Source] = {s.cdc_topic: s for s in topology.sources}
        self.topics: Sequence[str] = sorted(self._sources)
        self._topology = topology
        self.pending = metrics.Pending()
        self._decode = ValueDeserializer(registry)
        self._serializers = {
            entity: ValueSerializer(
                registry, changes_topic(entity), schemas.change_event_schema(topology, entity)
            )
            for entity in {s.entity for s in topology.sources}
        }

    def convert(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[dict, Output]:
        """One cdc record -> (canonical change, the record for changes.<entity>).

        Raises NormalizeError or SerializationError; shared by live processing and
        `govsync dlq reprocess`, so a held record is judged by exactly the same rules.
        """
        source = self._sources[topic]
        envelope = self._decode(topic, value)
        if envelope is None:
            raise NormalizeError("tombstone", "record has no value")
        change = normalize(
            envelope, self._decode.key(topic, key), source, self._topology.entity(source.entity)
        )
        out = Output(
            changes_topic(source.entity),
            change["key"].encode(),
            self._serializers[source.entity](change),
            headers.for_change(change, "normalize"),
        )
        return change, out

    def process(self, message: Message) -> list[Output]:
        source = self._sources[message.topic()]
        self.pending.inc(metrics.CAPTURED, source.id)
        try:
            _, out = self.convert(message.topic(), message.key(), message.value())
        except (NormalizeError, SerializationError) as exc:
            code = getattr(exc, "code", "undecodable")
            self.pending.inc(metrics.DEAD_LETTERED, source.id, code)
            return [dead_letter(message, code, str(exc))]
        self.pending.inc(metrics.NORMALIZED, source.id, source.entity)
        where = (message.topic(), message.partition(), message.offset(), message.timestamp()[1])
        return [replace(out, headers=[*out.headers, headers.captured(*where)])]

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Stateless."""

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Stateless."""

    def committed(self) -> None:
        self.pending.commit()

    def aborted(self) -> None:
        self.pending.clear()


@dataclass(frozen=True)
class _Delivery:
    subscription: Subscription
    topic: str
    serialize: ValueSerializer
    mask_key: bytes


@dataclass(frozen=True)
class Routing:
    """The subscriptions the route stage serves, swapped whole when the topology changes."""

    topology: Topology
    deliveries: dict[str, _Delivery]


class ReloadRefused(ValueError):
    """A topology change a running route stage cannot take (sources or entities changed)."""


class RouteStage:
    """Canonical changes -> latest state on master and a projection per active subscription,
    each event_id once."""

    name = "route"

    def __init__(
        self,
        topology: Topology,
        registry: SchemaRegistryClient,
        bootstrap: str,
        mask_key: Callable[[str], bytes],
    ) -> None:
        self._registry = registry
        self._mask_key = mask_key
        self._bootstrap = bootstrap
        entities = sorted({s.entity for s in topology.sources})
        self._entity_of = {changes_topic(e): e for e in entities}
        self.topics: Sequence[str] = sorted(self._entity_of)
        self._decode = ValueDeserializer(registry)
        self._state = {
            e: ValueSerializer(registry, master_topic(e), schemas.entity_state_schema(topology, e))
            for e in entities
        }
        self.routing = self._routing(topology)
        self.dedup = DedupStore(topology.kafka.dedup_retention)
        self.canonical = CanonicalStore()
        self._authority = {e: Authority(topology, e) for e in entities}
        self._quality = ValueSerializer(registry, QUALITY_TOPIC, schemas.quality_schema())
        self.pending = metrics.Pending()
        self.changelog = changelog_topic(self.name)

    def _routing(self, topology: Topology) -> Routing:
        return Routing(
            topology,
            {
                s.id: _Delivery(
                    s,
                    delivery_topic(s),
                    ValueSerializer(
                        self._registry, delivery_topic(s), schemas.delivery_schema(topology, s)
                    ),
                    self._mask_key(s.department),
                )
                for s in topology.subscriptions
            },
        )

    def reload(self, topology: Topology) -> None:
        """Serve ``topology``'s subscriptions from the next record on (approvals, fields,
        masks, new subscriptions). Sources and entities are what the stage's state and
        inputs are built from; a change to them needs a new stage."""
        current = self.routing.topology
        if topology.entities != current.entities or topology.sources != current.sources:
            raise ReloadRefused("sources or entities changed")
        self.routing = self._routing(topology)

    def process(self, message: Message) -> list[Output]:
        routing = self.routing  # one topology for the whole record, even during a reload
        entity = self._entity_of[message.topic()]
        verb = headers.control(message.headers())
        if verb is not None:
            # Snapshots are the route's to serve; other requests are for the ledger's record.
            return self._snapshot(routing, entity, message) if verb == replay.SNAPSHOT else []
        change = self._decode(message.topic(), message.value())
        assert change is not None  # written by normalize, always a value
        partition = message.partition()
        if self.dedup.seen(partition, change["event_id"]):
            self.pending.inc(metrics.DUPLICATES, entity)
            return []
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        self.dedup.add(partition, change["event_id"], now_ms)
        key = change["key"].encode()
        merge = self._authority[entity].merge(
            change, self.canonical.get(entity, partition, change["key"])
        )
        self.canonical.put(entity, partition, change["key"], merge.canonical)
        outputs = [
            Output(self.changelog, change["event_id"].encode(), encode_seen(now_ms), [], partition),
            Output(
                CANONICAL_CHANGELOG,
                changelog_key(entity, change["key"]),
                merge.canonical.to_json(),
                [],
                partition,
            ),
        ]
        for discrepancy in merge.discrepancies:
            outputs.append(
                Output(
                    QUALITY_TOPIC,
                    key,
                    self._quality(discrepancy.model_dump()),
                    headers.for_change(change, "quality"),
                )
            )
            self.pending.inc(metrics.DISCREPANCIES, change["source"], discrepancy.field)
        if not merge.changes_state:
            # Nothing canonical changed (e.g. a source restating values another source
            # owns): no master write, nothing for any subscription.
            for subscription in routing.topology.subscriptions:
                if subscription.entity == entity:
                    self.pending.inc(metrics.FILTERED, subscription.id)
            return outputs
        canonical = merge.change
        after = canonical["after"]
        outputs.append(
            Output(
                master_topic(entity),
                key,
                self._state[entity](after) if after is not None else None,
                headers.for_change(canonical, "master"),
                partition,
            )
        )
        active = {s.id for s in routing.topology.active_subscriptions(entity, now)}
        for target in routing.deliveries.values():
            subscription = target.subscription
            if subscription.entity != entity:
                continue
            delivery = project(canonical, subscription, routing.topology.entity(entity))
            if delivery is None or subscription.id not in active:
                self.pending.inc(metrics.FILTERED, subscription.id)
                continue
            outputs.append(
                Output(
                    target.topic,
                    key,
                    target.serialize(mask_delivery(delivery, subscription, target.mask_key)),
                    headers.for_change(canonical, f"deliver/{subscription.id}"),
                )
            )
            self.pending.inc(metrics.DELIVERED, subscription.id)
            self.pending.observe(
                metrics.DELIVERY_LATENCY,
                max(0, now_ms - change["source_ts_ms"]) / 1000,
                subscription.id,
            )
        return outputs

    def _snapshot(self, routing: Routing, entity: str, message: Message) -> list[Output]:
        """A snapshot request (streams/replay.py): this partition's canonical state, as it
        stands between the changes before the request and those after it, for one
        subscription only."""
        request = replay.ReplayRequest.model_validate_json(message.value() or b"{}")
        partition, event_id = message.partition(), request.event_id(message.partition())
        if self.dedup.seen(partition, event_id):
            return []
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        self.dedup.add(partition, event_id, now_ms)
        outputs = [Output(self.changelog, event_id.encode(), encode_seen(now_ms), [], partition)]
        target = routing.deliveries.get(request.subscription)
        active = {s.id for s in routing.topology.active_subscriptions(entity, now)}
        if target is None or request.subscription not in active:
            log.warning(
                "snapshot %s refused: %s is not an active subscription",
                request.replay_id,
                request.subscription,
            )
            return outputs
        model = routing.topology.entity(entity)
        states = self.canonical.entities(entity, partition)
        for change in replay.snapshot_changes(request, model, states):
            delivery = project(change, target.subscription, model)
            if delivery is None:
                continue
            outputs.append(
                Output(
                    target.topic,
                    change["key"].encode(),
                    target.serialize(mask_delivery(delivery, target.subscription, target.mask_key)),
                    [
                        *headers.for_change(change, f"deliver/{target.subscription.id}"),
                        (headers.REPLAY, request.replay_id.encode()),
                    ],
                )
            )
            self.pending.inc(metrics.DELIVERED, target.subscription.id)
        log.info(
            "snapshot %s: %d records for %s from %s[%d]",
            request.replay_id,
            len(outputs) - 1,
            request.subscription,
            message.topic(),
            partition,
        )
        return outputs

    def assigned(self, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions})
        loaded = self.dedup.restore(self._bootstrap, self.changelog, numbers)
        metrics.DEDUP_ENTRIES.labels(self.name).set(self.dedup.size())
        log.info("route: restored %d event_ids for partitions %s", loaded, numbers)
        keys = self.canonical.restore(
            self._bootstrap, [(self._entity_of[tp.topic], tp.partition) for tp in partitions]
        )
        log.info("route: restored the canonical state of %d entities", keys)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self.dedup.drop({tp.partition for tp in partitions})
        self.canonical.drop((self._entity_of[tp.topic], tp.partition) for tp in partitions)

    def committed(self) -> None:
        self.dedup.commit()
        self.canonical.commit()
        self.pending.commit()
        metrics.DEDUP_ENTRIES.labels(self.name).set(self.dedup.size())

    def aborted(self) -> None:
        self.dedup.abort()
        self.canonical.abort()
        self.pending.clear()
