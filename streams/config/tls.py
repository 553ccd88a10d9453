"""Where the TLS material of the Kafka listener (and the schema registry, when it runs
over TLS) lives, for clients that must trust it.

The embedded stack makes it (govsync/stack/tls.py); librdkafka clients and the registry's
Python clients read the PEM, Java clients (Connect, Kafka's tools) the truststore.
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


# The registry's Java clients (Debezium's converter in Connect) trust it through the JVM's
# default trust store. That file holds the certificate alone, no key: its password guards
# nothing secret, so it may stand on a command line.
PUBLIC_TRUSTSTORE_PASSWORD = "govsync-public"


def public_truststore(settings: Settings) -> Path:
    return directory(settings) / "public-truststore.p12"


def registry_ssl(settings: Settings) -> dict[str, str]:
    """The registry's own settings for Quarkus (HTTPS only), secrets included: they go in
    its 0600 config file, not on its command line."""
    if not settings.registry_tls:
        return {}
    return {
        "quarkus.http.ssl-port": str(settings.registry_port),
        "quarkus.http.insecure-requests": "disabled",
        "quarkus.http.ssl.certificate.key-store-file": str(keystore(settings)),
        "quarkus.http.ssl.certificate.key-store-file-type": "PKCS12",
        "quarkus.http.ssl.certificate.key-store-password": store_password(settings),
    }


def jvm_trust(settings: Settings) -> dict[str, str]:
    """System properties that make a JVM trust the registry's certificate (none without
    registry TLS)."""
    if not settings.registry_tls:
        return {}
    return {
        "javax.net.ssl.trustStore": str(public_truststore(settings)),
        "javax.net.ssl.trustStoreType": "PKCS12",
        "javax.net.ssl.trustStorePassword": PUBLIC_TRUSTSTORE_PASSWORD,
    }


def http_verify(settings: Settings) -> str | bool:
    """What Python's HTTP clients verify the registry against: its certificate with TLS."""
    return str(ca_pem(settings)) if settings.registry_tls else True
