"""Run several tasks of a fanned-out stage in one job, one after another (`tasks_per_job`).

    tasks.py --tasks-file RUN/STAGE.tasks --record RUN/STAGE.tasks.record \\
             --run "STAGE-3 STAGE-4" -- COMMAND WITH {field} ...

RUN/STAGE.tasks has a line per task, as a DAG's VARS line: `STAGE-3 index="3" ...`.
For each task named in --run, in order, `{field}` in COMMAND becomes the task's value
(`{{` and `}}` are literal braces) and the command runs; the first failure ends the
job with its exit code. Each task's start and end go to the record
(`start|done|failed TASK TIME`, on disk before going on), so a build can tell which
tasks of a failed or killed job are complete, and a retried job skips the tasks its
last attempt finished.

Standard library only: it runs inside the stage's image.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks-file", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--run", required=True, help="names of the tasks to run, in order")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    tasks = read_tasks(args.tasks_file)
    names = args.run.split()
    unknown = [name for name in names if name not in tasks]
    if unknown:
        parser.error(f"{args.tasks_file} has no task {unknown[0]}")
    # a retried job skips what its last attempt finished (since this tasks file was written)
    finished = done_since(args.record, args.tasks_file.stat().st_mtime)
    for number, name in enumerate(names, 1):
        if name in finished:
            print(f"tasks: {number}/{len(names)} {name}: done already", flush=True)
            continue
        argv_of_task = [fill(word, tasks[name]) for word in command]
        print(f"tasks: {number}/{len(names)} {name}: {' '.join(argv_of_task)}", flush=True)
        record(args.record, "start", name)
        code = subprocess.call(argv_of_task)
        record(args.record, "done" if code == 0 else "failed", name)
        if code != 0:
            print(f"tasks: {name} failed with exit code {code}", file=sys.stderr, flush=True)
            return code
    return 0


def read_tasks(path: Path) -> dict[str, dict[str, str]]:
    tasks = {}
    # split at newlines only: a value may hold U+2028 or U+0085 (splitlines() splits there)
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        name, _, pairs = line.partition(" ")
        values = {}
        for key, value in PAIR.findall(pairs):
            values[key] = re.sub(r"\\(.)", r"\1", value)  # a VARS value: \" and \\
        tasks[name] = values
    return tasks


def done_since(path: Path, since: float) -> set[str]:
    """Tasks whose last event in the record is a success at or after `since` (a start
    that nothing ended, a failure or a torn line after a success undoes it)."""
    finished: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return finished
    for line in text.split("\n"):  # as aframe-dag's own reader of records splits them
        words = line.split()
        if len(words) < 2 or words[0] not in ("start", "done", "failed"):
            continue
        stamp = words[2] if len(words) == 3 else ""
        if words[0] == "done" and stamp.replace(".", "", 1).isdigit() and float(stamp) >= since:
            finished.add(words[1])
        else:
            finished.discard(words[1])
    return finished


def fill(word: str, values: dict[str, str]) -> str:
    """`{field}` becomes the task's value; `{{` and `}}` are literal braces."""

    def replace(match: re.Match[str]) -> str:
        field = match.group(1)
        if field is None:
            return match.group(0)[0]
        if field not in values:
            raise SystemExit(f"tasks: the tasks file gives no {field!r}")
        return values[field]

    return re.sub(r"\{\{|\}\}|\{(\w+)\}", replace, word)


def record(path: Path, event: str, name: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{event} {name} {time.time():.3f}\n")
        handle.flush()
        os.fsync(handle.fileno())


if __name__ == "__main__":
    sys.exit(main())
