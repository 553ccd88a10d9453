"""The MariaDB server of departments whose databases are MariaDB, owned by the state
directory (not the Debian package's system server, which is never started).

Started only when a source of the topology in force is a MariaDB database. Like
PostgreSQL, the data directory belongs to the package's ``mysql`` user when govsync runs
as root, and supervisord runs ``mariadbd`` in the foreground as that user. The server
writes a row-based binlog with full row images, which Debezium's MariaDB connector reads,
and keeps a week of it. Its wall clock is China Standard Time, the departments' own.

The logins (streams/config/mariadb.py) are (re)made by the server itself from an init
file at every start, so a password regenerated in the state directory takes effect on the
next start and no password is ever on a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pymysql

from govsync.stack import supervision
from govsync.stack.process import StackError, require_free_port
from streams.config import mariadb as logins
from streams.config.secrets import write_private
from streams.config.settings import Settings

NAME = "mariadb"
OWNER = "mysql"
SERVER = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")
# What Debezium's MariaDB connector documents for its login: SELECT for snapshots,
# RELOAD/LOCK TABLES for the snapshot's consistent read, SHOW DATABASES to find the
# captured ones, REPLICATION SLAVE/CLIENT to read the binlog and where it stands.
CAPTURE_PRIVILEGES = (
    "SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT, LOCK TABLES"
)
BINLOG_RETENTION_S = 7 * 24 * 3600


def _owner() -> str | None:
    return OWNER if os.geteuid() == 0 else None


def _root(settings: Settings) -> Path:
    return settings.path("mariadb")


def _data_dir(settings: Settings) -> Path:
    return _root(settings) / "data"


def _config(settings: Settings) -> Path:
    return _root(settings) / "my.cnf"


def _init_file(settings: Settings) -> Path:
    return _root(settings) / "logins.sql"


def _binary(path: Path) -> str:
    if not path.exists():
        raise StackError(
            f"MariaDB is not installed ({path} missing): run `make install-system` "
            "or `apt-get install mariadb-server`"
        )
    return str(path)


def _chown(*paths: Path) -> None:
    if (owner := _owner()) is not None:
        for path in paths:
            shutil.chown(path, owner, owner)


def _render_config(settings: Settings) -> str:
    root, data = _root(settings), _data_dir(settings)
    return (
        "# govsync embedded stack: written by `govsync up`\n"
        "[mariadbd]\n"
        f"datadir={data}\n"
        f"socket={root / 'run' / 'mariadbd.sock'}\n"
        f"pid-file={root / 'run' / 'mariadbd.pid'}\n"
        f"bind-address={settings.host}\n"
        f"port={settings.mariadb_port}\n"
        "skip-name-resolve\n"
        f"init-file={_init_file(settings)}\n"
        "# What Debezium reads: every changed row, whole, in the binlog.\n"
        "server-id=1\n"
        "log-bin=mariadb-bin\n"
        "binlog-format=ROW\n"
        "binlog-row-image=FULL\n"
        f"binlog-expire-logs-seconds={BINLOG_RETENTION_S}\n"
        "character-set-server=utf8mb4\n"
        "collation-server=utf8mb4_unicode_ci\n"
        "default-time-zone='+08:00'\n"
        "innodb-buffer-pool-size=128M\n"
        "max-connections=200\n"
    )


def _render_logins(settings: Settings) -> str:
    """The administrator and Debezium's login, reset to the stored passwords. From any
    host: the server listens on ``settings.host`` alone."""
    admin, capture = settings.mariadb_user, logins.CAPTURE_USER
    return (
        f"CREATE OR REPLACE USER '{admin}'@'%' "
        f"IDENTIFIED BY '{logins.password(settings, admin)}';\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION;\n"
        f"CREATE OR REPLACE USER '{capture}'@'%' "
        f"IDENTIFIED BY '{logins.password(settings, capture)}';\n"
        f"GRANT {CAPTURE_PRIVILEGES} ON *.* TO '{capture}'@'%';\n"
    )


def _ensure_server(settings: Settings) -> None:
    """The configuration and logins (rewritten each start), and the system tables once."""
    root, data = _root(settings), _data_dir(settings)
    for path in (root, data, root / "run"):
        path.mkdir(parents=True, exist_ok=True)
    _chown(root, data, root / "run")
    data.chmod(0o700)
    config = _config(settings)
    config.write_text(_render_config(settings))
    _chown(write_private(_init_file(settings), _render_logins(settings)))
    if (data / "mysql").is_dir():
        return
    owner = _owner()
    reachable = subprocess.run(
        ["runuser", "-u", owner, "--", "test", "-w", str(data)] if owner else ["true"],
        capture_output=True,
    )
    if reachable.returncode != 0:
        raise StackError(
            f"the {owner} OS user cannot reach {data}: make its parent directories "
            "traversable (chmod o+x) or point GOVSYNC_STATE_DIR somewhere it can reach"
        )
    result = subprocess.run(
        [
            _binary(INSTALL_DB),
            f"--defaults-file={config}",
            *([f"--user={owner}"] if owner else []),
            "--skip-test-db",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"mariadb-install-db failed: {(result.stdout + result.stderr)[-500:]}")


def start(settings: Settings) -> None:
    if supervision.is_running(settings, NAME):
        return
    require_free_port(settings.host, settings.mariadb_port, "MariaDB", "mariadb_port")
    _ensure_server(settings)
    program = supervision.Program(
        name=NAME,
        command=[_binary(SERVER), f"--defaults-file={_config(settings)}"],
        log=settings.path("logs", "mariadb.log"),
        directory=_data_dir(settings),
        user=_owner(),
        # SIGTERM is mariadbd's normal shutdown; it stops its own threads.
        stopasgroup=False,
        stopwaitsecs=60,
    )
    supervision.start_until_ready(
        settings, program, ready=lambda: is_up(settings), what="MariaDB", timeout=60
    )


def is_up(settings: Settings) -> bool:
    return version(settings) is not None


def version(settings: Settings) -> str | None:
    try:
        args = logins.connection_args(settings)
        with pymysql.connect(**args, connect_timeout=2) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            row = cursor.fetchone()
    except pymysql.MySQLError:
        return None
    return str(row[0]) if row else None


def ensure_databases(settings: Settings, names: list[str]) -> None:
    with pymysql.connect(**logins.connection_args(settings)) as conn, conn.cursor() as cursor:
        for name in names:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
