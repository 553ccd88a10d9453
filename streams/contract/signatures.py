"""Receipts a department cannot send in another's name.

Every department writes the one ``govsync.receipts`` topic (its name is a contract), and
Kafka does not tell a consumer who produced a record. So each department signs its
receipts: header ``signature``, HMAC-SHA256 under the department's own receipt key over
the record's value bytes as written. The ledger checks it against the key of the
department the receipt names before it counts the receipt; one that does not verify is
refused onto the audit trail (kind ``receipt_refused``) and answers nothing.

Keys are generated secrets (``receipt-<department>.key`` beside the department's Kafka
password): the department's subscriber reads its own, the ledger reads each.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from streams.config.secrets import private_secret

SIGNATURE_HEADER = "signature"


def receipt_key(secrets: Path, department: str) -> bytes:
    return bytes.fromhex(private_secret(secrets, f"receipt-{department}.key"))


def sign(key: bytes, value: bytes) -> bytes:
    return hmac.new(key, value, hashlib.sha256).hexdigest().encode()


def refusal(key: bytes, value: bytes, signature: bytes | None) -> str | None:
    """Why a signed value is not to be believed, or None when the signature holds."""
    if not signature:
        return "unsigned"
    if not hmac.compare_digest(sign(key, value), signature):
        return "signature does not match the department's key"
    return None
