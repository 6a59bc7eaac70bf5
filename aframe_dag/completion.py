"""What does not need to run again: fingerprints, DAGMan's and run-local's records.

A node is complete when its outputs exist, it last succeeded with the fingerprint it
has now (a hash of its submit description: command, resources, environment; its VARS;
its image's identity), and its parents are complete (so a change anywhere upstream
re-runs everything below it). Successes are read from DAGMan's JOBSTATE_LOG and from
run-local's record, never from a per-node script.

Each build (and each `expand`) writes the fingerprints of the nodes it wrote, with the
time it wrote them; a success recorded after that time belongs to that fingerprint.
Harvested successes accumulate in RUN/.aframe-dag/completed.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aframe_dag import write

STATE = ".aframe-dag"
COMPLETED = f"{STATE}/completed.json"
# Terminal events of a node in a JOBSTATE_LOG (manual: DAGMan, "Machine-readable event
# history, the jobstate.log file")
_SUCCESS = {"JOB_SUCCESS", "POST_SUCCESS"}
_FAILURE = {"JOB_FAILURE", "POST_FAILURE", "PRE_FAILURE", "JOB_ABORTED"}
FAILED = "failed"


@dataclass(frozen=True)
class Fingerprint:
    """A node's fingerprint and the parts it hashes (to say what changed)."""

    digest: str
    parts: dict[str, str]


def digest(*texts: str) -> str:
    """A short stable hash of some texts."""
    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def image_identity(image: str | None) -> str:
    """An image's path, size and modification time (hashing GBs of .sif costs minutes)."""
    if not image:
        return ""
    try:
        stat = Path(image).stat()
    except OSError:
        return image
    return f"{image}:{stat.st_size}:{stat.st_mtime_ns}"


def submit_parts(submit_text: str) -> tuple[str, str]:
    """(recipe, environment) of a .sub: comments dropped, environment lines apart."""
    recipe, env = [], []
    for line in submit_text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        (env if line.split("=", 1)[0].strip() in ("environment", "getenv") else recipe).append(line)
    return digest(*recipe), digest(*env)


def fingerprint(recipe: str, env: str, image: str, vars_: str) -> Fingerprint:
    """Combine a node's parts into its fingerprint."""
    parts = {"command": digest(recipe, vars_), "environment": env, "image": image}
    return Fingerprint(digest(*(f"{k}={v}" for k, v in sorted(parts.items()))), parts)


# --- records --------------------------------------------------------------------------


def write_fingerprints(path: Path, fingerprints: dict[str, Fingerprint]) -> None:
    """Record the fingerprints of the nodes a DAG file holds, and when it was written."""
    data = {
        "written": time.time(),
        "nodes": {name: {"digest": f.digest, **f.parts} for name, f in fingerprints.items()},
    }
    write.write_file(path, json.dumps(data, sort_keys=True) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def jobstate_events(path: Path, since: float) -> dict[str, str]:
    """Each node's last terminal event ('success'/'failure') after `since` in a JOBSTATE_LOG."""
    events: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        words = line.split()
        if len(words) < 3 or not words[0].isdigit() or int(words[0]) < int(since):
            continue
        if words[2] in _SUCCESS:
            events[words[1]] = "success"
        elif words[2] in _FAILURE:
            events[words[1]] = "failure"
    return events


def local_events(path: Path, since: float) -> dict[str, str]:
    """Each node's last event in run-local's record (`done|failed DAG:NODE TIME`) after `since`."""
    events: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return events
    for line in lines:
        words = line.split()
        if len(words) == 3 and words[0] in ("done", "failed") and float(words[2]) >= since:
            events[words[1].split(":", 1)[1]] = "success" if words[0] == "done" else "failure"
    return events


def harvest(run_dir: Path) -> dict[str, dict[str, str]]:
    """Update and return the completed-node state from every record since each build."""
    state = _read_json(run_dir / COMPLETED) or {}
    for fingerprints in sorted(run_dir.glob("*fingerprints.json")):
        data = _read_json(fingerprints)
        if not isinstance(data, dict):
            continue
        since, nodes = float(data.get("written", 0)), data.get("nodes", {})
        dag = fingerprints.name.removesuffix("fingerprints.json").rstrip(".") or "aframe"
        events = jobstate_events(run_dir / f"{dag}.jobstate.log", since)
        events.update(local_events(run_dir / "run-local.record", since))
        for node, event in events.items():
            if node not in nodes:
                continue
            if event == "success":
                state[node] = nodes[node]
            else:  # failed or removed: never complete, whatever outputs it left
                state[node] = {"digest": FAILED}
    return state


def save(run_dir: Path, state: dict[str, dict[str, str]]) -> None:
    """Write the accumulated state (our own file under RUN/.aframe-dag/)."""
    write.write_file(run_dir / COMPLETED, json.dumps(state, sort_keys=True) + "\n")


# --- the verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    complete: bool
    reason: str = ""  # why not complete (stale), or "outputs without record" (adopted)


def verdict(
    node: str, current: Fingerprint, outputs: list[str], state: dict[str, dict[str, str]]
) -> Verdict:
    """Complete, adopted (outputs with no record) or to run, with the reason."""
    record = state.get(node)
    exist = all(os.path.exists(p) for p in outputs)  # noqa: PTH110 - 10^5 calls: the cheap one
    if record is None:
        if outputs and exist:
            return Verdict(True, "outputs without record")
        return Verdict(False, "never run" if not outputs else "outputs missing")
    if record.get("digest") == FAILED:
        return Verdict(False, "failed last time")
    if record.get("digest") != current.digest:
        changed = [k for k, v in current.parts.items() if record.get(k) != v]
        return Verdict(False, f"{', '.join(changed) or 'fingerprint'} changed")
    if not exist:
        return Verdict(False, "outputs missing")
    return Verdict(True)
