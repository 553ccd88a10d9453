"""TLS for the Kafka client listener (``GOVSYNC_KAFKA_TLS``) and the schema registry
(``GOVSYNC_REGISTRY_TLS``): making the certificate.

The embedded stack listens on loopback only, so SASL over plain TCP is its default; TLS
is there for setups that cross a network. A self-signed certificate for the stack's
host is made once with the JDK's keytool: the keystore (the broker's and the registry's),
a truststore for Java clients (Connect), a public one without a secret for JVMs that trust
it by default (Connect's registry client), and the certificate as PEM for librdkafka and
Python's HTTP clients.
"""

from __future__ import annotations

import subprocess

from govsync.stack.process import StackError
from streams.config.settings import Settings
from streams.config.tls import (
    PUBLIC_TRUSTSTORE_PASSWORD,
    ca_pem,
    directory,
    keystore,
    public_truststore,
    store_password,
    truststore,
)

VALIDITY_DAYS = 3650


def ensure_certificates(settings: Settings) -> None:
    """Create the key pair and the trust files once."""
    _ensure_key_pair(settings)
    if not public_truststore(settings).exists():
        _keytool(
            "-importcert", "-noprompt", "-alias", "govsync", "-file", str(ca_pem(settings)),
            "-keystore", str(public_truststore(settings)), "-storetype", "PKCS12",
            "-storepass", PUBLIC_TRUSTSTORE_PASSWORD,
        )  # fmt: skip


def _ensure_key_pair(settings: Settings) -> None:
    if truststore(settings).exists():
        return
    directory(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = store_password(settings)
    common = ["-storetype", "PKCS12", "-storepass", secret]
    _keytool(
        "-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
        "-validity", str(VALIDITY_DAYS), "-dname", f"CN={settings.host}",
        "-ext", f"SAN=IP:{settings.host},DNS:localhost",
        "-keystore", str(keystore(settings)), "-keypass", secret, *common,
    )  # fmt: skip
    keystore(settings).chmod(0o600)  # it holds the broker's private key
    _keytool(
        "-exportcert", "-rfc", "-alias", "broker", "-keystore", str(keystore(settings)),
        "-file", str(ca_pem(settings)), *common,
    )  # fmt: skip
    _keytool(
        "-importcert", "-noprompt", "-alias", "broker", "-file", str(ca_pem(settings)),
        "-keystore", str(truststore(settings)), *common,
    )  # fmt: skip


def broker_config(settings: Settings) -> str:
    """Lines for server.properties: the client listener's keystore (empty without TLS)."""
    if not settings.kafka_tls:
        return ""
    secret = store_password(settings)
    return (
        "listener.name.client.ssl.keystore.type=PKCS12\n"
        f"listener.name.client.ssl.keystore.location={keystore(settings)}\n"
        f"listener.name.client.ssl.keystore.password={secret}\n"
        f"listener.name.client.ssl.key.password={secret}\n"
        "ssl.truststore.type=PKCS12\n"
        f"ssl.truststore.location={truststore(settings)}\n"
        f"ssl.truststore.password={secret}\n"
    )


def _keytool(*args: str) -> None:
    result = subprocess.run(["keytool", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"keytool {args[0]} failed: {(result.stderr or result.stdout)[-300:]}")
