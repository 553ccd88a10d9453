"""The generated files of the state directory that govsync's own processes read, which each
one reads, and their export to a Kubernetes cluster (`govsync secrets export`).

On the embedded stack a process creates such a file on first use in ``<state>/secrets``
(streams/config/secrets.py). A pod cannot: its ``<state>/secrets`` is a read-only volume,
and were it writable, two worker replicas would each make a masking key of their own. So
the files are made once, on a trusted machine (`govsync up`, `topology apply`: ``make``),
exported as one Secret, the public keys the processes check signatures with as one
ConfigMap, and each Deployment mounts just the files its code reads (``reads``).

Not exported: the Kafka passwords (Strimzi's User Operator makes a Secret per KafkaUser),
the embedded stack's own services' (controller, Connect's REST API, MariaDB, the TLS
stores: no pod runs them), the signing keys (no process signs; whoever signs holds its
own) and the upstream nodes' passwords (issued there; operators create those Secrets).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel

from govsync.index import witness
from streams.config.settings import Settings
from streams.contract import signatures
from streams.kafka import credentials, lifecycle
from streams.model.topology import Topology
from streams.transform import masking

SECRET = "govsync-secrets"  # file name -> content, the files of <state>/secrets
PUBLIC_KEYS = "govsync-keys"  # file name -> content, the files of <state>/keys


class Reads(BaseModel, frozen=True):
    """What one process reads of the export: files of ``<state>/secrets``, and whether it
    checks signatures with the public keys of ``<state>/keys``."""

    secrets: tuple[str, ...] = ()
    public_keys: bool = False


def reads(topology: Topology, sinks: Iterable[str] = ()) -> dict[str, Reads]:
    """Per `govsync` command a Deployment runs (``worker``, ``api``, ``indexer``,
    ``monitor``, ``sink <department>`` for each of ``sinks``), the files its code reads:

    - worker: the registry as ``worker`` (every stage's codec); route, the masking key of
      each department with a subscription; ledger, the receipt key of whichever department
      a receipt names, so every department's (one missing would end the stage); requests,
      decisions and objections it checks with the public keys, as the topology in force.
    - api: the departments' login digests and the masking key of each department it may
      answer (one with a subscription); the topology in force (decisions).
    - indexer: the registry as ``indexer`` and the audit witness's database password.
    - monitor: the topology in force (decisions).
    - a sink: the registry as its department, and its department's receipt key.
    """
    subscribing = sorted({s.department for s in topology.subscriptions})
    masks = tuple(f"mask-{d}.key" for d in subscribing)  # masking.department_key
    return {
        "worker": Reads(
            secrets=(
                _registry(credentials.WORKER),
                *masks,
                *(_receipt(d) for d in sorted(topology.departments)),
            ),
            public_keys=True,
        ),
        "api": Reads(secrets=(credentials.LOGINS_FILE, *masks), public_keys=True),
        "indexer": Reads(
            secrets=(_registry(credentials.INDEXER), f"pg-{witness.AUDITOR}.password")
        ),
        "monitor": Reads(public_keys=True),
        **{
            f"sink {d}": Reads(secrets=(_registry(d), _receipt(d)))
            for d in sorted(sinks)  # connectors.sinks.SINKS, the caller's to pass
            if d in topology.departments  # another one's has no login here
        },
    }


def _registry(principal: str) -> str:
    return f"registry-{principal}.password"  # credentials.registry_password


def _receipt(department: str) -> str:
    return f"receipt-{department}.key"  # signatures.receipt_key


def make(settings: Settings, topology: Topology) -> None:
    """Each department's files: its login digest for the API, its signing key (the public
    half published in ``keys/``), masking and receipt keys. Made by every apply rather than
    by whichever process needs one first, so an export finds them all."""
    credentials.write_logins(settings, sorted(topology.departments))
    secrets = settings.path("secrets")
    for department in topology.departments:
        lifecycle.signing_key(settings, department)
        masking.department_key(secrets, department)
        signatures.receipt_key(secrets, department)


class Missing(Exception):
    """Files an export needs that the state directory does not hold."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        super().__init__(
            "the state directory lacks files the cluster's processes read; nothing was"
            " exported, nor made:\n"
            + "".join(f"  {path}\n" for path in paths)
            + "Make them on the trusted machine whose state this is: `govsync up` (the"
            " registry's and the audit witness's passwords) and `govsync topology apply`"
            " with this topology (each department's keys and API login), then export again."
        )


def manifests(
    settings: Settings, topology: Topology, sinks: Iterable[str], namespace: str
) -> list[dict]:
    """The Secret of every file a process reads (``reads``) and the ConfigMap of the
    departments' public keys, read from ``settings``' state directory as they are."""
    everything = reads(topology, sinks).values()
    names = sorted({name for r in everything for name in r.secrets})
    files = [settings.path("secrets", name) for name in names]
    keys = lifecycle.keys_dir(settings)
    # Every department's: the ledger checks requests and objections of any of them.
    public = [keys / f"{d}.pub" for d in sorted(topology.departments)]  # signatures.public_key
    missing = [path for path in (*files, *public) if not path.is_file()]
    if missing:
        raise Missing(missing)
    metadata = {"namespace": namespace, "labels": {"app.kubernetes.io/part-of": "govsync"}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, **metadata},
        "type": "Opaque",
        "data": {p.name: base64.b64encode(p.read_bytes()).decode() for p in files},
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": PUBLIC_KEYS, **metadata},
        "data": {p.name: p.read_text() for p in public},
    }
    return [secret, config_map]


def text(resources: list[dict]) -> str:
    """YAML documents, as `kubectl apply -f` takes them."""
    return "---\n".join(yaml.safe_dump(r, sort_keys=False) for r in resources)
