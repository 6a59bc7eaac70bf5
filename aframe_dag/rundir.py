"""The run dir's contract: its file names, and one reader for each record format.

Every command that asks what a run did asks here, so two commands cannot disagree.
A record (run-local's `run-local.record`, a clustered stage's `STAGE.tasks.record`) is a
line per event, `start|done|failed KEY TIME`, appended and fsync'd as it happens.
One rule says what a sequence means: a key's LAST event decides. `done` with a time is a
success at that time; `failed` is a failure; a `start` that nothing ended (the runner or
the job was killed) and a torn line (a crash mid-write) mean the work is unfinished,
never a success, whatever came before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

# files of the run dir that more than one module names
CONFIG = "config.yaml"
DAG = "aframe.dag"
RECORD = "run-local.record"  # run-local's events
LOCK = ".run-local.lock"  # held (flock) by a live run-local
STATE = ".aframe-dag"  # aframe-dag's own bookkeeping
BUILD_LOCK = f"{STATE}/build.lock"  # held (flock) by a build from its first read to its last write
COMPLETED = f"{STATE}/completed.json"  # successes harvested by the builds so far
SCRATCH = f"{STATE}/scratch"  # where run-local runs jobs without a shared filesystem


def tasks_file(stage: str) -> str:
    """A clustered stage's tasks, a line per item: `NODE field="value" ...`."""
    return f"{stage}.tasks"


def tasks_record(stage: str) -> str:
    """The events of a clustered stage's tasks, written by entry/tasks.py."""
    return f"{stage}.tasks.record"


class Event(NamedTuple):
    """A key's last event in a record."""

    state: Literal["done", "failed", "unfinished"]
    when: float | None  # None for an unfinished one, or a failure of a torn line


_EVENTS = ("start", "done", "failed")


def lines(path: Path, strict: bool = False) -> list[str]:
    """The lines of a record or tasks file, none if it is not there (or, unless `strict`,
    cannot be read). Split at newlines only: a task's value may hold U+2028 or U+0085,
    which str.splitlines() also splits at."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        return []
    except OSError:
        if strict:
            raise
        return []


def read_record(path: Path, strict: bool = False) -> dict[str, Event]:
    """Each key's last event in a record (see the module's rule). A record that cannot be
    read has no events, unless `strict` (the runner, which must not lose its own record):
    then the OSError is raised."""
    events: dict[str, Event] = {}
    for line in lines(path, strict):
        words = line.split()
        if len(words) < 2 or words[0] not in _EVENTS:
            continue
        when = _time(words[2]) if len(words) == 3 else None
        if words[0] == "done" and when is not None:
            events[words[1]] = Event("done", when)
        elif words[0] == "failed":
            events[words[1]] = Event("failed", when)
        else:  # started, or a torn line: what the work left is not whole
            events[words[1]] = Event("unfinished", None)
    return events


def done_times(events: dict[str, Event]) -> dict[str, float]:
    """When each key of a record whose last event is a success succeeded."""
    return {
        key: event.when
        for key, event in events.items()
        if event.state == "done" and event.when is not None
    }


def count_tasks(path: Path) -> int:
    """How many tasks a tasks file lists."""
    return sum(1 for line in lines(path) if line)


def _time(word: str) -> float | None:
    try:
        return float(word)
    except ValueError:
        return None
