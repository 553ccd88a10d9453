"""Generated secrets in the state directory: masking keys, Kafka passwords.

Each is random, created on first use in a file only the owner can read, never printed or
logged. It is written aside and linked into place, so a concurrent reader never sees it
half-written and two processes creating it at once agree on one value.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

SECRET_BYTES = 32


def private_secret(directory: Path, name: str) -> str:
    """The hex secret stored as ``directory/name``, created if missing."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    if not path.exists():
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_bytes(SECRET_BYTES).hex())
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first; use theirs
        finally:
            os.unlink(temporary)
    return path.read_text().strip()


def write_private(path: Path, text: str) -> Path:
    """Write a file holding secrets (a config with passwords) readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    path.chmod(0o600)  # an existing file keeps its old mode through O_CREAT
    return path
