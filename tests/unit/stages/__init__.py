"""Unit tests of the worker's stages, each on in-memory Avro (tests/unit/avro.py)."""

from __future__ import annotations

from prometheus_client import REGISTRY


def count(name: str, **labels: str) -> float:
    """A govsync counter's current value (0 before its first increment). Counters are
    process-wide, so tests compare before and after."""
    return REGISTRY.get_sample_value(f"govsync_{name}_total", labels) or 0.0
