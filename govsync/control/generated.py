"""Files generated from the topology into a directory of the repository (`schemas/`,
`deploy/kubernetes/strimzi/`): written whole, and a generated file the topology no longer
produces is removed, so the directory always equals a fresh render."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path


def write(
    directory: Path | str,
    files: dict[str, str],
    generated: re.Pattern[str],
    ours: Callable[[Path], bool] = lambda _: True,
) -> list[Path]:
    """Write ``files`` (name -> text) and delete the files whose names match ``generated``
    (and that ``ours`` claims) but are no longer among them. Returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.iterdir():
        if generated.fullmatch(path.name) and path.name not in files and ours(path):
            path.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
