"""Who is in the worker's stage groups right now, from the brokers' group descriptions.

A member stays listed until it leaves or its session times out (10 s), so a worker that
was just killed still shows: that is what lets its restart take its static id back.
"""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel

from streams.contract import members
from streams.contract.members import Advert
from streams.contract.topics import STAGES, stage_group
from streams.kafka.admin import AdminError


class StageMember(BaseModel, frozen=True):
    stage: str
    group_instance_id: str | None
    advert: Advert | None  # None: not a worker that advertises itself (an older one)
    partitions: list[str]  # "<topic>/<partition>", as assigned now


def stage_members(admin: AdminClient, timeout: float = 10.0) -> list[StageMember]:
    groups = [stage_group(stage) for stage in STAGES]
    futures = admin.describe_consumer_groups(groups, request_timeout=timeout)
    found = []
    for stage in STAGES:
        group = stage_group(stage)
        try:
            description = futures[group].result()
        except KafkaException as exc:
            error = exc.args[0]
            if error.name() == "GROUP_ID_NOT_FOUND":  # no worker has run yet
                continue
            raise AdminError(f"describing {group} failed: {error.name()} {error.str()}") from exc
        for member in description.members:
            assigned = member.assignment.topic_partitions if member.assignment else []
            found.append(
                StageMember(
                    stage=stage,
                    group_instance_id=member.group_instance_id,
                    advert=members.parse(member.client_id),
                    partitions=[
                        f"{tp.topic}/{tp.partition}"
                        for tp in sorted(assigned, key=lambda tp: (tp.topic, tp.partition))
                    ],
                )
            )
    return found
