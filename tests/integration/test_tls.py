"""TLS by flag: with GOVSYNC_KAFKA_TLS the broker's client listener is SASL over TLS with
a generated certificate; with GOVSYNC_REGISTRY_TLS the schema registry answers HTTPS only,
with the same certificate. A second broker, or registry, on other ports and its own state
directory (sharing the downloaded distribution, and the stack's PostgreSQL) is started,
used and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config.settings import REPO_ROOT
from tests.integration.conftest import Stack

PROBE = """
import json, time
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.cimpl import KafkaException
from streams.kafka import clients
from streams.config.settings import Settings
from govsync.stack import kafka, supervision

settings = Settings.from_env()
kafka.start(settings)
try:
    config = clients.config(settings.bootstrap, log_level=0)
    client = AdminClient(config)
    client.create_topics([NewTopic("tls-probe", 1, 1)])["tls-probe"].result(30)
    # The controller has the topic; the broker's metadata may learn of it a moment later.
    deadline = time.monotonic() + 15
    listed = False
    while not listed and time.monotonic() < deadline:
        listed = "tls-probe" in client.list_topics(timeout=10).topics
        time.sleep(0 if listed else 0.5)
    plain = AdminClient({**config, "security.protocol": "SASL_PLAINTEXT"})
    try:
        plain.list_topics(timeout=5)
        plaintext = "connected"
    except KafkaException:
        plaintext = "refused"
    print(json.dumps({"protocol": config["security.protocol"], "created_over_tls": listed,
                      "plaintext": plaintext}))
finally:
    supervision.shutdown(settings)
"""


def test_kafka_speaks_sasl_over_tls_when_asked(stack: Stack, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "dist").symlink_to(stack.settings.dist_dir)
    env = {
        **os.environ,
        "GOVSYNC_STATE_DIR": str(state),
        "GOVSYNC_KAFKA_PORT": "29092",
        "GOVSYNC_CONTROLLER_PORT": "29093",
        "GOVSYNC_KAFKA_TLS": "true",
        "GOVSYNC_KAFKA_HEAP": "384m",
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = result.stdout.strip().splitlines()[-1]
    assert outcome == (
        '{"protocol": "SASL_SSL", "created_over_tls": true, "plaintext": "refused"}'
    ), result.stdout
    assert (state / "kafka" / "tls" / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE")
    assert (state / "kafka" / "tls" / "broker.p12").stat().st_mode & 0o777 == 0o600


REGISTRY_PROBE = """
import json, subprocess
import httpx
from govsync.stack import registry, supervision
from streams.config import tls
from streams.config.settings import Settings
from streams.kafka import serde
from streams.model.topology import load_topology

settings = Settings.from_env()
registry.start(settings, load_topology(settings.topology))
try:
    subjects = serde.registry_client(settings).get_subjects()
    info = f"http://{settings.host}:{settings.registry_port}/apis/registry/v3/system/info"
    try:
        httpx.get(info, timeout=5)
        plain = "answered"
    except httpx.HTTPError:
        plain = "refused"
    try:
        httpx.get(settings.registry_base_url, timeout=5)  # the system's CAs only
        untrusted = "trusted"
    except httpx.HTTPError:
        untrusted = "refused"
    java = subprocess.run(
        ["java", *[f"-D{k}={v}" for k, v in tls.jvm_trust(settings).items()], JAVA_PROBE,
         settings.registry_base_url + "/apis/registry/v3/system/info"],
        capture_output=True, text=True, timeout=60,
    )
    print(json.dumps({"scheme": settings.registry_url.split(":")[0],
                      "subjects_over_tls": isinstance(subjects, list), "plain": plain,
                      "unverified": untrusted, "jvm": java.stdout.strip() or java.stderr[-300:]}))
finally:
    supervision.shutdown(settings)
"""

# What Connect's JVM does with the trust properties: an HTTPS request with the default
# SSLContext (a single-file program, run by the JDK's source launcher).
JAVA_SOURCE = """
import java.net.URI;
import java.net.http.*;
public class Probe {
    public static void main(String[] args) throws Exception {
        var response = HttpClient.newHttpClient().send(
            HttpRequest.newBuilder(URI.create(args[0])).build(),
            HttpResponse.BodyHandlers.ofString());
        System.out.println("status " + response.statusCode());
    }
}
"""


def test_the_registry_answers_https_only_when_asked(stack: Stack, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "dist").symlink_to(stack.settings.dist_dir)
    probe = tmp_path / "Probe.java"
    probe.write_text(JAVA_SOURCE)
    env = {
        **os.environ,
        "GOVSYNC_STATE_DIR": str(state),
        "GOVSYNC_REGISTRY_PORT": "28080",
        "GOVSYNC_REGISTRY_TLS": "true",
        "GOVSYNC_REGISTRY_HEAP": "384m",
    }
    result = subprocess.run(
        [sys.executable, "-c", f"JAVA_PROBE = {str(probe)!r}\n" + REGISTRY_PROBE],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = result.stdout.strip().splitlines()[-1]
    assert outcome == (
        '{"scheme": "https", "subjects_over_tls": true, "plain": "refused", '
        '"unverified": "refused", "jvm": "status 200"}'
    ), result.stdout + result.stderr[-2000:]
    secrets = (state / "secrets" / "registry-users.properties").stat().st_mode & 0o777
    assert secrets == 0o600  # it holds the keystore's password


pytestmark = pytest.mark.stack
