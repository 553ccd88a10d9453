"""A second govsync node beside the suite's stack (a federation peer, a standby): its own
state directory and ports, driven through subprocesses with its environment, since
Settings come from the environment."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.config.settings import REPO_ROOT

READ = """
import json, sys
from streams.config.settings import Settings
from streams.contract.headers import as_dict, control
from streams.kafka import topic_reader
from streams.kafka.serde import ValueDeserializer, registry_client

settings = Settings.from_env()
decode = ValueDeserializer(registry_client(settings))
topic, avro = sys.argv[1], sys.argv[2] == "avro"
keys = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else None
start = topic_reader.beginning(settings.bootstrap, [topic])
rows = []
for message in topic_reader.messages(settings.bootstrap, start, timeout=60):
    key = message.key().decode() if message.key() else None
    if control(message.headers()) is not None or (keys and key not in keys):
        continue
    value = decode(topic, message.value()) if avro else None
    rows.append({"key": key, "headers": as_dict(message.headers()), "value": value})
print(json.dumps(rows, default=str))
"""


@dataclass(frozen=True)
class Node:
    env: dict[str, str]

    def run(self, code: str, *args: str, timeout: float = 120) -> str:
        """Python ``code`` run as this node; its stdout."""
        done = self._as_node([sys.executable, "-c", textwrap.dedent(code), *args], timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def govsync(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self._as_node([str(Path(sys.executable).with_name("govsync")), *args], timeout)

    def _as_node(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def records(
        self, topic: str, decode: bool = True, keys: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        """Every committed record of ``topic`` here, or those with one of ``keys`` (values
        decoded with this node's registry unless ``decode`` is False): only those are
        decoded, on a topic that may hold the whole suite's history."""
        keyed = [",".join(sorted(keys))] if keys else []
        return json.loads(self.run(READ, topic, "avro" if decode else "raw", *keyed))


def until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(1)
