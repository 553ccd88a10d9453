"""使用—评价: a department objects to a record it was delivered (数据异议), and the source
department that produced it answers.

An objection goes to the source department's own topic, ``govsync.objections.<source>``,
carrying the record as the objecting department received it: that is the finding the
source reads (no other department can read it: the record may hold fields only the
objecting department was approved to see). The source answers on the same topic,
``resolved`` (it corrected the data) or ``rejected`` (the data stands), with a reason.
Each step is signed with its author's Ed25519 key like requests and decisions
(signatures.py); the ledger puts every step on the audit trail with the verified signer,
and the indexer counts them per source for `govsync quality` and the monitor.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

# One refusal for the whole lifecycle: the CLI answers it with exit code 4.
from streams.contract.approvals import Refused
from streams.model.topology import Topology

__all__ = ["ANSWERS", "Objection", "ObjectionState", "Refused", "Step", "answer", "signer_problem"]


class Step(StrEnum):
    RAISED = "raised"
    RESOLVED = "resolved"
    REJECTED = "rejected"


ANSWERS = (Step.RESOLVED, Step.REJECTED)


class Objection(BaseModel, frozen=True):
    """One step of one objection; ``id`` ties the answer to what it answers."""

    id: str
    step: Step
    event_id: str
    subscription: str
    department: str  # who objected
    source: str  # the source department, who answers
    source_id: str  # the topology source the record came from
    entity: str
    entity_key: str
    reason: str
    principal: str  # who signed this step
    at: datetime
    record: dict[str, Any] | None = None  # the delivered record, on the raised step
    position: str | None = None  # where it was delivered: topic[partition]@offset


def signer_problem(step: Objection, topology: Topology) -> str | None:
    """Why a correctly signed step still does not count: an objection is raised by the
    department the subscription is for, answered by the source department."""
    expected = step.department if step.step is Step.RAISED else step.source
    if step.principal != expected:
        return f"{step.step} by {step.principal}, not by {expected}"
    if step.source not in topology.departments:
        return f"the topology has no department {step.source}"
    return None


def answer(raised: Objection, step: Step, principal: str, reason: str, at: datetime) -> Objection:
    """The source department's answer to ``raised``."""
    if step not in ANSWERS:
        raise Refused(f"an answer is {' or '.join(ANSWERS)}, not {step}")
    if principal != raised.source:
        raise Refused(f"objection {raised.id} is answered by {raised.source}, not {principal}")
    if not reason.strip():
        raise Refused("an answer needs a reason")
    return raised.model_copy(
        update={
            "step": step,
            "principal": principal,
            "reason": reason,
            "at": at,
            "record": None,
            "position": None,
        }
    )


class ObjectionState(BaseModel):
    """One objection as the trail has it: raised, and answered or still open."""

    id: str
    event_id: str
    subscription: str
    department: str
    source: str
    source_id: str
    entity_key: str
    reason: str
    raised_at_ms: int
    raised_on: str  # where the raised step is: govsync.objections.<source>[p]@offset
    delivered_at: str | None  # where the record objected to was delivered
    answer: Step | None = None
    answer_reason: str | None = None
    answered_at_ms: int | None = None

    @property
    def open(self) -> bool:
        return self.answer is None
