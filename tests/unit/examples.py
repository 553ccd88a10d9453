"""Example data shared by the unit tests: the real topology, one canonical enterprise, and
one change event of it."""

from __future__ import annotations

from typing import Any

from streams.config.settings import REPO_ROOT
from streams.model.topology import load_topology

TOPOLOGY = load_topology(REPO_ROOT / "topology.yaml")
ENTERPRISE = TOPOLOGY.entity("enterprise")
TAX = TOPOLOGY.subscription("tax.enterprise")
SOCIAL = TOPOLOGY.subscription("social_security.enterprise")

STATE: dict[str, Any] = {
    "uscc": "91310000MA1FL8XQ30",
    "name": "上海示例贸易有限公司",
    "status": "active",
    "legal_rep_name": "张三",
    "legal_rep_id": "110101199003074514",
    "legal_rep_phone": None,
    "registered_capital": "1000000.00",
    "address": "上海市浦东新区示例路1号",
    "established_on": "2015-06-01",
    "contact_phone": None,
}

# A deregistration as normalize emits it on changes.enterprise.
CHANGE = {
    "event_id": "7f1c2a3e-0000-5000-8000-000000000001",
    "kind": "deregistered",
    "entity": "enterprise",
    "key": STATE["uscc"],
    "before": STATE,
    "after": {**STATE, "status": "deregistered"},
    "changed_fields": ["status"],
    "source": "market_regulation.enterprise",
    "source_ts_ms": 1795000000000,
    "source_position": "lsn=123;txid=456",
}
