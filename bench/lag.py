"""How long `govsync lag`'s measurement takes for many groups over many partitions, on the
running embedded stack.

Creates ``--topics`` topics ``bench.lag.<partitions>.<n>`` with records on every partition
and ``--groups`` consumer groups, spread over the topics, with committed offsets (every
other group behind, so the probe that reads the oldest waiting record's age runs), then times
``govsync.ops.lag.measure`` — the same batched calls the command makes — ``--runs`` times.

Usage: .venv/bin/python bench/lag.py [--groups 100] [--partitions 50] [--topics 1] [--runs 5]
Prints each run and one JSON line for baselines; the topic and groups are left for a
second run (``--clean`` deletes them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from govsync.ops import lag
from streams.config.settings import Settings
from streams.kafka import admin, clients

RECORDS_PER_PARTITION = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=50)
    parser.add_argument("--topics", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clean", action="store_true", help="delete the topic and groups")
    args = parser.parse_args()

    settings = Settings.from_env()
    client = admin.admin_client(settings.bootstrap)
    topics = [f"bench.lag.{args.partitions}.{n}" for n in range(args.topics)]
    groups = [f"bench-lag-{n:03d}" for n in range(args.groups)]
    topic_of = {group: topics[n % len(topics)] for n, group in enumerate(groups)}
    if args.clean:
        client.delete_consumer_groups(groups)
        client.delete_topics(topics)
        return

    existing = admin.existing_topics(client)
    producer = Producer(clients.config(settings.bootstrap))
    for topic in topics:
        if topic in existing:
            continue
        client.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result()
        for partition in range(args.partitions):
            for n in range(RECORDS_PER_PARTITION):
                producer.produce(topic, f"{n}".encode(), partition=partition)
    producer.flush(60)
    for n, group in enumerate(groups):
        topic = topic_of[group]
        behind = RECORDS_PER_PARTITION // 2 if n % 2 else 0  # every other group lags
        offsets = [
            TopicPartition(topic, p, RECORDS_PER_PARTITION - behind) for p in range(args.partitions)
        ]
        request = [ConsumerGroupTopicPartitions(group, offsets)]
        for future in client.alter_consumer_group_offsets(request).values():
            future.result()

    wanted = {group: [topic_of[group]] for group in groups}
    timings = []
    for run in range(args.runs):
        started = time.perf_counter()
        measured = lag.measure(client, settings.bootstrap, wanted)
        timings.append(time.perf_counter() - started)
        lagging = sum(1 for rows in measured.values() for r in rows if r.lag)
        aged = sum(1 for rows in measured.values() for r in rows if r.lag_seconds is not None)
        print(
            f"run {run + 1}: {timings[-1] * 1000:.0f} ms for {args.groups} groups × "
            f"{args.partitions} partitions on {args.topics} topics "
            f"({lagging} lagging, {aged} with an age)"
        )
    print(
        json.dumps(
            {
                "groups": args.groups,
                "partitions": args.partitions,
                "topics": args.topics,
                "group_partitions": args.groups * args.partitions,
                "ms": {
                    "median": round(statistics.median(timings) * 1000),
                    "max": round(max(timings) * 1000),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
