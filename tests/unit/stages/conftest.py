from __future__ import annotations

import pytest

from tests.unit.avro import MemoryCodec


@pytest.fixture()
def codec() -> MemoryCodec:
    """A fresh in-memory registry per test: stage and test write and read through it."""
    return MemoryCodec()
