"""`govsync secrets export` and what the rendered Deployments mount of it: each mounts just
the files its process reads, and the process reads them from a read-only volume, making
and writing none (a pod's ``<state>/secrets`` is a read-only volume). The export itself
makes nothing: a file the state directory lacks exits 2."""

from __future__ import annotations

import base64
import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from connectors.sinks import SINKS, process_name
from govsync.api.app import Directory
from govsync.cli import app
from govsync.control import state_secrets, strimzi
from govsync.index import witness
from govsync.stack import registry
from streams.config.settings import REPO_ROOT, Settings
from streams.contract import signatures
from streams.kafka import applied, clients, credentials, lifecycle, serde
from streams.model.topology import Topology
from streams.worker import stage
from streams.worker.process import STAGES
from tests.unit.examples import PROVINCE, TOPOLOGY

KUBERNETES_VERSION = "1.37.0"  # as test_strimzi.py
# node -> its topology, the file it is loaded from, its render (with every reference sink,
# as `topology render` passes them: none is the province's).
RENDERS = {
    "city": (TOPOLOGY, REPO_ROOT / "topology.yaml"),
    "province": (PROVINCE, REPO_ROOT / "deploy" / "federation" / "province.yaml"),
}
RESOURCES = {node: strimzi.render(t, Settings(), sinks=SINKS) for node, (t, _) in RENDERS.items()}


# --- a read-only volume ---------------------------------------------------------------------

_READ_ONLY: set[str] = set()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_CHANGES = {
    "os.chmod",
    "os.link",
    "os.mkdir",
    "os.remove",
    "os.rename",
    "os.rmdir",
    "os.symlink",
    "os.truncate",
    "tempfile.mkdtemp",
    "tempfile.mkstemp",
}


def _refuse_changes(event: str, args: tuple[Any, ...]) -> None:
    """Any change under a read-only directory fails as on a read-only mount (EROFS): the
    tests may run as root, whom the directories' modes do not stop."""
    if event == "open":
        paths = [args[0]] if args[2] and args[2] & _WRITE_FLAGS else []
    else:
        paths = list(args) if event in _CHANGES else []
    for path in paths:
        if not isinstance(path, str | bytes | os.PathLike):
            continue  # a file descriptor
        where = os.path.abspath(os.fsdecode(path))
        if any(where == top or where.startswith(top + os.sep) for top in _READ_ONLY):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), where)


sys.addaudithook(_refuse_changes)


@contextmanager
def read_only(*directories: Path) -> Iterator[None]:
    """``directories`` as a pod's read-only volumes: modes 0500 and 0400, which stop any
    other user, and every change under them refused, which stops root."""
    paths = [p for d in directories for p in (d, *d.rglob("*"))]
    for path in paths:
        path.chmod(0o500 if path.is_dir() else 0o400)
    tops = {os.path.abspath(d) for d in directories}
    _READ_ONLY.update(tops)
    try:
        yield
    finally:
        _READ_ONLY.difference_update(tops)
        for path in paths:
            path.chmod(0o700 if path.is_dir() else 0o600)


def test_a_read_only_directory_refuses_changes_even_to_root(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("x")
    with read_only(tmp_path):
        assert (tmp_path / "a").read_text() == "x"
        with pytest.raises(OSError, match="Read-only"):
            (tmp_path / "b").write_text("y")
        with pytest.raises(OSError, match="Read-only"):
            signatures.receipt_key(tmp_path, "tax")  # made on first use
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


# --- the trusted machine, the export, the pod -----------------------------------------------


def _trusted(state: Path, topology: Topology) -> Settings:
    """A state directory as `govsync up` and `topology apply` leave it: the registry's
    users (registry.users_config), the audit witness's password (witness.ensure), the
    departments' keys and logins (access.apply)."""
    settings = Settings(state_dir=state)
    registry.users_config(settings, topology)
    witness.password(settings)
    state_secrets.make(settings, topology)
    return settings


def _export(monkeypatch: pytest.MonkeyPatch, state: Path, node: str, *args: str) -> Result:
    monkeypatch.setenv("GOVSYNC_STATE_DIR", str(state))
    command = ["secrets", "export", "--target", "kubernetes", "--file", str(RENDERS[node][1])]
    return CliRunner().invoke(app, [*command, *args])


def _deployments(node: str) -> list[dict]:
    return [r for r in RESOURCES[node] if r["kind"] == "Deployment"]


def _deployment(node: str, name: str) -> dict:
    (found,) = (d for d in _deployments(node) if d["metadata"]["name"] == name)
    return found


def _mounted(deployment: dict) -> tuple[set[str], bool]:
    """The files of the export a Deployment mounts, and whether it mounts the public keys."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    files = set()
    for source in volumes["secrets"]["projected"]["sources"]:
        if source["secret"]["name"] == state_secrets.SECRET:
            items = source["secret"]["items"]
            assert all(item["key"] == item["path"] for item in items)  # the file names
            files |= {item["path"] for item in items}
    keys = volumes.get("keys") == {"name": "keys", "configMap": {"name": "govsync-keys"}}
    return files, keys


def _mount(deployment: dict, exported: list[dict], pod: Path) -> None:
    """What the kubelet puts in the pod's state directory ``pod``: each projected Secret's
    items and the public keys at the container's mount paths. The export's Secret holds
    the exported files, the User Operator's and the peers' a password each."""
    secret, keys = exported
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    at = {
        m["name"]: pod / Path(m["mountPath"]).relative_to(strimzi.STATE_DIR)
        for m in spec["containers"][0]["volumeMounts"]
    }
    at["secrets"].mkdir(parents=True)
    for source in volumes["secrets"]["projected"]["sources"]:
        if source["secret"]["name"] == secret["metadata"]["name"]:
            data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        else:
            data = {"password": os.urandom(32).hex().encode()}
        for item in source["secret"]["items"]:
            (at["secrets"] / item["path"]).write_bytes(data[item["key"]])
    if "keys" in volumes:
        assert volumes["keys"]["configMap"]["name"] == keys["metadata"]["name"]
        at["keys"].mkdir(parents=True)
        for name, text in keys["data"].items():
            (at["keys"] / name).write_text(text)


def _in_pod(monkeypatch: pytest.MonkeyPatch, node: str, deployment: dict, pod: Path) -> Settings:
    """The pod's environment (the ConfigMap, the container's variables), its state
    directory at ``pod``: what Settings.from_env gives each of its processes."""
    for name in [n for n in os.environ if n.startswith("GOVSYNC_")]:
        monkeypatch.delenv(name)
    (config,) = (r for r in RESOURCES[node] if r["kind"] == "ConfigMap")
    for name, value in config["data"].items():
        monkeypatch.setenv(name, value)
    for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
        monkeypatch.setenv(variable["name"], variable.get("value", "10.1.2.3"))  # or podIP
    monkeypatch.setenv("GOVSYNC_STATE_DIR", str(pod))
    return Settings.from_env()


def _reads_as(
    command: list[str], settings: Settings, topology: Topology, trusted: Settings
) -> None:
    """What `govsync <command>` reads of the state directory, through the functions its
    code reads them with (see state_secrets.reads)."""
    secrets, keys = settings.path("secrets"), lifecycle.keys_dir(settings)
    subscribing = sorted({s.department for s in topology.subscriptions})
    process = command[0]
    department = command[1] if process == "sink" else None
    if process in ("worker", "api", "monitor"):  # the topology in force: decisions
        assert signatures.public_key(keys, topology.authority or "") is not None
    if process == "worker":
        for name in STAGES:  # each stage as its process builds it
            stage.build(name, settings, topology)
        upstreams = topology.federation.upstreams if topology.federation else []
        assert set(serde.upstream_codecs(settings, topology)) == {u.node for u in upstreams}
        for signer in topology.departments:
            signatures.receipt_key(secrets, signer)  # the ledger, a receipt naming it
            assert signatures.public_key(keys, signer) is not None  # requests, objections
        clients.config(settings.bootstrap, credentials.LEDGER)
    elif process == "api":
        directory = Directory(settings)
        for one in subscribing:
            directory.mask_key(one)
            login = f"{one}:{credentials.password(trusted, one)}"
            assert directory.login(f"Basic {base64.b64encode(login.encode()).decode()}") == one
    elif process == "indexer":
        serde.registry_client(settings)
        assert "password=" in witness.conninfo(settings)
    elif department is not None:  # a sink
        as_department = settings.model_copy(update={"kafka_principal": department})
        serde.registry_client(as_department)
        signatures.receipt_key(secrets, department)
    clients.config(settings.bootstrap, department)  # as the process's principal


# --- the tests ------------------------------------------------------------------------------


def test_each_deployment_mounts_just_the_files_its_process_reads() -> None:
    masks = {f"mask-{s.department}.key" for s in TOPOLOGY.subscriptions}
    receipts = {f"receipt-{d}.key" for d in TOPOLOGY.departments}
    expected = {
        "govsync-worker": ({"registry-worker.password", *masks, *receipts}, True),
        "govsync-api": ({"api-logins.json", *masks}, True),
        "govsync-indexer": ({"registry-indexer.password", "pg-govsync_auditor.password"}, False),
        "govsync-monitor": (set(), True),
    } | {
        # Its own department's receipt key, not another's.
        f"govsync-{process_name(d)}": ({f"registry-{d}.password", f"receipt-{d}.key"}, False)
        for d in SINKS
    }
    assert {d["metadata"]["name"]: _mounted(d) for d in _deployments("city")} == expected


def test_a_node_runs_no_reference_sink_of_a_department_it_does_not_have() -> None:
    deployments = {d["metadata"]["name"] for d in _deployments("province")}
    assert deployments == {"govsync-worker", "govsync-api", "govsync-indexer", "govsync-monitor"}


@pytest.mark.parametrize(
    ("node", "name"),
    [(node, d["metadata"]["name"]) for node in RENDERS for d in _deployments(node)],
)
def test_each_process_reads_its_files_from_its_read_only_mounts(
    node: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exported from a trusted machine's state (which the export leaves as it was), mounted
    as the Deployment says, read by the process's own code: the same files, and nothing
    created or written (a mask key made in the pod would differ from the other replica's)."""
    topology = RENDERS[node][0]
    trusted = _trusted(tmp_path / "trusted", topology)
    with read_only(trusted.state_dir):
        result = _export(monkeypatch, trusted.state_dir, node)
    assert result.exit_code == 0, result.output
    deployment = _deployment(node, name)
    pod = tmp_path / "pod"
    _mount(deployment, list(yaml.safe_load_all(result.stdout)), pod)
    files, _ = _mounted(deployment)
    for file in files:  # as made on the trusted machine, byte for byte
        assert (pod / "secrets" / file).read_bytes() == trusted.path("secrets", file).read_bytes()
    settings = _in_pod(monkeypatch, node, deployment, pod)
    monkeypatch.setattr(
        applied, "in_force", lambda _: applied.InForce(topology=topology, applied=None)
    )
    mounted = [d for d in (pod / "secrets", pod / "keys") if d.exists()]
    with read_only(*mounted):
        _reads_as(
            deployment["spec"]["template"]["spec"]["containers"][0]["args"],
            settings,
            topology,
            trusted,
        )


def test_the_export_holds_what_the_deployments_mount_and_no_kafka_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = _trusted(tmp_path, TOPOLOGY)
    result = _export(monkeypatch, tmp_path, "city", "--namespace", "govsync-test")
    assert result.exit_code == 0, result.output
    secret, keys = yaml.safe_load_all(result.stdout)
    for resource in (secret, keys):
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert resource["metadata"]["namespace"] == "govsync-test"
    assert set(secret["data"]) == set().union(*(_mounted(d)[0] for d in _deployments("city")))
    # The User Operator's; no process signs; the embedded stack's own services'.
    assert not [
        f for f in secret["data"] if f.startswith(("kafka-", "signing-", "connect-", "mariadb-"))
    ]
    assert set(keys["data"]) == {f"{d}.pub" for d in TOPOLOGY.departments}
    tax = base64.b64decode(secret["data"]["receipt-tax.key"]).decode()
    assert tax == trusted.path("secrets", "receipt-tax.key").read_text()


def test_an_export_to_a_file_is_its_owners_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = _trusted(tmp_path / "state", TOPOLOGY)
    output = tmp_path / "out" / "govsync-secrets.yaml"
    result = _export(monkeypatch, trusted.state_dir, "city", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert output.stat().st_mode & 0o777 == 0o600
    secret, _ = yaml.safe_load_all(output.read_text())
    assert set(secret["data"]) <= {p.name for p in trusted.path("secrets").iterdir()}
    assert not any(value in result.output for value in secret["data"].values())


def test_a_missing_file_exits_2_naming_it_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trusted = _trusted(tmp_path, TOPOLOGY)
    receipt, key = trusted.path("secrets", "receipt-tax.key"), trusted.path("keys", "tax.pub")
    receipt.unlink()
    key.unlink()
    before = sorted(tmp_path.rglob("*"))
    result = _export(monkeypatch, tmp_path, "city")
    assert result.exit_code == 2
    assert f"  {receipt}\n" in result.stderr and f"  {key}\n" in result.stderr
    assert "`govsync up`" in result.stderr and "`govsync topology apply`" in result.stderr
    assert result.stdout == ""
    assert sorted(tmp_path.rglob("*")) == before


def test_an_unknown_target_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOVSYNC_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["secrets", "export", "--target", "helm"])
    assert result.exit_code == 2
    assert "Invalid value for '--target'" in result.output
