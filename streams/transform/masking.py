"""Masking (最小必要): what a subscription receives of a field it may know exists but not read.

Applied after projection, per field per subscription, as the topology says: ``partial``
keeps the first and last ``keep`` characters, ``hash`` replaces the value by an
HMAC-SHA256 under the receiving department's own key (the same value hashes differently
for two departments, so their data cannot be joined on it), ``drop`` removes the value
while the field's name still appears in ``changed_fields``.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from streams.config.secrets import private_secret
from streams.model.topology import Mask, Subscription

MASK_CHAR = "*"


def partial(value: str, keep: int) -> str:
    """First and last ``keep`` characters; a value too short to hide anything is hidden
    entirely rather than shown whole."""
    if len(value) <= 2 * keep:
        return MASK_CHAR * len(value)
    return value[:keep] + MASK_CHAR * (len(value) - 2 * keep) + value[-keep:]


def keyed_hash(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def mask_value(value: Any, mask: Mask, key: bytes) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if mask.rule == "partial":
        return partial(text, mask.kept)
    if mask.rule == "hash":
        return keyed_hash(text, key)
    raise ValueError(f"{mask.rule} has no masked value: the field is dropped")


def mask_state(
    state: dict[str, Any] | None, subscription: Subscription, key: bytes
) -> dict[str, Any] | None:
    if state is None:
        return None
    masked: dict[str, Any] = {}
    for name, value in state.items():
        mask = subscription.mask.get(name)
        if mask is None:
            masked[name] = value
        elif mask.rule != "drop":
            masked[name] = mask_value(value, mask, key)
    return masked


def mask_delivery(delivery: dict[str, Any], subscription: Subscription, key: bytes) -> dict:
    """A projected delivery with the subscription's masks applied to before and after."""
    if not subscription.mask:
        return delivery
    return {
        **delivery,
        "before": mask_state(delivery["before"], subscription, key),
        "after": mask_state(delivery["after"], subscription, key),
    }


def department_key(directory: Path, department: str) -> bytes:
    """The department's masking key (streams/config/secrets.py: random, private, created once)."""
    return bytes.fromhex(private_secret(directory, f"mask-{department}.key"))
