"""A replay as the pipeline sees it: a control record on every partition of
``changes.<entity>`` (header ``govsync.control``), which the route stage answers with a
snapshot and the ledger records on the audit trail. ``govsync replay`` writes it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

SNAPSHOT, RANGE = b"snapshot", b"range"
SNAPSHOT_SOURCE = "govsync.replay"


class ReplayRequest(BaseModel):
    """A replay as the pipeline sees it: on changes.* as a control record, where the route
    acts on snapshots and the ledger puts every replay on the audit trail."""

    replay_id: str
    what: Literal["snapshot", "range"] = "snapshot"
    subscription: str
    entity: str
    requested_at_ms: int
    requested_by: str
    from_ms: int | None = None  # range only
    to_ms: int | None = None

    def event_id(self, partition: int) -> str:
        """The control record's own id: a repeated request record is dropped as a duplicate."""
        return f"replay/{self.replay_id}/{partition}"


class SnapshotDone(BaseModel):
    replay_id: str
    subscription: str
    partitions: int
    records: int  # delivered to the subscription's topic under this replay id
    seconds: float
