"""CPU time each program of the stack spends during a run, from /proc.

Every component shares this machine's cores, so a rate alone says little: the pipeline
can only be as fast as the cores divided by the CPU one change costs across all of
them. Each supervised program is counted with its whole process tree (PostgreSQL's
backends are children of the postmaster); a child that ended during the run counts in
its parent's reaped-children time. Whatever runs outside supervisord (this benchmark,
the shell) is "other".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from govsync.stack import supervision
from streams.config.settings import Settings

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
OTHER = "other"


@dataclass(frozen=True)
class Process:
    parent: int
    ticks: int  # user + system, its own and its reaped children's


def processes() -> dict[int, Process]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command name, which may itself hold ") ".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        found[int(entry.name)] = Process(int(fields[1]), utime + stime + cutime + cstime)
    return found


def by_program(settings: Settings, table: dict[int, Process]) -> dict[str, int]:
    """Ticks per supervised program (its process tree), the rest under OTHER."""
    roots = {s.pid: name for name, s in supervision.statuses(settings).items() if s.pid}
    totals: dict[str, int] = {}
    for pid, process in table.items():
        owner, ancestor = OTHER, pid
        while ancestor > 1:
            if ancestor in roots:
                owner = roots[ancestor]
                break
            ancestor = table[ancestor].parent if ancestor in table else 0
        totals[owner] = totals.get(owner, 0) + process.ticks
    return totals


class Meter:
    """CPU seconds per program between ``__init__`` and ``stop``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._before = processes()

    def stop(self) -> dict[str, float]:
        after = processes()
        before = {pid: p for pid, p in self._before.items() if pid in after}
        # A process that started during the run counts from zero.
        spent = {
            pid: Process(p.parent, p.ticks - (before[pid].ticks if pid in before else 0))
            for pid, p in after.items()
        }
        totals = by_program(self._settings, spent)
        return {name: round(ticks / TICKS_PER_S, 2) for name, ticks in totals.items() if ticks}


def per_change(seconds: dict[str, float], changes: int) -> dict[str, float]:
    """CPU microseconds per change, per program and in total."""
    rows = {name: round(s / changes * 1e6) for name, s in sorted(seconds.items())}
    return {**rows, "total": round(sum(seconds.values()) / changes * 1e6)}


def bound(total_us_per_change: float) -> float:
    """Changes a second this machine's cores allow at that cost, if all were busy."""
    return round((os.cpu_count() or 1) * 1e6 / total_us_per_change, 1)
