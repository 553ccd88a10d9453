"""The reviewable copy of the generated Avro schemas under ``schemas/``.

``python -m govsync.control.schema_files`` rewrites them from topology.yaml; a unit test
fails when the committed files drift from the topology.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from govsync.control import generated
from streams.config.settings import REPO_ROOT, Settings
from streams.contract.schemas import schema_files
from streams.model.topology import Topology, TopologyError, load_topology

SCHEMAS_DIR = REPO_ROOT / "schemas"

_GENERATED_NAME = re.compile(
    r"(?:quality|receipts|audit|trace)\.avsc"
    r"|[a-z0-9_]+\.(?:state|change)\.avsc"
    r"|deliver\.[a-z0-9_]+\.[a-z0-9_]+\.avsc"
)


def write_schema_files(topology: Topology, directory: Path | str) -> list[Path]:
    """Write the generated files and delete generated-looking files the topology no longer
    produces (e.g. of a removed subscription). Returns the paths written."""
    return generated.write(directory, schema_files(topology), _GENERATED_NAME)


def main() -> None:
    settings = Settings.from_env()
    try:
        topology = load_topology(settings.topology)
    except TopologyError as exc:
        sys.exit(f"{settings.topology} is invalid:\n{exc}")
    written = write_schema_files(topology, SCHEMAS_DIR)
    print(f"wrote {len(written)} schema files to {SCHEMAS_DIR}")


if __name__ == "__main__":
    main()
