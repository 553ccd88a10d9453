"""The departments' PostgreSQL 15 cluster, owned by the state directory (not the system cluster).

PostgreSQL refuses to run as root, so when govsync runs as root the cluster belongs to
the Debian package's ``postgres`` user, and supervisord runs the server as that user.
The server runs in the foreground under supervisord (``postgres -D <data> -p <port>``,
what ``pg_ctl start`` runs), so it is restarted like every other component. Clients
connect over loopback with trust authentication as the ``govsync`` superuser; only the
audit witness's role (govsync/index/witness.py) must give a password.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg

from govsync.index import witness
from govsync.stack import supervision
from govsync.stack.process import StackError, require_free_port
from streams.config.settings import Settings

NAME = "postgres"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REGISTRY_DATABASE = "registry"


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _data_dir(settings: Settings) -> Path:
    return settings.path("postgres", "data")


def _binary(name: str) -> str:
    path = PG_BIN / name
    if not path.exists():
        raise StackError(
            f"PostgreSQL 15 is not installed ({path} missing): run `make install-system` "
            "or `apt-get install postgresql-15`"
        )
    return str(path)


def _ensure_cluster(settings: Settings) -> None:
    data = _data_dir(settings)
    if (data / "PG_VERSION").exists():
        return
    root = settings.path("postgres")
    (root / "run").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        for path in (root, data, root / "run"):
            shutil.chown(path, "postgres", "postgres")
        reachable = subprocess.run(_as_owner(["test", "-w", str(data)]), capture_output=True)
        if reachable.returncode != 0:
            raise StackError(
                f"the postgres OS user cannot reach {data}: make its parent directories "
                "traversable (chmod o+x) or point GOVSYNC_STATE_DIR somewhere it can reach"
            )
    data.chmod(0o700)
    subprocess.run(
        _as_owner(
            [
                _binary("initdb"),
                "-D",
                str(data),
                "-U",
                settings.pg_user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# govsync embedded stack\n"
            f"listen_addresses = '{settings.host}'\n"
            f"unix_socket_directories = '{root / 'run'}'\n"
            "wal_level = logical\n"
            "max_wal_senders = 10\n"
            "max_replication_slots = 10\n"
            "shared_buffers = 128MB\n"
            "max_connections = 200\n"
            "timezone = 'UTC'\n"
        )


def _ensure_password_logins(settings: Settings) -> bool:
    """The roles PostgreSQL asks a password of (scram-sha-256), at the top of pg_hba.conf
    where the first matching line wins, before the trust lines initdb wrote; whether the
    file changed. Only the witness's auditor: nobody else may log in as it."""
    hba = _data_dir(settings) / "pg_hba.conf"
    text = hba.read_text()
    wanted = [
        f"local all {witness.AUDITOR} scram-sha-256",
        f"host all {witness.AUDITOR} all scram-sha-256",
    ]
    missing = [line for line in wanted if line not in text.splitlines()]
    if not missing:
        return False
    with open(hba, "w") as file:  # in place: the file stays the postgres user's
        file.write("# govsync: password logins first\n" + "\n".join(missing) + "\n" + text)
    return True


def start(settings: Settings) -> None:
    if is_up(settings) or supervision.is_running(settings, NAME):
        if _ensure_password_logins(settings) and is_up(settings):
            with psycopg.connect(settings.pg_conninfo("postgres"), autocommit=True) as conn:
                conn.execute("SELECT pg_reload_conf()")
        return
    require_free_port(settings.host, settings.pg_port, "PostgreSQL", "pg_port")
    _ensure_cluster(settings)
    _ensure_password_logins(settings)
    data = _data_dir(settings)
    program = supervision.Program(
        name=NAME,
        command=[_binary("postgres"), "-D", str(data), "-p", str(settings.pg_port)],
        log=settings.path("logs", "postgres.log"),
        directory=data,
        user="postgres" if os.geteuid() == 0 else None,
        # SIGINT is pg_ctl's "fast" shutdown; the postmaster stops its backends itself.
        stopsignal="INT",
        stopasgroup=False,
        stopwaitsecs=60,
    )
    supervision.start_until_ready(
        settings, program, ready=lambda: is_up(settings), what="PostgreSQL", timeout=60
    )


def is_up(settings: Settings) -> bool:
    return version(settings) is not None


def version(settings: Settings) -> str | None:
    try:
        with psycopg.connect(settings.pg_conninfo("postgres"), connect_timeout=2) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.OperationalError:
        return None
    return str(row[0]) if row else None


def ensure_databases(settings: Settings, names: list[str]) -> None:
    with psycopg.connect(settings.pg_conninfo("postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                conn.execute(f'CREATE DATABASE "{name}"')
