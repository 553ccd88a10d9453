"""The exits listener on the events and log lines supervisord 4.3 really sends and writes."""

from __future__ import annotations

import io
from pathlib import Path

from supervisor import childutils

from govsync.stack import exits

LOG = (
    "2026-11-30 09:28:40,001 INFO spawned: 'tax-sink' with pid 7831\n"
    "2026-11-30 09:28:43,010 INFO success: tax-sink entered RUNNING state, process has stayed"
    " up for > than 3 seconds (startsecs)\n"
    "2026-11-30 09:28:50,100 WARN exited: worker-1 (exit status 3; not expected)\n"
    "2026-11-30 09:28:56,755 WARN exited: tax-sink (terminated by SIGKILL; not expected)\n"
    "2026-11-30 09:28:57,760 INFO spawned: 'tax-sink' with pid 8001\n"
)


def event(eventname: str, payload: str) -> tuple[str, str]:
    """One event as the listener reads it off stdin, through supervisor's own helper."""
    header = (
        f"ver:3.0 server:supervisor serial:21 pool:exits poolserial:10 "
        f"eventname:{eventname} len:{len(payload)}\n"
    )
    headers, body = childutils.listener.wait(io.StringIO(header + payload), io.StringIO())
    return headers["eventname"], body


def test_a_kill_9_records_the_signal_and_the_restart_after_it() -> None:
    record: dict[str, exits.Ends] = {}
    for name, payload in (
        event(
            "PROCESS_STATE_EXITED",
            "processname:tax-sink groupname:tax-sink from_state:RUNNING expected:0 pid:7831",
        ),
        event(
            "PROCESS_STATE_STARTING",
            "processname:tax-sink groupname:tax-sink from_state:EXITED tries:0",
        ),
        event(
            "PROCESS_STATE_RUNNING",
            "processname:tax-sink groupname:tax-sink from_state:STARTING pid:8001",
        ),
    ):
        record = exits.apply(record, name, payload, LOG)
    assert record == {"tax-sink": exits.Ends(restarts=1, last_exit="terminated by SIGKILL")}


def test_an_operators_start_is_not_a_restart_and_a_stop_is_not_an_exit() -> None:
    record: dict[str, exits.Ends] = {}
    for name, payload in (
        event(
            "PROCESS_STATE_STARTING", "processname:kafka groupname:kafka from_state:STOPPED tries:0"
        ),
        event(
            "PROCESS_STATE_STOPPING", "processname:kafka groupname:kafka from_state:RUNNING pid:543"
        ),
        event(
            "PROCESS_STATE_STOPPED", "processname:kafka groupname:kafka from_state:STOPPING pid:543"
        ),
        event(
            "PROCESS_STATE_STARTING", "processname:kafka groupname:kafka from_state:FATAL tries:0"
        ),
    ):
        record = exits.apply(record, name, payload, LOG)
    assert record == {}


def test_an_exit_during_start_up_counts_and_names_its_status() -> None:
    backoff = event(
        "PROCESS_STATE_BACKOFF",
        "processname:worker-1 groupname:worker-1 from_state:STARTING tries:1",
    )
    retried = event(
        "PROCESS_STATE_STARTING",
        "processname:worker-1 groupname:worker-1 from_state:BACKOFF tries:1",
    )
    record = exits.apply({}, *backoff, LOG)
    record = exits.apply(record, *retried, LOG)
    assert record["worker-1"] == exits.Ends(restarts=1, last_exit="exit status 3")


def test_the_last_line_for_the_program_wins_and_others_do_not_count() -> None:
    tail = LOG + "2026-11-30 09:30:00,000 WARN exited: tax-sink (exit status 1; not expected)\n"
    assert exits.exit_reason(tail, "tax-sink") == "exit status 1"
    assert exits.exit_reason(tail, "tax") is None
    assert exits.exit_reason(tail, "monitor") is None


def test_the_record_survives_a_round_trip_and_a_missing_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "exits.json"
    assert exits.load(path) == {}
    record = {"connect": exits.Ends(restarts=2, last_exit="terminated by SIGKILL")}
    exits.save(path, record)
    assert exits.load(path) == record
