"""Records nobody can send in another's name: receipts, subscription requests, decisions.

Every department writes the one ``govsync.receipts`` topic (its name is a contract), and
Kafka does not tell a consumer who produced a record. So each department signs its
receipts: header ``signature``, HMAC-SHA256 under the department's own receipt key over
the record's value bytes as written. The ledger checks it against the key of the
department the receipt names before it counts the receipt; one that does not verify is
refused onto the audit trail (kind ``receipt_refused``) and answers nothing.

Keys are generated secrets (``receipt-<department>.key`` beside the department's Kafka
password): the department's subscriber reads its own, the ledger reads each.

Subscription requests and the data authority's decisions are signed with Ed25519
instead: whoever checks them (the worker, the query API, the ACL keeper, the ledger) holds
only the signer's public key (``keys/<principal>.pub`` in the state directory), so no
checker, and no super user who can write any topic, can make a signature it would accept.
The private key is a generated secret (``signing-<principal>.key``) only its holder reads.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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


# --- Ed25519: requests and decisions ----------------------------------------------------


def signing_key(secrets: Path, keys: Path, principal: str) -> Ed25519PrivateKey:
    """``principal``'s private key (created on first use), its public key published in
    ``keys`` for those who check its signatures."""
    seed = bytes.fromhex(private_secret(secrets, f"signing-{principal}.key"))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = keys / f"{principal}.pub"
    raw = key.public_key().public_bytes_raw().hex()
    if not public.exists() or public.read_text().strip() != raw:
        keys.mkdir(parents=True, exist_ok=True)
        public.write_text(raw + "\n")
    return key


def public_key(keys: Path, principal: str) -> Ed25519PublicKey | None:
    """``principal``'s published public key; None if it never published one."""
    path = keys / f"{principal}.pub"
    if not path.exists():
        return None
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(path.read_text().strip()))


def sign_as(key: Ed25519PrivateKey, value: bytes) -> bytes:
    return key.sign(value).hex().encode()


def unproven(key: Ed25519PublicKey | None, value: bytes, signature: bytes | None) -> str | None:
    """Why ``value`` is not proven to come from ``key``'s holder, or None when it is."""
    if key is None:
        return "the signer has no published key"
    if not signature:
        return "unsigned"
    try:
        key.verify(bytes.fromhex(signature.decode()), value)
    except (InvalidSignature, ValueError):
        return "signature does not match the signer's key"
    return None
