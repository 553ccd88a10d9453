"""TLS by flag: with GOVSYNC_KAFKA_TLS the broker's client listener is SASL over TLS with
a generated certificate. A second broker on other ports and its own state directory
(sharing the downloaded distribution) is started, used and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config.settings import REPO_ROOT
from tests.integration.conftest import Stack

PROBE = """
import json
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
    listed = "tls-probe" in client.list_topics(timeout=10).topics
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


pytestmark = pytest.mark.stack
