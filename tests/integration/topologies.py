"""Variants of the real topology.yaml for tests that apply or reprocess under other rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streams.config.settings import REPO_ROOT, Settings
from streams.kafka import admin

TOPOLOGY = REPO_ROOT / "topology.yaml"

Edit = Callable[[dict[str, Any]], object]


def edited(tmp_path: Path, edit: Edit) -> Path:
    """topology.yaml with ``edit`` applied to its data, written to ``tmp_path``."""
    data = yaml.safe_load(TOPOLOGY.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def with_subscription(department: str, entity: str, purpose: str) -> Edit:
    """An edit adding subscription ``<department>.<entity>`` (uscc, name, status, unmasked),
    approved like tax's."""

    def edit(data: dict[str, Any]) -> None:
        tax = next(s for s in data["subscriptions"] if s["id"] == "tax.enterprise")
        data["subscriptions"].append(
            {
                "id": f"{department}.{entity}",
                "department": department,
                "entity": entity,
                "fields": ["uscc", "name", "status"],
                "mask": {},
                "approval": {**tax["approval"], "purpose": purpose},
                "sla": tax["sla"],
            }
        )

    return edit


def delete_topic(settings: Settings, topic: str) -> bool:
    """``topic`` gone, so a test's subscription makes it anew; whether it was there (left
    by an earlier run)."""
    client = admin.admin_client(settings.bootstrap)
    if topic not in client.list_topics(timeout=10).topics:
        return False
    client.delete_topics([topic])[topic].result()
    deadline = time.monotonic() + 60
    while topic in client.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} not deleted after 60 s"
        time.sleep(0.5)
    return True
