"""The worker instances running now, wherever they run, from Kafka alone: each stage
consumer advertises its instance, host and metrics URL in its client.id
(``streams.contract.members``), and the stage groups list their members."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from pydantic import BaseModel

from streams.config.settings import Settings
from streams.kafka import admin
from streams.kafka.members import StageMember, stage_members


class WorkerInstance(BaseModel):
    id: str
    host: str
    metrics_url: str
    stages: dict[str, list[str]]  # stage -> "<topic>/<partition>" assigned to it now


def worker_instances(settings: Settings, client: AdminClient | None = None) -> list[WorkerInstance]:
    """Every advertising member of the stage groups, by instance id (a member stays for
    its session timeout after a crash, so a just-killed instance may still be listed)."""
    return instances(stage_members(client or admin.admin_client(settings.bootstrap)))


def instances(members: list[StageMember]) -> list[WorkerInstance]:
    found: dict[str, WorkerInstance] = {}
    for member in members:
        advert = member.advert
        if advert is None:
            continue
        current = found.setdefault(
            advert.instance,
            WorkerInstance(
                id=advert.instance, host=advert.host, metrics_url=advert.metrics_url, stages={}
            ),
        )
        current.stages[member.stage] = member.partitions
    return sorted(found.values(), key=lambda i: (len(i.id), i.id))
