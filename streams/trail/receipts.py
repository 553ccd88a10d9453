"""The receipt SLA: a delivery a department has not answered on ``govsync.receipts``, and
whether it is past its subscription's ``receipt_within``. The index (govsync/index) keeps
the unanswered deliveries; `govsync receipts overdue` and the monitor ask it.
"""

from __future__ import annotations

from pydantic import BaseModel


class Unanswered(BaseModel):
    event_id: str
    subscription: str
    department: str
    entity_key: str
    delivered_at_ms: int
    waited_ms: int
    receipt_within_ms: int

    @property
    def overdue(self) -> bool:
        return self.waited_ms > self.receipt_within_ms
