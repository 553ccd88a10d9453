"""Where the Kafka listener's TLS material lives, for clients that must trust it.

The embedded stack makes it (govsync/stack/tls.py); librdkafka clients read the PEM and
Java clients (Connect, Kafka's tools) the truststore.
"""

from __future__ import annotations

from pathlib import Path

from streams.config.secrets import private_secret
from streams.config.settings import Settings


def directory(settings: Settings) -> Path:
    return settings.path("kafka", "tls")


def store_password(settings: Settings) -> str:
    return private_secret(settings.path("secrets"), "kafka-tls-store.password")


def ca_pem(settings: Settings) -> Path:
    return directory(settings) / "ca.pem"


def keystore(settings: Settings) -> Path:
    return directory(settings) / "broker.p12"


def truststore(settings: Settings) -> Path:
    return directory(settings) / "truststore.p12"


def java_client_config(settings: Settings, prefix: str = "") -> str:
    """Truststore lines for a Java client's properties (empty without TLS)."""
    if not settings.kafka_tls:
        return ""
    return (
        f"{prefix}ssl.truststore.type=PKCS12\n"
        f"{prefix}ssl.truststore.location={truststore(settings)}\n"
        f"{prefix}ssl.truststore.password={store_password(settings)}\n"
    )
