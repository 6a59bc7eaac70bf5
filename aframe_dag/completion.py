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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aframe_dag import rundir, write
from aframe_dag.rundir import COMPLETED

FAILED = "failed"


@dataclass(frozen=True)
class Fingerprint:
    """What a stage's nodes share: the hash of its parts, and the parts (to say what
    changed). A node's digest is `BASE/VARS`: no hashing per node."""

    base: str
    parts: dict[str, str]
    inputs: dict[str, Any] = field(default_factory=dict)  # readable (`explain.stage_inputs`)


@dataclass
class State:
    """Last known outcome of each node (its digest, or FAILED) and the stage parts seen."""

    nodes: dict[str, str] = field(default_factory=dict)
    bases: dict[str, dict[str, str]] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by base, to explain


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
    recipe: list[str] = []
    env: list[str] = []
    for line in submit_text.split("\n"):
        if line.lstrip().startswith("#"):
            continue
        (env if rundir.submit_command(line) in ("environment", "getenv") else recipe).append(line)
    return digest(*recipe), digest(*env)


def stage_fingerprint(
    recipe: str, env: str, image: str, inputs: dict[str, Any] | None = None
) -> Fingerprint:
    """The part of a fingerprint all nodes of a stage share (hashed once per stage), and
    the `inputs` it was made of, kept to say what changed."""
    parts = {"command": recipe, "environment": env, "image": image}
    return Fingerprint(digest(recipe, env, image), parts, inputs or {})


class Outputs:
    """Which output files exist, listing each directory once (10^5 stats cost seconds)."""

    def __init__(self) -> None:
        self._listings: dict[str, set[str]] = {}

    def exist(self, paths: list[str]) -> bool:
        for path in paths:
            folder, _, name = path.rpartition("/")
            if folder not in self._listings:
                try:
                    self._listings[folder] = set(os.listdir(folder or "/"))  # noqa: PTH208
                except OSError:
                    self._listings[folder] = set()
            if name not in self._listings[folder]:
                return False
        return True


# --- records --------------------------------------------------------------------------


def write_fingerprints(
    path: Path, fingerprints: dict[str, Fingerprint], clustered: Iterable[str], dag: str
) -> None:
    """Record each stage's fingerprint for the DAG file `dag`, and when it was written;
    the nodes that succeeded under the file it replaces are carried over."""
    write.write_file(path, fingerprints_text(fingerprints, clustered, dag, done=successes(path)))


def fingerprints_text(
    fingerprints: dict[str, Fingerprint],
    clustered: Iterable[str],
    dag: str,
    build: dict[str, Any] | None = None,
    done: dict[str, str] | None = None,
) -> str:
    """The fingerprints file for the DAG file `dag`, written now: each stage's fingerprint
    and, of the `clustered` stages (items run several to a job), those among them.

    A node's digest is its stage's base and its VARS, which the DAG file itself holds:
    `harvest` reads them back from there, so nothing is written per node.
    """
    data = {
        "written": time.time(),
        "dag": dag,
        "stages": {name: f.base for name, f in fingerprints.items()},
        "bases": {f.base: f.parts for f in fingerprints.values()},
        "inputs": {f.base: f.inputs for f in fingerprints.values() if f.inputs},
        # clustered stages: their tasks record their own events
        "tasks": [name for name in clustered if name in fingerprints],
    }
    if build is not None:  # a build's: how it was made (`build_record`)
        data["build"] = build
    if done:  # an expansion's: the nodes that succeeded before it (`successes`)
        data["done"] = done
    return json.dumps(data, separators=(",", ":")) + "\n"


def build_record(run_dir: Path) -> dict[str, Any]:
    """What the run dir's last build recorded of itself in its fingerprints file (command
    line, directory, host, Python and aframe-dag versions); {} if none."""
    build = read_json(run_dir / rundir.FINGERPRINTS).get("build")
    return build if isinstance(build, dict) else {}


def node_digests(dag: Path, stages: dict[str, str], wanted: set[str]) -> dict[str, str]:
    """`BASE/VARS` of the `wanted` nodes of a DAG file, from its JOB and VARS lines."""
    digests: dict[str, str] = {}
    for node, pairs in rundir.vars_texts(dag, wanted).items():
        stage = rundir.node_stage(node, stages)
        if stage is not None:
            digests[node] = f"{stages[stage]}/{pairs}"
    return digests


def read_json(path: Path) -> dict[str, Any]:
    """A record's JSON object; {} if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def task_digests(tasks_file: Path, base: str, wanted: set[str]) -> dict[str, str]:
    """`BASE/FIELDS` of the `wanted` tasks of a clustered stage, from RUN/STAGE.tasks."""
    digests: dict[str, str] = {}
    for line in rundir.lines(tasks_file):
        node, _, pairs = line.partition(" ")
        if node in wanted:
            digests[node] = f"{base}/{pairs}"
    return digests


def local_events(
    path: Path, since: float, record: dict[str, rundir.Event] | None = None
) -> dict[str, str]:
    """Each node's last event in run-local's record (or a tasks record), by rundir's rule;
    `record`: the record at `path` already read.

    A success counts from `since` on (before, it was an older build's node). An unfinished
    start or a failure counts however old: what the node left behind is not whole.
    """
    events: dict[str, str] = {}
    for key, event in (rundir.read_record(path) if record is None else record).items():
        node = key.split(":", 1)[-1]  # run-local's DAG:NODE, or a task's name
        if event.state != "done":
            events[node] = "failure"
        elif event.when is not None and event.when >= since:
            events[node] = "success"
    return events


def harvest(run_dir: Path) -> State:
    """The accumulated state, updated with every record made since each build."""
    saved = read_json(run_dir / COMPLETED)
    state = State(
        dict(saved.get("nodes", {})), dict(saved.get("bases", {})), dict(saved.get("inputs", {}))
    )
    files = [read_json(path) for path in sorted(run_dir.glob(f"*{rundir.FINGERPRINTS}"))]
    # oldest first: a newer DAG's records of a node (a rebuild wrote into aframe.dag a node
    # that an older sub-DAG had run) outweigh an older one's
    record = rundir.read_record(run_dir / rundir.RECORD)  # run-local's: once, for every DAG
    for data in sorted((d for d in files if "dag" in d), key=_written):
        state.bases.update(data.get("bases", {}))
        state.inputs.update(data.get("inputs", {}))
        state.nodes.update(recorded(run_dir, data, record))
    return state


def _written(data: dict[str, Any]) -> float:
    try:
        return float(data.get("written", 0))
    except (TypeError, ValueError):
        return 0.0


def successes(fingerprints: Path) -> dict[str, str]:
    """The digests of the nodes that succeeded under a fingerprints file: what its DAG's
    next expansion carries over (`done`), since its records then predate the new file."""
    data = read_json(fingerprints)
    if "dag" not in data:
        return {}
    nodes = recorded(fingerprints.parent, data)
    return {node: digest for node, digest in nodes.items() if digest != FAILED}


def recorded(
    run_dir: Path, data: dict[str, Any], record: dict[str, rundir.Event] | None = None
) -> dict[str, str]:
    """Each node's digest (FAILED if it failed) from the records made since a fingerprints
    file was written, over the successes it carried over from before; `record`: run-local's,
    already read."""
    nodes = dict(data.get("done", {}))
    since = _written(data)
    dag = run_dir / data["dag"]
    events = rundir.jobstate_events(rundir.jobstate_log(dag), since)
    events.update(local_events(run_dir / rundir.RECORD, since, record))
    if events:
        digests = node_digests(dag, data.get("stages", {}), set(events))
        _settle_events(nodes, events, digests)
    for stage in data.get("tasks", []):
        events = local_events(run_dir / rundir.tasks_record(stage), since)
        base = data.get("stages", {}).get(stage, "")
        digests = task_digests(run_dir / rundir.tasks_file(stage), base, set(events))
        _settle_events(nodes, events, digests)
    return nodes


def _settle_events(nodes: dict[str, str], events: dict[str, str], digests: dict[str, str]) -> None:
    for node, event in events.items():
        if node in digests:
            # a failed or removed node is never complete, whatever outputs it left
            nodes[node] = digests[node] if event == "success" else FAILED


def state_text(state: State) -> str:
    """The accumulated state, as RUN/.aframe-dag/completed.json holds it."""
    used = {digest.partition("/")[0] for digest in state.nodes.values()}
    inputs = {base: kept for base, kept in state.inputs.items() if base in used}
    data = {"nodes": state.nodes, "bases": state.bases, "inputs": inputs}
    return json.dumps(data, separators=(",", ":")) + "\n"


# --- the verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    complete: bool
    reason: str = ""  # why not complete (stale), or "outputs without record" (adopted)


def verdict(
    node: str,
    stage: Fingerprint,
    item: str,
    outputs: list[str],
    state: State,
    files: Outputs,
) -> Verdict:
    """Complete, adopted (outputs with no record) or to run, with the reason."""
    recorded = state.nodes.get(node)
    exist = files.exist(outputs)
    if recorded is None:
        if outputs and exist:
            return ADOPTED
        return NEVER_RUN if not outputs else MISSING
    if recorded == FAILED:
        return FAILED_LAST_TIME
    if recorded != f"{stage.base}/{item}":
        base, _, before_item = recorded.partition("/")
        before = state.bases.get(base, {})
        changed = {k for k, v in stage.parts.items() if before.get(k) != v}
        if before_item != item:
            changed.add("command")
        return Verdict(False, f"{', '.join(sorted(changed)) or 'fingerprint'} changed")
    if not exist:
        return MISSING
    return COMPLETE


@dataclass(frozen=True)
class Judgement:
    """What a build finds of a planned stage's nodes (a run-time stage has none)."""

    fingerprint: Fingerprint  # what its nodes share now
    recorded: dict[str, str]  # node: the digest it last succeeded with
    verdicts: dict[str, Verdict]  # node: complete or not, and why
    # the inputs and parts of the fingerprints seen before, by base (`explain`)
    inputs_seen: dict[str, dict[str, Any]] = field(default_factory=dict)
    bases_seen: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def done(self) -> set[str]:
        return {n for n, v in self.verdicts.items() if v.complete}

    @property
    def complete(self) -> bool:
        return all(v.complete for v in self.verdicts.values())


# the common verdicts, shared (10^5 nodes make 10^5 of them otherwise)
COMPLETE = Verdict(True)
ADOPTED = Verdict(True, "outputs without record")
NEVER_RUN = Verdict(False, "never run")
MISSING = Verdict(False, "outputs missing")
FAILED_LAST_TIME = Verdict(False, "failed last time")
