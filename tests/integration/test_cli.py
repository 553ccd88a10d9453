"""The `govsync` command line as scripts use it: exit codes, `--json` contracts, idempotence.

Runs the installed console script against the real stack, as an operator would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from connectors.sources.debezium import connector_name
from streams.config.settings import REPO_ROOT
from streams.kafka import admin, applied
from tests.integration.companies import govsync
from tests.integration.conftest import Stack
from tests.integration.topologies import edited

pytestmark = pytest.mark.stack

EXIT_INVALID = 2


def test_status_json_reports_every_component_without_secrets(stack: Stack) -> None:
    """`status --json` is an operators' contract (docs/architecture.md): one object, every
    component with its state and address, versions where they exist, and no password or
    secret anywhere."""
    result = govsync("status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state_dir"] == str(stack.settings.state_dir)
    components = report["components"]
    assert set(components) >= {"postgres", "kafka", "connect", "registry", "worker", "acl"}
    for name in ("postgres", "kafka", "connect", "registry", "worker", "acl"):
        assert components[name]["state"] == "up", name

    postgres = components["postgres"]
    assert postgres["host"] == stack.settings.host
    assert postgres["port"] == stack.settings.pg_port
    assert postgres["user"] == stack.settings.pg_user
    assert postgres["version"].startswith("15")
    mariadb = components["mariadb"]  # the topology has a MariaDB source (health.birth)
    assert mariadb["state"] == "up"
    assert (mariadb["host"], mariadb["port"]) == (stack.settings.host, stack.settings.mariadb_port)
    assert mariadb["version"].startswith("10.11")
    kafka = components["kafka"]
    assert kafka["bootstrap"] == stack.settings.bootstrap
    assert re.match(r"\d+\.\d+", kafka["version"])
    connect = components["connect"]
    assert connect["url"] == stack.settings.connect_url
    assert re.match(r"\d+\.\d+", connect["version"])
    assert components["registry"]["url"] == stack.settings.registry_url
    assert components["registry"]["url"].endswith("/apis/ccompat/v7")
    assert isinstance(components["worker"]["pid"], int)

    text = result.stdout.lower()
    for word in ("password", "secret", "passwd"):
        assert word not in text


def test_topology_validate_accepts_the_real_file() -> None:
    """The topology the stack runs on is valid."""
    result = govsync("topology", "validate", "--file", str(REPO_ROOT / "topology.yaml"))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_topology_validate_names_the_yaml_path_of_a_bad_subscription_field(
    tmp_path: Path,
) -> None:
    """A subscription asking for a field the entity does not have is invalid input (exit 2),
    and the error names where in the YAML it is."""
    text = (REPO_ROOT / "topology.yaml").read_text(encoding="utf-8")
    good = "contact_phone,\n             enterprise_type, industry]"
    assert text.count(good) == 1, "the tax subscription's field list moved; update this test"
    broken = tmp_path / "topology.yaml"
    broken.write_text(
        text.replace(good, good.replace("]", ", no_such]")),
        encoding="utf-8",
    )

    result = govsync("topology", "validate", "--file", str(broken))
    assert result.returncode == EXIT_INVALID, result.stdout + result.stderr
    assert "subscriptions[0].fields[8]" in result.stderr
    assert "no_such" in result.stderr
    assert "Traceback" not in result.stderr


def test_topology_apply_is_idempotent(stack: Stack) -> None:
    """Applying the topology a second time changes nothing: every topic and the connector
    report "unchanged", and the schemas keep their ids."""
    first = govsync("topology", "apply", "--json")
    assert first.returncode == 0, first.stderr
    second = govsync("topology", "apply", "--json")
    assert second.returncode == 0, second.stderr
    before, after = json.loads(first.stdout), json.loads(second.stdout)

    assert after["topics"], "apply reported no topics"
    assert set(after["topics"]) == set(before["topics"])
    assert set(after["topics"].values()) == {"unchanged"}, after["topics"]
    connectors = {connector_name(source.database.name) for source in stack.topology.sources}
    assert after["connectors"] == dict.fromkeys(connectors, "unchanged")
    assert after["schemas"] == before["schemas"]


def test_topology_apply_dry_run_shows_the_plan_and_changes_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    """`apply --dry-run` with a new department's subscription names the topic, ACLs, schema,
    registry login and subscription change it would make, and makes none of them."""

    def add_statistics(data: dict[str, Any]) -> None:
        data["departments"]["statistics"] = {"name": "统计局", "clearance": "internal"}
        data["subscriptions"].append(
            {
                "id": "statistics.enterprise",
                "department": "statistics",
                "entity": "enterprise",
                "fields": ["uscc", "name", "status"],
                "approval": {
                    "state": "requested",
                    "purpose": "经济普查",
                    "legal_basis": "《统计法》",
                    "expires": "2027-12-31",
                },
                "sla": {"deliver_within": "5s", "receipt_within": "4h"},
            }
        )

    path = edited(tmp_path, add_statistics)
    before = applied.latest(stack.settings.bootstrap)
    history = len(applied.history(stack.settings.bootstrap))

    result = govsync("topology", "apply", "--dry-run", "--file", str(path), "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True
    assert plan["topics"]["deliver.statistics.enterprise"] == "created"
    assert plan["topics"]["changes.enterprise"] == "unchanged"
    assert plan["new_schemas"] == ["deliver.statistics.enterprise"]
    assert plan["acls"]["created"] > 0
    assert plan["registry_users"] == "updated, registry restarted"
    assert any(
        c["path"].startswith("subscriptions[statistics.enterprise]") for c in plan["changes"]
    )

    client = admin.admin_client(stack.settings.bootstrap)
    assert "deliver.statistics.enterprise" not in admin.existing_topics(client)
    after = applied.latest(stack.settings.bootstrap)
    assert after is not None and before is not None and after.sha256 == before.sha256
    assert len(applied.history(stack.settings.bootstrap)) == history


def test_quality_lists_the_seeded_stale_names_as_json(stack: Stack) -> None:
    """The district's seed has two companies under outdated names: `govsync quality`
    reports each against market regulation's value, and filters by source and key."""
    result = govsync("quality", "--source", "district_services.enterprise", "--json")
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    seeded = {
        f["key"]: f
        for f in findings
        if f["field"] == "name" and f["other_value"].endswith("有限责任公司")
    }
    assert len(seeded) == 2, findings
    for key, finding in seeded.items():
        [(name,)] = stack.sql(
            "market_regulation", "SELECT ent_name FROM enterprise WHERE credit_code = %s", (key,)
        )
        assert finding["authoritative_source"] == "market_regulation.enterprise"
        assert finding["authoritative_value"] == name
    one = next(iter(seeded))
    narrowed = json.loads(govsync("quality", "--key", one, "--json").stdout)
    assert {f["key"] for f in narrowed} == {one}
