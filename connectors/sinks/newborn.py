"""Who counts as a newborn (出生一件事): a person whose household registration is new and
who was born within the year before it. Only they are enrolled and carded without asking;
anyone else registering (a move into the area) applies as before."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

NEWBORN_WITHIN = timedelta(days=366)


def is_newborn(kind: str, after: dict[str, Any] | None, registered_ms: int) -> bool:
    if kind != "registered" or not after or after.get("status") != "registered":
        return False
    born = after.get("birth_date")
    if not born:
        return False
    registered_on = datetime.fromtimestamp(registered_ms / 1000, UTC).date()
    return registered_on - date.fromisoformat(born) <= NEWBORN_WITHIN
