"""The MariaDB logins: who they are and where their generated passwords live.

Unlike PostgreSQL's loopback trust, MariaDB asks every TCP client for a password, so both
logins have one, generated in the state directory (streams/config/secrets.py): the
administrator (``Settings.mariadb_user``: databases, seed tables, tests) and ``connect``,
Debezium's, with only the privileges its MariaDB connector needs. Connector configs name
Connect's by reference, so Connect's REST API never shows it.
"""

from __future__ import annotations

from pathlib import Path

from streams.config.secrets import private_secret
from streams.config.settings import Settings

CAPTURE_USER = "connect"


def password(settings: Settings, user: str) -> str:
    return private_secret(settings.path("secrets"), f"mariadb-{user}.password")


def capture_login_file(settings: Settings) -> Path:
    """Debezium's password, in a file only Connect's FileConfigProvider reads."""
    return settings.path("secrets", "mariadb-connect.properties")


def capture_password_reference(settings: Settings) -> str:
    return f"${{file:{capture_login_file(settings)}:password}}"


def connection_args(settings: Settings, database: str | None = None) -> dict[str, object]:
    """Keyword arguments for ``pymysql.connect`` as the administrator, over loopback TCP."""
    return {
        "host": settings.host,
        "port": settings.mariadb_port,
        "user": settings.mariadb_user,
        "password": password(settings, settings.mariadb_user),
        "database": database,
        "charset": "utf8mb4",
    }
