"""Example data shared by the unit tests: the real topology (and the provincial node's,
which receives from it), one canonical enterprise, one change event of it, what a
subscription receives of a change, and a market-regulation row as Debezium captures it."""

from __future__ import annotations

import copy
from typing import Any

from streams.config.settings import REPO_ROOT
from streams.model.topology import Subscription, load_topology
from streams.transform.masking import mask_delivery
from streams.transform.projection import project

TOPOLOGY = load_topology(REPO_ROOT / "topology.yaml")
# A node receiving enterprises from the city node above (federation).
PROVINCE = load_topology(REPO_ROOT / "deploy" / "federation" / "province.yaml")
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
    "enterprise_type": "limited_company",
    "industry": "F",
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

MASK_KEY = b"k" * 32  # every department's masking key in the examples


def delivery(change: dict[str, Any], subscription: Subscription) -> dict[str, Any]:
    """``change`` as ``subscription`` receives it: projected, then masked under MASK_KEY."""
    projected = project(change, subscription, TOPOLOGY.entity(subscription.entity))
    assert projected is not None, f"{subscription.id} receives nothing of this change"
    return mask_delivery(projected, subscription, MASK_KEY)


# A row of market regulation's public.enterprise as Debezium captures it.
ROW: dict[str, Any] = {
    "id": 7,
    "credit_code": "91350100M000100Y43",
    "ent_name": "福建测试科技有限公司 ",
    "reg_status": "1",
    "rep_name": "王芳",
    "rep_id_no": "11010519491231002X",
    "reg_capital": "5000000.00",
    "address": "福州市鼓楼区",
    "established_on": 18263,  # Debezium's days since the epoch: 2020-01-02
    "updated_at": "2026-11-23T02:00:00Z",
    "ent_type": "2",
    "industry_code": "K",
}


def envelope(op: str, before: dict | None, after: dict | None, lsn: int = 1000) -> dict[str, Any]:
    """Debezium's change envelope for a row of market regulation's public.enterprise."""
    return {
        "op": op,
        "before": before,
        "after": after,
        "source": {
            "name": "cdc.market_regulation",
            "schema": "public",
            "table": "enterprise",
            "lsn": lsn,
            "txId": 55,
            "ts_ms": 1795400000000,
        },
    }


def with_row(**changes: Any) -> dict[str, Any]:
    """A copy of ``ROW`` with some columns changed."""
    row = copy.deepcopy(ROW)
    row.update(changes)
    return row
