"""How often supervisord restarted each program, and how it last ended.

supervisord's XML-RPC does not say either: ``getProcessInfo`` has no restart count, and
its ``exitstatus`` is -1 for any signal. So this module runs inside supervisord as an
event listener (``python -m govsync.stack.exits <record> <supervisord log>``, subscribed to
PROCESS_STATE) and keeps a small JSON record in the state directory:

- a restart is a move to STARTING from EXITED or BACKOFF, i.e. supervisord starting the
  program again after it ended by itself (an operator's start comes from STOPPED or FATAL);
- the reason of an end (PROCESS_STATE_EXITED from RUNNING, or BACKOFF: it ended during
  start-up) is the one supervisord itself writes in its log at that moment, e.g.
  ``exited: tax-sink (terminated by SIGKILL; not expected)``: the event's payload carries
  only the pid and whether the exit was expected, and the log line is written before the
  event is dispatched.

A stop asked for (``govsync down``, a restart through govsync) is not an exit and is not
recorded.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pydantic import BaseModel, RootModel
from supervisor import childutils

LOG_TAIL_BYTES = 64 * 1024
RESTARTED_FROM = frozenset({"EXITED", "BACKOFF"})
ENDED = frozenset({"PROCESS_STATE_EXITED", "PROCESS_STATE_BACKOFF"})
_EXITED_LINE = re.compile(r"exited: (?P<name>\S+) \((?P<reason>.*?); (?:not )?expected\)\s*$")


class Ends(BaseModel):
    restarts: int = 0
    last_exit: str | None = None


class Record(RootModel[dict[str, Ends]]):
    root: dict[str, Ends] = {}


def load(path: Path) -> dict[str, Ends]:
    try:
        return Record.model_validate_json(path.read_text()).root
    except (FileNotFoundError, ValueError):
        return {}


def save(path: Path, record: dict[str, Ends]) -> None:
    """Replace the record atomically: status may read it at any moment."""
    partial = path.with_suffix(".partial")
    partial.write_text(Record(record).model_dump_json())
    os.replace(partial, path)


def exit_reason(log_tail: str, name: str) -> str | None:
    """The reason in supervisord's last ``exited: <name> (...)`` line, if any."""
    reason = None
    for line in log_tail.splitlines():
        match = _EXITED_LINE.search(line)
        if match and match["name"] == name:
            reason = match["reason"]
    return reason


def apply(record: dict[str, Ends], eventname: str, payload: str, log_tail: str) -> dict[str, Ends]:
    """``record`` after one PROCESS_STATE event (``payload`` as supervisord sends it)."""
    fields = childutils.get_headers(payload)
    name = fields.get("processname")
    if name is None:
        return record
    ends = record.get(name, Ends())
    if eventname == "PROCESS_STATE_STARTING" and fields.get("from_state") in RESTARTED_FROM:
        ends = ends.model_copy(update={"restarts": ends.restarts + 1})
    elif eventname in ENDED:
        reason = exit_reason(log_tail, name) or "ended (no reason in supervisord's log)"
        ends = ends.model_copy(update={"last_exit": reason})
    else:
        return record
    return {**record, name: ends}


def _tail(log: Path) -> str:
    try:
        with open(log, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            return file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def main(record_path: Path, log: Path) -> None:
    """supervisord's event listener protocol: READY, one event, RESULT; forever."""
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        eventname = headers["eventname"]
        if eventname in ENDED or eventname == "PROCESS_STATE_STARTING":
            before = load(record_path)
            after = apply(before, eventname, payload, _tail(log) if eventname in ENDED else "")
            if after is not before:
                save(record_path, after)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
