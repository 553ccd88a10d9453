"""Apicurio Registry 3.x, storing its schemas in the stack's PostgreSQL so they survive restarts."""

from __future__ import annotations

import httpx

from streams.settings import Settings
from streams.stack import jvm
from streams.stack.postgres import REGISTRY_DATABASE
from streams.stack.process import read_pid, require_free_port, spawn, wait_until

NAME = "registry"


def start(settings: Settings) -> None:
    run_dir = settings.path("run")
    if read_pid(run_dir, NAME) is not None:
        return
    require_free_port(settings.host, settings.registry_port, "Apicurio Registry", "registry_port")
    log = settings.path("logs", "registry.log")
    jdbc = f"jdbc:postgresql://{settings.host}:{settings.pg_port}/{REGISTRY_DATABASE}"
    pid = spawn(
        NAME,
        jvm.java_command(
            None,
            heap=settings.registry_heap,
            jar=jvm.registry_jar(settings.dist_dir),
            system_properties={
                "quarkus.http.host": settings.host,
                "quarkus.http.port": str(settings.registry_port),
                "apicurio.storage.kind": "sql",
                "apicurio.storage.sql.kind": "postgresql",
                "apicurio.datasource.url": jdbc,
                "apicurio.datasource.username": settings.pg_user,
                # Loopback trust authentication ignores it, but the pool insists on one.
                "apicurio.datasource.password": "trust",
                "apicurio.datasource.jdbc.initial-size": "2",
                "apicurio.datasource.jdbc.min-size": "2",
                "apicurio.datasource.jdbc.max-size": "10",
                "quarkus.log.level": "WARN",
                'quarkus.log.category."io.apicurio".level': "INFO",
            },
        ),
        run_dir=run_dir,
        log_file=log,
        cwd=settings.dist_dir / "apicurio",
    )
    wait_until(
        lambda: version(settings) is not None,
        what="Apicurio Registry",
        timeout=120,
        log_file=log,
        pid=pid,
    )


def version(settings: Settings) -> str | None:
    url = f"http://{settings.host}:{settings.registry_port}/apis/registry/v3/system/info"
    try:
        return httpx.get(url, timeout=2).json()["version"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None
