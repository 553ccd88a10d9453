"""The embedded broker's storage format: cluster ids the storage tool accepts."""

from __future__ import annotations

import base64

from govsync.stack import kafka


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    """kafka-storage reads ``-t -Ab…`` as a missing argument; one random id in 64 began
    with ``-`` and its format failed."""
    for _ in range(5_000):
        cluster_id = kafka._cluster_id()
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
