"""How a worker instance makes itself known to Kafka: the ``client.id`` of its stage
consumers, which every member of a consumer group shows (``describe_consumer_groups``).

Format: ``govsync-worker;instance=<id>;host=<hostname>;metrics=<url>``, fields separated
by ``;`` in any order after the leading tag, unknown fields ignored (so one may be added
later). Kafka alone then tells which instances run where and where their metrics are,
with no registry of its own to keep in sync or clean up after a crash.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

TAG = "govsync-worker"
# Safe in a path (the instance's state directory), a transactional.id and a client.id.
INSTANCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Advert(BaseModel, frozen=True):
    """What one worker instance says about itself."""

    instance: str
    host: str
    metrics_url: str

    def client_id(self) -> str:
        return f"{TAG};instance={self.instance};host={self.host};metrics={self.metrics_url}"


def parse(client_id: str) -> Advert | None:
    """The advert in a member's client.id; None for any other client (or an older worker)."""
    tag, *fields = client_id.split(";")
    if tag != TAG:
        return None
    values = dict(field.partition("=")[::2] for field in fields)
    try:
        return Advert(
            instance=values["instance"], host=values["host"], metrics_url=values["metrics"]
        )
    except KeyError:
        return None
