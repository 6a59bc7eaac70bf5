"""`aframe-dag status RUN_DIR`: where a run stands, per stage, from the files a run leaves.

Two kinds of run leave two kinds of record:

- DAGMan writes RUN/aframe.status and, per run-time fan-out, RUN/STAGE.status
  (NODE_STATUS_FILE: a `DagStatus` ClassAd, one `NodeStatus` ad per node, a `StatusEnd`
  ad). It is rewritten at most every 30 s (the DAG's NODE_STATUS_FILE interval) and once
  more when DAGMan exits, so it can be that old. For a node whose job is in the queue
  (STATUS_SUBMITTED) it holds JobProcsQueued, JobProcsHeld and, in StatusDetails,
  "idle" or "not_idle" for the node's first job proc (DAGMan's dag.cpp: "idle" after a
  submit, evict, hold or suspend event, "not_idle" after an execute event; a held job
  stays "idle", so JobProcsHeld is read first). Our nodes queue one job each, so
  "not_idle" is a running job; any other text is counted as "queued", neither running
  nor idle. The manual documents the codes and shows "idle"; "not_idle" is from the
  source, and was seen in HTCondor 23.9's files (tests/status_samples/pool_midrun).
  For a node counted held, its job's node log (the .sub's `log`, HTCondor's job event
  log) names the job and why it is held; only held nodes' logs are read, as a log holds
  every event of every job of a stage.
- run-local appends `start|done|failed DAGFILE:NODE [TIME]` to RUN/run-local.record as
  each node starts and ends (starts are read only by builds); a live runner holds an
  flock on RUN/.run-local.lock. A node that is not recorded but has a stderr file written
  since the build was started did not succeed (it failed, or the run was
  interrupted); while a runner lives, any node not recorded may be running.

Paths written into the DAG files are those of the run dir when it was built; a run dir
seen under another path (a chroot, a copy) is read through its own path.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aframe_dag import completion, quoting, rundir
from aframe_dag.errors import RunDirError
from aframe_dag.rundir import LOCK, RECORD, Dag, DagNode, read_holds
from aframe_dag.runner import lock_holder

# NodeStatus and DagStatus values (HTCondor manual, DAGMan "Current Node Status File")
STATUS_NOT_READY = 0
STATUS_READY = 1
STATUS_PRERUN = 2
STATUS_SUBMITTED = 3
STATUS_POSTRUN = 4
STATUS_DONE = 5
STATUS_ERROR = 6
STATUS_FUTILE = 7

ENDED = ("done", "failed", "stopped")  # a run's states once nothing runs it (`--watch` ends)
TAIL_LINES = 5
REASON_WIDTH = 120  # characters of a hold reason that `render` shows
_SLACK = 1.0  # seconds
_TAIL_BYTES = 64 * 1024
COUNTS = (
    "done", "running", "idle", "waiting", "queued", "held", "failed", "futile", "not_run",
    "unknown",
)  # fmt: skip


@dataclass
class StageStatus:
    """One stage's nodes by state; `total` is None while a run-time fan-out is unexpanded."""

    name: str
    total: int | None
    done: int = 0
    running: int = 0  # job executing (DAGMan "not_idle"), or the node's POST script running
    idle: int = 0  # ready, PRE script running, or job idle in the queue
    waiting: int = 0  # DAGMan: not ready, a node it needs is not done
    queued: int = 0  # job in the queue; the records cannot tell running from idle
    held: int = 0  # job held in the queue (JobProcsHeld > 0)
    failed: int = 0
    futile: int = 0  # DAGMan: will never run, a node it needs failed
    not_run: int = 0  # no record of it running (run-local, or a run not started)
    unknown: int = 0  # not recorded as done while a run-local runner lives, or no record
    waiting_for: str | None = None  # "waiting for STAGE, ..." for an unexpanded fan-out
    note: str | None = None  # e.g. "being expanded (PRE script running)"
    # a stage whose items run several to a job (tasks_per_job): its tasks, done and all
    tasks_done: int | None = None
    tasks: int | None = None


@dataclass
class FailedNode:
    """A failed node, its stderr file (from its .sub `error`) and that file's last lines."""

    name: str
    stage: str
    stderr: Path | None  # None when the node has no job (a sub-DAG's PRE script failed)
    tail: list[str] = field(default_factory=list)
    reason: str = ""  # DAGMan's StatusDetails, or what run-local's record implies


@dataclass
class HeldJob:
    """A held node's job, from its node log: the job id and HTCondor's hold reason."""

    name: str
    stage: str
    job: str  # CLUSTER.PROC, as condor_q -better-analyze and condor_release take it
    reason: str
    code: int | None = None  # HoldReasonCode
    subcode: int | None = None  # HoldReasonSubCode


@dataclass
class RunStatus:
    """Where a run stands: how it ran, its stages in config order, its failed and held
    nodes."""

    run_dir: Path
    mode: str  # "dagman", "local" or "not started"
    state: str  # "not started", "running", "done", "failed" or "stopped"
    stages: list[StageStatus]
    failed: list[FailedNode]
    as_of: float | None = None  # DAGMan: when aframe.status was written (epoch seconds)
    runner_live: bool = False  # local: a run-local holds the run dir's lock
    runner_pid: int | None = None  # local: the live runner's pid, from the lock file
    held: list[HeldJob] = field(default_factory=list)  # DAGMan: held nodes with a node log


# --- the run dir's DAG files ----------------------------------------------------------


@dataclass
class _Stage:
    name: str
    after: list[str]
    jobs: list[DagNode]  # JOB nodes of the stage in aframe.dag
    subdag: DagNode | None = None  # the SUBDAG EXTERNAL node of a run-time fan-out
    inner: Dag | None = None  # its STAGE.dag, once written


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror}") from None


def _read_dag(path: Path) -> Dag:
    """The nodes of a .dag file, read leniently: what status does not need is skipped."""
    return rundir.read_nodes(path)


def read_stages(path: Path) -> dict[str, list[str]]:
    """Stage names in config order, each with its `after` list."""
    try:
        config = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as exc:
        raise RunDirError(f"{path}: cannot read the resolved config: {exc}") from None
    stages = config.get("stages") if isinstance(config, dict) else None
    if not isinstance(stages, dict):
        raise RunDirError(f"{path}: no `stages:` mapping (is this a run dir's config.yaml?)")
    return {
        str(name): [str(a) for a in (spec or {}).get("after") or []]
        for name, spec in stages.items()
    }


class _Paths:
    """Maps paths written into the DAG files (the run dir as built) onto RUN_DIR.

    Also tells a run's files from an earlier build's: `build` rewrites config.yaml (and
    aframe.dag, which may be edited by hand later), and leaves logs, a STAGE.dag or a lock
    of an earlier run in place (`--force` moves only DAGMan's records and
    run-local.record aside).
    """

    def __init__(self, run_dir: Path, dag: Dag):
        self.run_dir = run_dir
        written = dag.status_file.parent if dag.status_file else None
        self.written = written if written and written.is_absolute() else None
        built = _mtime(run_dir / rundir.CONFIG)
        # a second of slack: a copied run dir's files get their times in any order
        self.built = built - _SLACK if built is not None else None

    def fresh(self, path: Path) -> bool:
        """Whether the file exists and was written since the run dir was built."""
        mtime = _mtime(path)
        return mtime is not None and (self.built is None or mtime >= self.built)

    def __call__(self, path: Path) -> Path:
        """The path as seen from here."""
        if not path.is_absolute():
            return self.run_dir / path
        if self.written is not None and path.is_relative_to(self.written):
            return self.run_dir / path.relative_to(self.written)
        return path


def _stage_of(node: DagNode, names: dict[str, list[str]], stems: dict[Path, str]) -> str:
    """A node's stage: its .sub file's stem (STAGE.sub), else STAGE or STAGE-INDEX."""
    if node.subdag is not None and node.name in names:
        return node.name
    if node.submit is not None:
        stem = stems.get(node.submit)
        if stem is None:  # a stage's nodes share one .sub: its stem is taken once
            stem = stems[node.submit] = node.submit.stem
        if stem in names:
            return stem
    prefix = node.name.rsplit("-", 1)[0]
    return prefix if prefix in names else node.name


def _layout(paths: _Paths, top: Dag, config: dict[str, list[str]]) -> list[_Stage]:
    stages = {name: _Stage(name, after, []) for name, after in config.items()}
    stems: dict[Path, str] = {}
    for node in top.nodes.values():
        name = _stage_of(node, config, stems)
        stage = stages.get(name)
        if stage is None:  # a node no stage owns
            stage = stages[name] = _Stage(name, [], [])
        if node.subdag is None:
            stage.jobs.append(node)
            continue
        stage.subdag = node
        inner = paths(node.subdag)
        if inner.is_file() and paths.fresh(inner):  # else an earlier build's
            stage.inner = _read_dag(inner)
    return list(stages.values())


# --- reading the records --------------------------------------------------------------


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The file's last lines (at most the last 64 KiB are read); [] if it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


class _JobFiles:
    """Files a node's job writes, from its .sub (`error`, `log`) with $(JOB) and VARS
    expanded."""

    def __init__(self, paths: _Paths):
        self.paths = paths
        self.submits: dict[Path, rundir.Submit] = {}

    def __call__(self, node: DagNode, dag_dir: Path, command: str = "error") -> Path | None:
        """The file the node's .sub names with `command`, or None if it names none."""
        if node.submit is None:
            return None
        submit = self.paths(node.submit)
        if submit not in self.submits:
            self.submits[submit] = rundir.parse_submit(submit, strict=False)
        values = self.submits[submit]
        macros = {**node.vars, "JOB": node.name}
        name = quoting.expand_macros(values.get(command, ""), macros)
        if not name or name == "/dev/null":
            return None
        # initialdir holds relative output, error and (user) log paths
        initialdir = quoting.expand_macros(values.get("initialdir", ""), macros)
        target = Path(initialdir) / name if initialdir else Path(name)
        # condor_submit runs in the DAG's directory: relative paths start there
        return self.paths(target) if target.is_absolute() else dag_dir / target


def _int(ad: dict[str, Any], key: str, default: int = 0) -> int:
    value = ad.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(ad: dict[str, Any], key: str) -> str:
    value = ad.get(key)
    return value if isinstance(value, str) else ""


# a node's count under DAGMan by its NodeStatus, unless its job is submitted
_DAGMAN_COUNTS = {
    STATUS_NOT_READY: "waiting",
    STATUS_READY: "idle",
    STATUS_PRERUN: "idle",  # the job is not submitted yet
    STATUS_POSTRUN: "running",
    STATUS_DONE: "done",
    STATUS_ERROR: "failed",
    STATUS_FUTILE: "futile",
}


def _dagman_state(ad: dict[str, Any]) -> str:
    """A node's count under DAGMan (one of COUNTS) from its NodeStatus ad."""
    status = _int(ad, "NodeStatus", -1)
    if status == STATUS_SUBMITTED:
        if _int(ad, "JobProcsHeld") > 0:
            return "held"
        details = _str(ad, "StatusDetails")
        return {"not_idle": "running", "idle": "idle"}.get(details, "queued")
    return _DAGMAN_COUNTS.get(status, "unknown")


def _runner_lock(run_dir: Path) -> tuple[bool, int | None]:
    """Whether a run-local holds the run dir's lock, and its pid (from the lock file)."""
    holder = lock_holder(run_dir)
    if holder is None:
        return False, None
    return True, int(holder) if holder.isdigit() else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


# --- per-mode status ------------------------------------------------------------------


class _Builder:
    """Counts nodes per stage and collects failed nodes."""

    def __init__(self, stages: list[_Stage], files: _JobFiles):
        self.stages = stages
        self.files = files
        self.result: dict[str, StageStatus] = {}
        self.failed: list[FailedNode] = []
        self.held: list[tuple[str, DagNode, Path]] = []  # stage, node, its DAG's dir

    def stage(self, stage: _Stage, expanded: bool) -> StageStatus:
        """A StageStatus with the stage's total; counts are added with `count`."""
        total = None
        if stage.subdag is None or expanded:
            inner = len(stage.inner.nodes) if expanded and stage.inner else 0
            total = len(stage.jobs) + inner
        status = self.result[stage.name] = StageStatus(stage.name, total)
        return status

    def count(self, status: StageStatus, state: str, nodes: int = 1) -> None:
        """Add `nodes` nodes in `state` (one of COUNTS)."""
        setattr(status, state, getattr(status, state) + nodes)

    def fail(self, stage: str, node: DagNode, dag_dir: Path, reason: str) -> None:
        """Record a failed node with its stderr file and tail."""
        path = self.files(node, dag_dir)
        tail = _tail(path) if path is not None else []
        self.failed.append(FailedNode(node.name, stage, path, tail, reason))

    def held_jobs(self) -> list[HeldJob]:
        """The held nodes' jobs and reasons, from the node logs of those nodes only."""
        logs: dict[Path, dict[str, rundir.Hold]] = {}
        found = []
        for stage, node, dag_dir in self.held:
            log = self.files(node, dag_dir, "log")
            if log is None:
                continue
            if log not in logs:
                logs[log] = read_holds(log)
            hold = logs[log].get(node.name)
            if hold is not None:
                found.append(HeldJob(node.name, stage, *hold))
        return found

    def waiting(self, stage: _Stage) -> str | None:
        """The text `waiting for A, B`, naming the parent stages not yet complete."""
        pending = []
        for parent in stage.after:
            status = self.result.get(parent)
            if status is None or status.total is None or status.done < status.total:
                pending.append(parent)
        return f"waiting for {', '.join(pending)}" if pending else None

    def finish(self) -> list[StageStatus]:
        """The stages in config order."""
        return [self.result[s.name] for s in self.stages]


def _dagman(run_dir: Path, paths: _Paths, top: Dag, stages: list[_Stage]) -> RunStatus:
    status_path = paths(top.status_file) if top.status_file else run_dir / rundir.NODE_STATUS
    dag_ad, top_ads, end_ad = rundir.read_node_status(status_path)
    build = _Builder(stages, _JobFiles(paths))
    unexpanded: list[tuple[_Stage, StageStatus, int]] = []
    for stage in stages:
        sub_state = STATUS_NOT_READY
        if stage.subdag is not None:
            sub_state = _int(top_ads.get(stage.subdag.name, {}), "NodeStatus", STATUS_NOT_READY)
        # before DAGMan runs the PRE script in this run, a STAGE.dag is an earlier one's
        started = sub_state in (STATUS_SUBMITTED, STATUS_POSTRUN, STATUS_DONE, STATUS_ERROR)
        expanded = stage.inner is not None and started
        status = build.stage(stage, expanded)
        tally: Counter[str] = Counter()
        for node in stage.jobs:
            ad = top_ads.get(node.name)
            state = _dagman_state(ad) if ad is not None else "unknown"
            tally[state] += 1
            if state == "held":
                build.held.append((stage.name, node, top.path.parent))
            if state == "failed":
                assert ad is not None
                build.fail(stage.name, node, top.path.parent, _str(ad, "StatusDetails"))
        for state, count in tally.items():
            build.count(status, state, count)
        if stage.subdag is None:
            continue
        sub_ad = top_ads.get(stage.subdag.name, {})
        if not expanded:
            unexpanded.append((stage, status, sub_state))
            continue
        assert stage.inner is not None
        inner = stage.inner
        inner_status = paths(inner.status_file) if inner.status_file else None
        inner_ads = None
        if inner_status is not None and inner_status.is_file():
            inner_ads = rundir.read_node_status(inner_status)[1]
        failures = len(build.failed)
        for node in inner.nodes.values():
            if inner_ads is not None:
                ad = inner_ads.get(node.name)
                state = _dagman_state(ad) if ad is not None else "unknown"
            else:  # the sub-DAG's DAGMan has not written its status file yet
                ad = None
                state = {STATUS_DONE: "done", STATUS_SUBMITTED: "idle"}.get(sub_state, "unknown")
            build.count(status, state)
            if state == "held":
                build.held.append((stage.name, node, inner.path.parent))
            if state == "failed" and ad is not None:
                build.fail(stage.name, node, inner.path.parent, _str(ad, "StatusDetails"))
        if sub_state == STATUS_ERROR and len(build.failed) == failures:
            reason = _str(sub_ad, "StatusDetails") or "its sub-DAG failed"
            build.failed.append(FailedNode(stage.subdag.name, stage.name, None, [], reason))
    for stage, status, sub_state in unexpanded:
        if sub_state == STATUS_PRERUN:
            status.note = "being expanded (PRE script running)"
        elif sub_state == STATUS_ERROR:
            status.failed = 1
            sub_ad = top_ads.get(stage.subdag.name, {}) if stage.subdag else {}
            details = _str(sub_ad, "StatusDetails")
            status.note = "expansion failed (PRE script output: aframe.dag.dagman.out)"
            assert stage.subdag is not None
            build.failed.append(
                FailedNode(stage.subdag.name, stage.name, None, [], details or "PRE script failed")
            )
        elif sub_state == STATUS_FUTILE:
            status.futile = 1
        else:
            status.waiting_for = build.waiting(stage)
    dag_status = _int(dag_ad, "DagStatus", -1)
    if dag_status == STATUS_DONE:
        state = "done"
    elif dag_status == STATUS_ERROR:
        state = "failed"
    elif end_ad and _int(end_ad, "NextUpdate", -1) == 0:
        state = "stopped"  # DAGMan wrote its last update without finishing
    else:
        state = "running"
    timestamp = _int(dag_ad, "Timestamp", -1)
    as_of = float(timestamp) if timestamp >= 0 else None
    return RunStatus(
        run_dir, "dagman", state, build.finish(), build.failed, as_of=as_of,
        held=build.held_jobs(),
    )  # fmt: skip


FAILED_RECORDED = "failed (run-local's record)"
FAILED_UNRECORDED = "started, not recorded as done (it failed, or the run was stopped)"


def _local(run_dir: Path, paths: _Paths, top: Dag, stages: list[_Stage], mode: str) -> RunStatus:
    live, pid = _runner_lock(run_dir) if mode == "local" else (False, None)
    started = _mtime(run_dir / LOCK) if live else None  # the runner writes it as it starts
    events = rundir.read_record(run_dir / RECORD)
    done = rundir.done_times(events)
    failed = {k: e.when for k, e in events.items() if e.state == "failed"}
    build = _Builder(stages, _JobFiles(paths))
    for stage in stages:
        status = build.stage(stage, stage.inner is not None)
        groups = [(top, stage.jobs)]
        if stage.inner is not None:
            groups.append((stage.inner, list(stage.inner.nodes.values())))
        for dag, nodes in groups:
            dag_dir = dag.path.parent
            written = _mtime(dag.path) or 0.0
            for node in nodes:
                key = f"{node.dag}:{node.name}"
                # as run-local reads it: a success older than the DAG file is an old build's
                if node.done or done.get(key, -1.0) >= written:
                    build.count(status, "done")
                elif mode != "local":
                    build.count(status, "not_run")
                elif key in failed and not live:
                    build.count(status, "failed")
                    build.fail(stage.name, node, dag_dir, FAILED_RECORDED)
                elif live:
                    when = failed.get(key)
                    # failed under this runner, or a failure before it that it may retry
                    if key in failed and when is not None and started and when >= started:
                        build.count(status, "failed")
                        build.fail(stage.name, node, dag_dir, FAILED_RECORDED)
                    else:
                        build.count(status, "unknown")
                else:
                    stderr = build.files(node, dag_dir)
                    if stderr is not None and paths.fresh(stderr):
                        build.count(status, "failed")
                        build.fail(stage.name, node, dag_dir, FAILED_UNRECORDED)
                    else:
                        build.count(status, "not_run")
    for stage in stages:
        if stage.subdag is None or stage.inner is not None:
            continue
        status = build.result[stage.name]
        key = f"{stage.subdag.dag}:{stage.subdag.name}"
        when = failed.get(key)
        if key in failed and (not live or (when is not None and started and when >= started)):
            status.failed = 1  # its PRE script (`aframe-dag expand`) failed
            status.note = "expansion failed"
            build.failed.append(
                FailedNode(stage.subdag.name, stage.name, None, [], FAILED_RECORDED)
            )
        else:
            status.waiting_for = build.waiting(stage)
    result = build.finish()
    if mode != "local":
        state = "not started"
    elif live:
        state = "running"
    elif build.failed:
        state = "failed"
    elif all(s.total is not None and s.done == s.total for s in result):
        state = "done"
    else:
        state = "stopped"
    return RunStatus(run_dir, mode, state, result, build.failed, runner_live=live, runner_pid=pid)


# --- entry points ---------------------------------------------------------------------


def read_status(run_dir: str | Path) -> RunStatus:
    """Where the run in RUN_DIR stands, from DAGMan's status files or run-local's record."""
    # reading makes an object or two per node and no cycles: the collector's passes over
    # 10^5 of them would be a fifth of the time
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _read_status(Path(run_dir).absolute())
    finally:
        if collecting:
            gc.enable()


def _read_status(run_path: Path) -> RunStatus:
    for name in (rundir.DAG, rundir.CONFIG):
        if not (run_path / name).is_file():
            raise RunDirError(
                f"{run_path}: not a run dir (no {name}); build one with `aframe-dag build`"
            )
    config = read_stages(run_path / rundir.CONFIG)
    top = _read_dag(run_path / rundir.DAG)
    paths = _Paths(run_path, top)
    stages = _layout(paths, top, config)
    status_file = paths(top.status_file) if top.status_file else run_path / rundir.NODE_STATUS
    # records of a run of an earlier build do not count (the record does: run-local
    # honours it whenever it was written)
    dagman = _mtime(status_file) if paths.fresh(status_file) else None
    lock = _mtime(run_path / LOCK) if paths.fresh(run_path / LOCK) else None
    local = max((t for t in (_mtime(run_path / RECORD), lock) if t is not None), default=None)
    if dagman is not None and (local is None or dagman >= local):
        status = _dagman(run_path, paths, top, stages)
    else:
        mode = "local" if local is not None else "not started"
        status = _local(run_path, paths, top, stages, mode)
    # the DAG files read already: a clustered stage's jobs are counted from them
    read = {top.path: top, **{s.inner.path: s.inner for s in stages if s.inner is not None}}
    for stage in status.stages:
        _count_tasks(run_path, stage, read)
    return status


@dataclass
class StageJobs:
    """A stage as `report` reads it: its nodes of this build (aframe.dag's, and its sub-DAG's
    if written for this build) and, by .sub file (its own, its service's), the node log
    that its jobs write, all as seen through RUN_DIR."""

    name: str
    nodes: list[str]
    logs: dict[Path, Path | None]  # .sub -> node log (a stage's nodes share both)


def stage_jobs(run_dir: str | Path) -> list[StageJobs]:
    """Each stage's nodes and node logs, in config order."""
    run_path = Path(run_dir).absolute()
    top = _read_dag(run_path / rundir.DAG)
    paths = _Paths(run_path, top)
    files = _JobFiles(paths)
    result = []
    for stage in _layout(paths, top, read_stages(run_path / rundir.CONFIG)):
        groups = [(top, stage.jobs)]
        if stage.inner is not None:
            groups.append((stage.inner, list(stage.inner.nodes.values())))
        service = run_path / f"{stage.name}-service.sub"
        if service.is_file():  # its SERVICE node, beside its nodes
            groups.append((top, [DagNode(service.stem, service)]))
        logs: dict[Path, Path | None] = {}
        seen: set[Path] = set()  # .sub files as the DAG names them: each resolved once
        for dag, nodes in groups:
            for node in nodes:  # the first node of each .sub names the log of them all
                if node.submit is not None and node.submit not in seen:
                    seen.add(node.submit)
                    logs.setdefault(paths(node.submit), files(node, dag.path.parent, "log"))
        names = [node.name for _, nodes in groups for node in nodes]
        result.append(StageJobs(stage.name, names, logs))
    return result


def _count_tasks(run_path: Path, stage: StageStatus, read: dict[Path, Dag]) -> None:
    """Tasks of a clustered stage: those complete when it was written (its jobs' VARS list
    only the rest), and those its record shows done since. `read`: DAG files parsed
    already, by path (a 10^5-node aframe.dag is not parsed again per clustered stage)."""
    tasks_file = run_path / rundir.tasks_file(stage.name)
    written = _mtime(tasks_file)
    if written is None:
        return
    sub_dag = run_path / f"{stage.name}.dag"
    path = sub_dag if sub_dag.is_file() else run_path / rundir.DAG
    with contextlib.suppress(OSError):
        stage.tasks = rundir.count_tasks(tasks_file)
        dag = read.get(path) or _read_dag(path)
        pending = _pending_tasks(dag, stage.name)
        events = completion.local_events(run_path / rundir.tasks_record(stage.name), written)
        done_since = sum(1 for task in pending if events.get(task) == "success")
        stage.tasks_done = stage.tasks - len(pending) + done_since


def _pending_tasks(dag: Dag, stage: str) -> set[str]:
    """Tasks listed by the not-DONE jobs of one stage in a DAG file."""
    jobs = dag.nodes.values()
    return {
        task
        for job in jobs
        if job.submit is not None and job.submit.name == f"{stage}.sub" and not job.done
        for task in job.vars.get("tasks", "").split()
    }


def to_json(status: RunStatus) -> dict[str, Any]:
    """The status as JSON-ready data (paths as strings), for `status --json`."""
    data = asdict(status)
    data["run_dir"] = str(status.run_dir)
    for failed in data["failed"]:
        failed["stderr"] = None if failed["stderr"] is None else str(failed["stderr"])
    return data


def from_json(data: dict[str, Any]) -> RunStatus:
    """The RunStatus that `to_json` wrote."""
    fields = {k: v for k, v in data.items() if k not in ("stages", "failed", "held", "run_dir")}
    return RunStatus(
        run_dir=Path(data["run_dir"]),
        stages=[StageStatus(**s) for s in data["stages"]],
        failed=[
            FailedNode(**{**f, "stderr": None if f["stderr"] is None else Path(f["stderr"])})
            for f in data["failed"]
        ],
        held=[HeldJob(**h) for h in data.get("held", [])],  # none before held jobs were named
        **fields,
    )


_LABELS = {
    "running": "running",
    "idle": "idle",
    "waiting": "waiting (for nodes they need)",
    "queued": "queued (running or idle: not recorded)",
    "held": "held",
    "failed": "failed",
    "futile": "will not run (a node it needs failed)",
    "not_run": "not run",
    "unknown": "not recorded as done (running or waiting)",
}


def _header(status: RunStatus) -> str:
    if status.mode == "not started":
        return f"{status.run_dir}: not started (no DAGMan status file, no run-local record)"
    if status.mode == "dagman":
        when = ""
        if status.as_of is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.as_of))
            when = f", as DAGMan's status file said at {stamp}"
        return f"{status.run_dir}: DAGMan run, {status.state}{when}"
    runner = ""
    if status.runner_live:
        runner = f" (run-local pid {status.runner_pid} holds the lock)"
        if status.runner_pid is None:
            runner = " (a run-local holds the lock)"
    return f"{status.run_dir}: run-local run, {status.state}{runner}"


def render(status: RunStatus, width: int = 40) -> list[str]:
    """Plain-text lines: a header, one line per stage (bar `width` cells wide), failures."""
    lines = [_header(status)]
    name_width = max((len(s.name) for s in status.stages), default=0)
    totals = [f"{s.done}/{'?' if s.total is None else s.total}" for s in status.stages]
    count_width = max((len(t) for t in totals), default=0)
    for stage, counts in zip(status.stages, totals, strict=True):
        filled = 0
        if stage.total:
            filled = width if stage.done >= stage.total else stage.done * width // stage.total
        bar = "[" + "#" * filled + "." * (width - filled) + "]"
        extras = [f"{getattr(stage, key)} {label}" for key, label in _LABELS.items()
                  if getattr(stage, key)]  # fmt: skip
        if stage.waiting_for:
            extras.append(stage.waiting_for)
        if stage.note:
            extras.append(stage.note)
        if stage.total is None and not stage.waiting_for and not stage.note:
            extras.append("decided at run time")
        if stage.tasks is not None:
            extras.insert(0, f"jobs; {stage.tasks_done}/{stage.tasks} tasks")
        line = f"{stage.name:<{name_width}}  {bar}  {counts:>{count_width}}"
        lines.append(f"{line}  {', '.join(extras)}".rstrip())
    if status.held:
        lines.append(f"held nodes ({len(status.held)}):")
        for held in status.held:
            reason = " ".join(held.reason.split()) or "(no reason given)"
            if len(reason) > REASON_WIDTH:
                reason = reason[: REASON_WIDTH - 3] + "..."
            lines.append(f"  {held.name} (job {held.job}): {reason}")
        job = status.held[0].job
        lines.append(f"  why: condor_q -better-analyze {job}   release: condor_release {job}")
    if status.failed:
        lines.append(f"failed nodes ({len(status.failed)}):")
    for failed in status.failed:
        lines.append(f"  {failed.name}: {failed.reason}" if failed.reason else f"  {failed.name}")
        if failed.stderr is not None:
            lines.append(f"    stderr: {failed.stderr}")
        lines.extend(f"    | {line}" for line in failed.tail)
    return lines
