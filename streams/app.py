"""The Faust app run by `govsync worker`: normalize and route.

    cdc.<department>.<table> --normalize--> changes.<entity> --route--> master.<entity>
                       (invalid: govsync.dlq)               \\--> deliver.<department>.<entity>

Agents are small async functions built from the topology: one normalize agent per
source, one route agent per entity. Records are raw bytes to Faust; Avro
(de)serialization happens here with schemas fetched once from the registry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import faust
from confluent_kafka.serialization import SerializationError
from faust.types import EventT, StreamT

from streams import headers, schemas
from streams.normalize import NormalizeError, normalize
from streams.projection import project
from streams.serde import ValueDeserializer, ValueSerializer, registry_client
from streams.settings import Settings
from streams.topology import (
    DLQ_TOPIC,
    Entity,
    Source,
    Topology,
    changes_topic,
    delivery_topic,
    master_topic,
)

log = logging.getLogger("govsync.worker")

APP_ID = "govsync"


def build_app(settings: Settings, topology: Topology) -> faust.App:
    app = faust.App(
        APP_ID,
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=topology.kafka.replication_factor,
        topic_partitions=topology.kafka.partitions,
        topic_allow_declare=False,
        producer_acks=-1,
        producer_linger_ms=5,
        broker_commit_every=500,
        broker_commit_interval=1.0,
        web_enabled=True,
        web_bind=settings.host,
        web_host=settings.host,
        web_port=settings.worker_port,
        datadir=str(settings.path("worker")),
    )
    registry = registry_client(settings.registry_url)
    decode = ValueDeserializer(registry)
    dlq = app.topic(DLQ_TOPIC)
    for source in topology.sources:
        _normalize_agent(
            app, topology, source, topology.entity(source.entity), registry, decode, dlq
        )
    for name in sorted({source.entity for source in topology.sources}):
        _route_agent(app, topology, name, registry, decode)
    return app


def _normalize_agent(
    app: faust.App,
    topology: Topology,
    source: Source,
    entity: Entity,
    registry: Any,
    decode: ValueDeserializer,
    dlq: faust.TopicT,
) -> None:
    out_topic = changes_topic(source.entity)
    out = app.topic(out_topic)
    serialize = ValueSerializer(
        registry, out_topic, schemas.change_event_schema(topology, source.entity)
    )

    async def normalize_source(stream: StreamT) -> None:
        async for event in stream.events():
            message = event.message
            try:
                envelope = decode(message.topic, message.value)
                if envelope is None:
                    raise NormalizeError("tombstone", "record has no value")
                change = normalize(envelope, decode.key(message.topic, message.key), source, entity)
                value = serialize(change)
            except (NormalizeError, SerializationError) as exc:
                await _dead_letter(dlq, event, exc)
                continue
            await out.send(
                key=change["key"].encode(),
                value=value,
                headers=headers.for_change(change, "normalize"),
            )

    app.agent(app.topic(source.cdc_topic), name=f"normalize.{source.id}")(normalize_source)


def _route_agent(
    app: faust.App,
    topology: Topology,
    entity_name: str,
    registry: Any,
    decode: ValueDeserializer,
) -> None:
    entity = topology.entity(entity_name)
    in_topic = changes_topic(entity_name)
    master = app.topic(master_topic(entity_name))
    serialize_state = ValueSerializer(
        registry, master_topic(entity_name), schemas.entity_state_schema(topology, entity_name)
    )
    deliveries = {
        subscription.id: (
            app.topic(delivery_topic(subscription)),
            ValueSerializer(
                registry,
                delivery_topic(subscription),
                schemas.delivery_schema(topology, subscription),
            ),
        )
        for subscription in topology.subscriptions
        if subscription.entity == entity_name
    }

    async def route(stream: StreamT) -> None:
        async for event in stream.events():
            change = decode(in_topic, event.message.value)
            assert change is not None  # written by normalize, always a value
            key = change["key"].encode()
            after = change["after"]
            await master.send(
                key=key,
                value=serialize_state(after) if after is not None else None,
                headers=headers.for_change(change, "master"),
            )
            now = datetime.now(UTC)
            for subscription in topology.active_subscriptions(entity_name, now):
                delivery = project(change, subscription, entity)
                if delivery is None:
                    continue
                topic, serialize = deliveries[subscription.id]
                await topic.send(
                    key=key,
                    value=serialize(delivery),
                    headers=headers.for_change(change, f"deliver/{subscription.id}"),
                )

    app.agent(app.topic(in_topic), name=f"route.{entity_name}")(route)


async def _dead_letter(dlq: faust.TopicT, event: EventT, exc: Exception) -> None:
    """Hold the original bytes with where they came from and why; the pipeline goes on."""
    message = event.message
    code = getattr(exc, "code", "undecodable")
    log.warning(
        "dead-lettered %s[%s]@%s: %s %s",
        message.topic,
        message.partition,
        message.offset,
        code,
        exc,
    )
    await dlq.send(
        key=message.key,
        value=message.value,
        headers=[
            ("error_code", code.encode()),
            ("error_message", str(exc).encode()),
            ("source_topic", message.topic.encode()),
            ("source_partition", str(message.partition).encode()),
            ("source_offset", str(message.offset).encode()),
        ],
    )
