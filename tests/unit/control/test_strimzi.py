"""deploy/kubernetes/strimzi/, checked without a cluster: each custom resource against the
vendored Strimzi CRD's schema, each built-in one against Kubernetes' own, the committed
files against a fresh render, and the KafkaUsers' ACLs against the embedded stack's. The
same checks for the federated example deploy/federation/province.yaml, whose render adds a
KafkaMirrorMaker2, and for a standby node of either, compared with the embedded standby."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from connectors.sinks import SINKS, process_name
from govsync.control import access, strimzi
from govsync.stack import mirror, standby
from streams.config import tls
from streams.config.settings import REPO_ROOT, Settings
from streams.contract.topics import (
    STANDBY_SOURCE,
    STANDBY_TARGET,
    mirrored_topic,
    upstream_delivery_topic,
)
from streams.kafka import credentials
from tests.unit.examples import PROVINCE, TOPOLOGY
from tests.unit.stack.test_mirror import properties

CRDS = REPO_ROOT / "deploy" / "kubernetes" / "crds" / "strimzi-1.2.0"
KUBERNETES_VERSION = "1.37.0"  # the newest kubernetes-validate 1.37.0 bundles
DURING = datetime(2026, 12, 1, tzinfo=UTC)  # every example subscription is active
RESOURCES = strimzi.render(TOPOLOGY, Settings(), at=DURING, sinks=SINKS)
# A receiving node (load_topology of deploy/federation/province.yaml): the city upstream.
PROVINCE_RESOURCES = strimzi.render(PROVINCE, Settings(), at=DURING)
RENDERS = {"city": (TOPOLOGY, RESOURCES), "province": (PROVINCE, PROVINCE_RESOURCES)}
PRIMARY_BOOTSTRAP = "kafka.primary.example.gov.cn:9094"  # as the standby's cluster reaches it
# A standby node of each: the city's as test_standby rehearses it, the province's federated.
STANDBYS = {
    node: strimzi.render_standby(topology, Settings(), PRIMARY_BOOTSTRAP, at=DURING)
    for node, (topology, _) in RENDERS.items()
}


def _structural(schema: Any) -> Any:
    """A CRD's OpenAPI v3 structural schema as JSON Schema, as strict as the API server
    with field validation: unknown fields are refused (where the schema does not preserve
    them), ``nullable`` admits null, ``x-kubernetes-*`` keys are dropped."""
    if isinstance(schema, list):
        return [_structural(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {
        key: value if key in ("enum", "required", "pattern", "default") else _structural(value)
        for key, value in schema.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if schema.get("x-kubernetes-int-or-string"):
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    if (
        schema.get("type") == "object"  # not the value validations of oneOf and the like
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        converted["additionalProperties"] = False
    return converted


@cache
def _crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the served version's schema, for every vendored CRD."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in crd["spec"]["versions"]:
            if version["served"]:
                api = f"{crd['spec']['group']}/{version['name']}"
                schema = _structural(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object"}  # the API server's part
                schemas[api, crd["spec"]["names"]["kind"]] = schema
    return schemas


def _validate_custom(resource: dict) -> None:
    schema = _crd_schemas()[resource["apiVersion"], resource["kind"]]
    jsonschema.validate(resource, schema, cls=jsonschema.Draft4Validator)


def _as_json(resource: dict) -> dict:
    """As kubectl sends it: YAML parsed to JSON types (no Python-only values)."""
    return json.loads(json.dumps(resource))


def _custom(resource: dict) -> bool:
    return resource["apiVersion"].startswith("kafka.strimzi.io/")


def test_the_vendored_crds_cover_every_custom_kind_rendered() -> None:
    kinds = {(r["apiVersion"], r["kind"]) for r in RESOURCES + PROVINCE_RESOURCES if _custom(r)}
    assert kinds <= set(_crd_schemas())
    assert {kind for _, kind in kinds} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaConnect",
        "KafkaConnector",
        "KafkaTopic",
        "KafkaUser",
        "KafkaMirrorMaker2",
    }


def _each(custom: bool) -> list[Any]:
    """Every rendered resource of ``TOPOLOGY`` and of ``PROVINCE``, and of their standby
    nodes, that is (not) custom."""
    renders = {node: resources for node, (_, resources) in RENDERS.items()} | {
        f"{node}-standby": resources for node, resources in STANDBYS.items()
    }
    return [
        pytest.param(r, id=f"{node}:{r['kind']}/{r['metadata']['name']}")
        for node, resources in renders.items()
        for r in resources
        if _custom(r) == custom
    ]


@pytest.mark.parametrize("resource", _each(custom=True))
def test_custom_resources_validate_against_strimzis_crds(resource: dict) -> None:
    _validate_custom(_as_json(resource))


@pytest.mark.parametrize("resource", _each(custom=False))
def test_built_in_resources_validate_against_kubernetes_schemas(resource: dict) -> None:
    kubernetes_validate.validate(_as_json(resource), KUBERNETES_VERSION, strict=True)


def test_a_broken_resource_is_refused() -> None:
    topic = copy.deepcopy(next(r for r in RESOURCES if r["kind"] == "KafkaTopic"))
    topic["spec"]["partitions"] = "six"
    with pytest.raises(jsonschema.ValidationError, match="six"):
        _validate_custom(topic)
    user = copy.deepcopy(next(r for r in RESOURCES if r["kind"] == "KafkaUser"))
    user["spec"]["authentication"]["typo"] = "scram-sha-512"
    with pytest.raises(jsonschema.ValidationError, match="typo"):
        _validate_custom(user)
    mirror_maker = copy.deepcopy(
        next(r for r in PROVINCE_RESOURCES if _custom(r) and "mirrors" in r["spec"])
    )
    mirror_maker["spec"]["mirrors"][0]["topicPattern"] = "deliver[.]province[.].*"
    with pytest.raises(jsonschema.ValidationError, match="topicPattern"):
        _validate_custom(mirror_maker)
    deployment = copy.deepcopy(next(r for r in RESOURCES if r["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("node", RENDERS)
def test_kafkauser_acls_equal_the_embedded_stacks(node: str) -> None:
    topology, resources = RENDERS[node]
    principal_of = {credentials.kubernetes_name(p): p for p in access.principals(topology)}
    resource_type_of = {name: kind for kind, name in strimzi.RESOURCE_TYPES.items()}
    pattern_of = {name: pattern for pattern, name in strimzi.PATTERN_TYPES.items()}
    operation_of = {strimzi.operation_name(op): op for op in AclOperation}
    rendered = set()
    users = [r for r in resources if r["kind"] == "KafkaUser"]
    for user in users:
        for acl in user["spec"].get("authorization", {}).get("acls", []):
            resource = acl["resource"]
            assert acl["host"] == "*"
            rendered |= {
                (
                    principal_of[user["metadata"]["name"]],
                    resource_type_of[resource["type"]],
                    resource.get("name", "kafka-cluster"),
                    pattern_of[resource["patternType"]],
                    operation_of[operation],
                )
                for operation in acl["operations"]
            }
    assert rendered == access.grants(topology, DURING)
    # MirrorMaker's login only where federation gives it ACLs.
    expected = [n for n in principal_of if n != "mirror" or topology.federation is not None]
    assert sorted(u["metadata"]["name"] for u in users) == sorted(["admin", *expected])


@pytest.mark.parametrize("node", RENDERS)
def test_topics_are_the_ones_apply_creates(node: str) -> None:
    from streams.contract.topics import topic_specs

    topology, resources = RENDERS[node]
    rendered = {
        r["spec"]["topicName"]: (r["spec"]["partitions"], r["spec"]["config"])
        for r in resources
        if r["kind"] == "KafkaTopic"
    }
    assert rendered == {s.name: (s.partitions, s.config) for s in topic_specs(topology)}


def test_connectors_hold_no_embedded_addresses_or_secret_files() -> None:
    text = json.dumps([r for r in RESOURCES if r["kind"] == "KafkaConnector"])
    assert "${file:" not in text
    assert Settings().host not in text
    assert "${secrets:govsync/connect:password}" in text


def test_committed_files_match_a_fresh_render() -> None:
    hint = "deploy/kubernetes/strimzi/ is stale: run `govsync topology render --target strimzi`"
    expected = strimzi.files(strimzi.render(TOPOLOGY, Settings(), sinks=SINKS))
    directory = Path(strimzi.OUTPUT_DIR)
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.yaml")}
    assert committed == expected, hint


def test_an_unknown_target_is_refused() -> None:
    from typer.testing import CliRunner

    from govsync.cli import app

    result = CliRunner().invoke(app, ["topology", "render", "--target", "helm"])
    assert result.exit_code == 2
    assert "unknown target 'helm'" in result.output


def test_every_reference_sink_runs_under_its_embedded_name() -> None:
    deployments = {r["metadata"]["name"] for r in RESOURCES if r["kind"] == "Deployment"}
    assert {f"govsync-{process_name(d)}" for d in SINKS} <= deployments


def _mirror_makers(resources: list[dict]) -> list[dict]:
    return [r for r in resources if r["kind"] == "KafkaMirrorMaker2"]


def test_a_node_without_upstreams_runs_no_mirror_maker() -> None:
    assert TOPOLOGY.federation is None
    assert _mirror_makers(RESOURCES) == []
    assert "mirror" not in {r["metadata"]["name"] for r in RESOURCES if r["kind"] == "KafkaUser"}
    assert "kafkamirrormaker2.yaml" not in strimzi.files(RESOURCES)


def test_a_receiving_node_mirrors_each_upstreams_deliveries() -> None:
    assert PROVINCE.federation is not None
    (resource,) = _mirror_makers(PROVINCE_RESOURCES)
    assert resource["apiVersion"] == "kafka.strimzi.io/v1"
    assert resource["metadata"]["name"] == "govsync-mirror-city"
    spec = resource["spec"]
    target = spec["target"]
    assert target["alias"] == "province-local"  # not the node: see mirror_target_alias
    assert target["bootstrapServers"] == strimzi.BOOTSTRAP
    assert target["authentication"] == {
        "type": "scram-sha-512",
        "username": "mirror",
        # The Secret the User Operator makes for the KafkaUser of the same name.
        "passwordSecret": {"secretName": "mirror", "password": "password"},
    }
    (mirror_spec,) = spec["mirrors"]
    source = mirror_spec["source"]
    assert source["alias"] == "city"
    assert source["bootstrapServers"] == "127.0.0.1:19092"
    assert source["authentication"] == {
        "type": "scram-sha-512",
        "username": "province",
        "passwordSecret": {"secretName": "govsync-peer-city-kafka", "password": "password"},
    }
    assert mirror_spec["topicsPattern"] == "deliver[.]province[.]enterprise"
    config = mirror_spec["sourceConnector"]["config"]
    assert config["replication.policy.class"].endswith(".DefaultReplicationPolicy")
    assert config["offset-syncs.topic.location"] == "target"
    assert config["consumer.isolation.level"] == "read_committed"
    assert config["replication.factor"] == -1
    assert not config["sync.topic.acls.enabled"] and not config["sync.topic.configs.enabled"]
    assert "checkpointConnector" not in mirror_spec  # no checkpoints, no group offset sync


def test_mirrored_topics_are_kafkatopics_the_pattern_selects_exactly() -> None:
    """The pattern selects each delivery to this node and nothing else (MirrorMaker
    matches whole names), and the policy's ``<alias>.`` prefix makes of each a mirrored
    topic, which is a KafkaTopic (made before MirrorMaker runs, as `apply` does)."""
    topics = {r["spec"]["topicName"] for r in PROVINCE_RESOURCES if r["kind"] == "KafkaTopic"}
    (resource,) = _mirror_makers(PROVINCE_RESOURCES)
    (mirror_spec,) = resource["spec"]["mirrors"]
    pattern = re.compile(mirror_spec["topicsPattern"])
    for inbound in PROVINCE.inbound:
        delivered = upstream_delivery_topic(inbound)
        assert pattern.fullmatch(delivered)
        assert f"{mirror_spec['source']['alias']}.{delivered}" == mirrored_topic(inbound)
        assert mirrored_topic(inbound) in topics
    for other in ("deliver.province.enterprise2", "deliverXprovince.enterprise", "deliver.tax.x"):
        assert not pattern.fullmatch(other)


def _java(value: Any) -> str:
    """A setting as Java reads it from a .properties file: true/false, -1, class names."""
    return json.dumps(value) if isinstance(value, bool) else str(value)


def test_the_mirror_behaves_as_the_embedded_stacks(tmp_path: Path) -> None:
    """The settings govsync/stack/mirror.py writes for the same flow, read back."""
    settings = Settings(state_dir=tmp_path)
    peer = credentials.peer_password_file(settings, "city", "kafka")
    peer.parent.mkdir(parents=True, exist_ok=True)
    peer.write_text("issued-by-the-city\n")
    embedded = properties(mirror.render(settings, PROVINCE) or "")
    (resource,) = _mirror_makers(PROVINCE_RESOURCES)
    (mirror_spec,) = resource["spec"]["mirrors"]
    config = mirror_spec["sourceConnector"]["config"]
    assert embedded["city->province-local.topics"].split(", ") == mirror_spec[
        "topicsPattern"
    ].split("|")
    assert embedded["city.consumer.isolation.level"] == config["consumer.isolation.level"]
    for key in (
        "replication.policy.class",
        "replication.factor",
        "offset-syncs.topic.location",
        "offset-syncs.topic.replication.factor",
        "refresh.topics.interval.seconds",
        "sync.topic.acls.enabled",
        "sync.topic.configs.enabled",
    ):
        assert embedded[key] == _java(config[key]), key
    assert int(embedded["tasks.max"]) == mirror_spec["sourceConnector"]["tasksMax"]
    target = resource["spec"]["target"]
    assert int(embedded["offset.flush.interval.ms"]) == target["config"]["offset.flush.interval.ms"]


def test_the_mirrors_connect_worker_uses_what_its_acls_allow() -> None:
    """Group ``<upstream>-mm2`` and ``mm2-*`` topics, as the embedded stack's flows."""
    (resource,) = _mirror_makers(PROVINCE_RESOURCES)
    target = resource["spec"]["target"]
    grants = {g for g in access.grants(PROVINCE, DURING) if g[0] == credentials.MIRROR}
    groups = {name for _, kind, name, _, _ in grants if kind == ResourceType.GROUP}
    prefixes = {
        name
        for _, kind, name, pattern, _ in grants
        if kind == ResourceType.TOPIC and pattern == ResourcePatternType.PREFIXED
    }
    assert target["groupId"] in groups
    for key in ("configStorageTopic", "offsetStorageTopic", "statusStorageTopic"):
        assert any(target[key].startswith(p) for p in prefixes)


def test_the_worker_reads_each_upstreams_registry_password() -> None:
    worker = next(r for r in PROVINCE_RESOURCES if r["metadata"]["name"] == "govsync-worker")
    volumes = worker["spec"]["template"]["spec"]["volumes"]
    sources = next(v for v in volumes if v["name"] == "secrets")["projected"]["sources"]
    assert {
        "secret": {
            "name": "govsync-peer-city-registry",
            "items": [{"key": "password", "path": "peer-city-registry.password"}],
        }
    } in sources


def test_a_mirror_maker_no_longer_rendered_is_removed(tmp_path: Path) -> None:
    strimzi.write(PROVINCE_RESOURCES, tmp_path)
    assert (tmp_path / "kafkamirrormaker2.yaml").exists()
    strimzi.write(RESOURCES, tmp_path)
    assert not (tmp_path / "kafkamirrormaker2.yaml").exists()


def _standby_mirror(resources: list[dict]) -> dict:
    (resource,) = (
        r for r in _mirror_makers(resources) if r["metadata"]["name"] == strimzi.STANDBY_MIRROR
    )
    return resource


def test_a_standby_logs_in_as_admin_here_and_with_the_primarys_secrets_there() -> None:
    spec = _standby_mirror(STANDBYS["city"])["spec"]
    target = spec["target"]
    assert (target["alias"], target["bootstrapServers"]) == (STANDBY_TARGET, strimzi.BOOTSTRAP)
    assert target["tls"] == {
        "trustedCertificates": [{"secretName": strimzi.CLUSTER_CA_SECRET, "pattern": "*.crt"}]
    }
    assert target["authentication"] == {
        "type": "scram-sha-512",
        "username": "admin",
        "passwordSecret": {"secretName": "admin", "password": "password"},  # User Operator's
    }
    # MirrorMaker's Connect group and topics as the embedded one's flow names them.
    assert target["groupId"] == "primary-mm2"
    assert target["offsetStorageTopic"] == "mm2-offsets.primary.internal"
    (mirror_spec,) = spec["mirrors"]
    source = mirror_spec["source"]
    assert (source["alias"], source["bootstrapServers"]) == (STANDBY_SOURCE, PRIMARY_BOOTSTRAP)
    assert source["tls"] == {
        "trustedCertificates": [
            {"secretName": "govsync-primary-cluster-ca-cert", "pattern": "*.crt"}
        ]
    }
    assert source["authentication"] == {
        "type": "scram-sha-512",
        "username": "admin",
        "passwordSecret": {"secretName": "govsync-primary-admin", "password": "password"},
    }


# Strimzi's names for what its fields become in each connector's config
# (KafkaMirrorMaker2Connectors).
_PATTERNS = {
    "topicsPattern": "topics",
    "topicsExcludePattern": "topics.exclude",
    "groupsPattern": "groups",
    "groupsExcludePattern": "groups.exclude",
}


def _effective(resource: dict) -> dict[str, str]:
    """A KafkaMirrorMaker2 of one mirror as MirrorMaker's properties: what Strimzi makes of
    its fields, its connectors' and Connect's config, each cluster's address, transport
    and SASL mechanism under its alias; no passwords. A key two places set must agree."""
    spec = resource["spec"]
    (mirror_spec,) = spec["mirrors"]
    source, target = mirror_spec["source"], spec["target"]
    effective: dict[str, str] = {}

    def put(key: str, value: Any) -> None:
        assert effective.setdefault(key, _java(value)) == _java(value), key

    put("clusters", f"{source['alias']}, {target['alias']}")
    put(f"{source['alias']}->{target['alias']}.enabled", True)
    for field, key in _PATTERNS.items():
        if field in mirror_spec:
            put(key, mirror_spec[field])
    for cluster in (source, target):
        alias = cluster["alias"]
        put(f"{alias}.bootstrap.servers", cluster["bootstrapServers"])
        put(f"{alias}.security.protocol", "SASL_SSL" if "tls" in cluster else "SASL_PLAINTEXT")
        put(f"{alias}.sasl.mechanism", cluster["authentication"]["type"].upper())
    for key, value in target["config"].items():
        put(key, value)
    for connector in ("sourceConnector", "checkpointConnector"):
        put("tasks.max", mirror_spec[connector]["tasksMax"])
        for key, value in mirror_spec[connector]["config"].items():
            # The connectors consume at the source.
            put(f"{source['alias']}.{key}" if key.startswith("consumer.") else key, value)
    return effective


# The embedded standby's settings the Kubernetes one has not, and why.
_NOT_RENDERED = {
    "primary.sasl.jaas.config": "Strimzi writes the logins from the Secrets",
    "standby.sasl.jaas.config": "Strimzi writes the logins from the Secrets",
    "standby->primary.enabled": "Strimzi runs the mirrors listed, none back",
    "emit.heartbeats.enabled": "Strimzi's v1 KafkaMirrorMaker2 runs no heartbeat connector",
    "heartbeats.topic.replication.factor": "no heartbeat connector",
}
# Where the standby's Kafka is, and the transport: TLS on Strimzi, which offers no other.
_ELSEWHERE = {"standby.bootstrap.servers", "primary.security.protocol", "standby.security.protocol"}


def test_the_standby_mirror_behaves_as_the_embedded_one(tmp_path: Path) -> None:
    """Every setting govsync/stack/standby.py writes, read back, is the rendered one's, but
    those listed above."""
    primary = standby.Primary(bootstrap=PRIMARY_BOOTSTRAP, registry="http://primary:8080")
    embedded = properties(standby.render(Settings(state_dir=tmp_path), primary))
    rendered = _effective(_standby_mirror(STANDBYS["city"]))
    assert set(embedded) - set(rendered) == set(_NOT_RENDERED)
    assert set(rendered) == set(embedded) - set(_NOT_RENDERED)
    for key in set(rendered) - _ELSEWHERE:
        assert rendered[key] == embedded[key], key
    for alias in (STANDBY_SOURCE, STANDBY_TARGET):
        assert f'username="{credentials.ADMIN}"' in embedded[f"{alias}.sasl.jaas.config"]
        assert rendered[f"{alias}.security.protocol"] == "SASL_SSL"


@pytest.mark.parametrize("node", RENDERS)
def test_a_standby_runs_only_what_follow_runs_until_the_take_over(node: str) -> None:
    """Its Kafka, users and ACLs, ConfigMap and indexer are the primary's render's; its
    only MirrorMaker copies from the primary (federation's start at the take-over)."""
    _, resources = RENDERS[node]
    assert strimzi.STANDBY_MIRROR not in {r["metadata"]["name"] for r in resources}
    following = STANDBYS[node]
    assert [r["metadata"]["name"] for r in _mirror_makers(following)] == [strimzi.STANDBY_MIRROR]
    others = [r for r in following if r["kind"] != "KafkaMirrorMaker2"]
    assert all(r in resources for r in others)
    assert {r["kind"] for r in others} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaUser",
        "ConfigMap",
        "Deployment",
    }
    assert [d["metadata"]["name"] for d in _deployments(following)] == ["govsync-indexer"]


def test_a_standby_is_rendered_only_into_a_directory_named(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from govsync.cli import app

    command = ["topology", "render", "--target", "strimzi", "--standby-of", PRIMARY_BOOTSTRAP]
    command += ["--file", str(REPO_ROOT / "topology.yaml")]
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 2
    assert "--standby-of needs --output" in refused.output
    result = CliRunner().invoke(app, [*command, "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    expected = strimzi.files(STANDBYS["city"])
    assert {p.name for p in tmp_path.iterdir()} == set(expected)
    name = "kafkamirrormaker2.yaml"
    assert (tmp_path / name).read_text(encoding="utf-8") == expected[name]


def _deployments(resources: list[dict]) -> list[dict]:
    return [r for r in resources if r["kind"] == "Deployment"]


def _configured(resources: list[dict]) -> Settings:
    """The settings the rendered ConfigMap gives a process (with its pod's address)."""
    config = next(r for r in resources if r["kind"] == "ConfigMap")["data"]
    return Settings.model_validate(
        {k.removeprefix("GOVSYNC_").lower(): v for k, v in config.items()} | {"host": "10.1.2.3"}
    )


def test_the_processes_reach_each_service_at_its_own_address() -> None:
    config = next(r for r in RESOURCES if r["kind"] == "ConfigMap")["data"]
    assert config["GOVSYNC_KAFKA_BOOTSTRAP"] == strimzi.BOOTSTRAP
    assert config["GOVSYNC_KAFKA_TLS"] == "true"
    assert config["GOVSYNC_REGISTRY_BASE"] == strimzi.REGISTRY_URL
    assert config["GOVSYNC_BIND_HOST"] == "0.0.0.0"
    assert "GOVSYNC_HOST" not in config
    settings = _configured(RESOURCES)
    assert settings.bootstrap == "govsync-kafka-bootstrap:9093"
    assert settings.kafka_protocol == "SASL_SSL"
    assert settings.registry_url == "http://govsync-registry:8080/apis/ccompat/v7"
    assert settings.listen_host == "0.0.0.0"
    assert settings.pg_conninfo("govsync_index").startswith("host=govsync-db port=5432 ")


def test_kubernetes_names_hold_no_underscore() -> None:
    assert credentials.kubernetes_name("social_security") == "social-security"
    assert credentials.kubernetes_name("Province_City.Tax") == "province-city.tax"
    assert credentials.kubernetes_name("worker") == "worker"


def test_a_principal_logs_in_under_its_id_unless_told_its_kubernetes_name(tmp_path: Path) -> None:
    embedded = Settings(state_dir=tmp_path)
    assert embedded.kafka_login_names == "id"
    assert credentials.librdkafka(embedded, "social_security")["sasl.username"] == "social_security"
    on_kubernetes = embedded.model_copy(update={"kafka_login_names": "kubernetes"})
    config = credentials.librdkafka(on_kubernetes, "social_security")
    assert config["sasl.username"] == "social-security"
    # The password file keeps the id: both read the same one.
    assert config["sasl.password"] == credentials.password(embedded, "social_security")
    assert (tmp_path / "secrets" / "kafka-social_security.password").exists()
    with pytest.raises(ValueError, match="GOVSYNC_KAFKA_LOGIN_NAMES"):
        Settings(kafka_login_names="k8s")


def test_every_deployment_advertises_its_pods_address_and_reads_the_configmap() -> None:
    for deployment in _deployments(RESOURCES):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": "govsync"}}]
        assert {
            "name": "GOVSYNC_HOST",
            "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
        } in container["env"]


def test_each_process_logs_in_as_its_kafkauser_with_its_password_over_the_cluster_ca() -> None:
    principals = {
        "govsync-worker": [credentials.WORKER, credentials.LEDGER],
        "govsync-api": [credentials.API],
        "govsync-indexer": [credentials.INDEXER],
        "govsync-monitor": [credentials.ADMIN],
    } | {f"govsync-{process_name(d)}": [d] for d in SINKS}
    users = {r["metadata"]["name"] for r in RESOURCES if r["kind"] == "KafkaUser"}
    state = _configured(RESOURCES)
    assert state.state_dir == Path(strimzi.STATE_DIR)
    for deployment in _deployments(RESOURCES):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        sources = volumes["secrets"]["projected"]["sources"]
        for principal in principals[name]:
            secret = {
                "name": credentials.kubernetes_name(principal),
                "items": [{"key": "password", "path": f"kafka-{principal}.password"}],
            }
            assert {"secret": secret} in sources, (name, principal)
            assert secret["name"] in users  # the User Operator's Secret, named as the user
            assert credentials.login_name(state, principal) == secret["name"]  # its SCRAM user
            path = Path(mounts["secrets"]) / f"kafka-{principal}.password"
            assert path == state.path("secrets", f"kafka-{principal}.password")
        ca = volumes["cluster-ca"]["secret"]
        assert ca == {
            "secretName": strimzi.CLUSTER_CA_SECRET,
            "items": [{"key": "ca.crt", "path": "ca.pem"}],
        }
        assert Path(mounts["cluster-ca"]) / "ca.pem" == tls.ca_pem(state)
    # An id with `_`: KafkaUser, Secret and SCRAM user social-security, the file the id's.
    (sink,) = (
        d
        for d in _deployments(RESOURCES)
        if d["metadata"]["name"] == "govsync-social-security-sink"
    )
    volumes = {v["name"]: v for v in sink["spec"]["template"]["spec"]["volumes"]}
    mapped = {
        "name": "social-security",
        "items": [{"key": "password", "path": "kafka-social_security.password"}],
    }
    assert {"secret": mapped} in volumes["secrets"]["projected"]["sources"]
    assert credentials.login_name(state, "social_security") == "social-security"
