"""Variants of the real topology.yaml for tests that apply or reprocess under other rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streams.config.settings import REPO_ROOT

TOPOLOGY = REPO_ROOT / "topology.yaml"


def edited(tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """topology.yaml with ``edit`` applied to its data, written to ``tmp_path``."""
    data = yaml.safe_load(TOPOLOGY.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
