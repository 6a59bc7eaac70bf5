"""run-local: run a run dir's DAG on this machine, node for node as DAGMan would.

The runner reads the run dir's .dag and .sub files (not an in-memory plan), so a hand
edit is honoured and both modes run the same executable, arguments, environment and
log paths. Run-time fan-out takes DAGMan's path: the SUBDAG node's PRE script writes
the sub-DAG, then its nodes run.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from aframe_dag import graph, quoting, rundir, secrets, write
from aframe_dag.errors import AframeDagError, RunDirError
from aframe_dag.rundir import LOCK, RECORD, SCRATCH

# The variables condor_submit_dag lets into DAGMan's own environment (23.x), from which
# node jobs are submitted; a DAG's ENV GET adds more. Seen in a *.condor.sub on the pool.
DAGMAN_GETENV = (
    "CONDOR_CONFIG", "_CONDOR_*", "PATH", "PYTHONPATH", "PERL*", "PEGASUS_*", "TZ", "HOME",
    "USER", "LANG", "LC_ALL", "BEARER_TOKEN", "BEARER_TOKEN_FILE", "XDG_RUNTIME_DIR",
)  # fmt: skip
NO_GPU = "10000"  # what HTCondor sets for a job that asked for no GPU
GPU_ID = re.compile(r"[0-9]+|(?:GPU|MIG)-[0-9A-Za-z-]+")


class RunError(AframeDagError):
    """run-local cannot start or go on: a missing program, a bad --gpus, a lock held by
    another, its own files (record, lock, logs) that cannot be read or written."""


def file_error(exc: OSError) -> RunError:
    """An OS error on one of run-local's own files, as one line naming the file."""
    name = f"{exc.filename}: " if exc.filename is not None else ""
    return RunError(f"{name}{exc.strerror or exc}")


@dataclass
class Task:
    """A node to run: a job, or a sub-DAG to expand."""

    key: str  # unique across the run: DAGFILE:NODE
    node: rundir.DagNode
    dag: rundir.Dag
    parents: list[str]
    attempts: int = 0
    gpus: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    children: list[str] = field(default_factory=list)  # nodes of an expanded sub-DAG
    state: str = "waiting"  # waiting, running, done, failed, blocked
    command: Command | None = None
    deferred_until: float = 0.0  # a PRE script asked to be run again later

    @property
    def category(self) -> tuple[str, str] | None:
        cat = self.node.category
        return (str(self.dag.path), cat) if cat else None


@dataclass
class Command:
    """What a job node runs: program, arguments, environment, files."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    gpus: int
    transfer: Transfer | None = None
    hold_exit: int | None = None  # the exit code HTCondor holds the job on (on_exit_hold)
    hold_reason: str = ""
    checkpoint_exit: int | None = None  # checkpoint_exit_code: keep the checkpoint, go on


@dataclass
class Transfer:
    """HTCondor's file transfer, done here: the job runs in a scratch dir that mirrors
    `origin` (preserve_relative_paths), inputs linked in, outputs moved back at exit.
    A self-checkpointing job's checkpoint files are kept in `spool` when it exits with
    checkpoint_exit_code, and sent back with the inputs while the job is this build's."""

    scratch: Path
    origin: Path
    built: Path  # the job's .sub: a spool older than it is an earlier build's
    inputs: list[str]
    outputs: list[str]
    checkpoint: list[str]

    @property
    def spool(self) -> Path:
        return self.scratch.with_name(self.scratch.name + ".checkpoint")

    def prepare(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        for entry in self.inputs:
            source = self.origin / entry
            if not source.exists():
                raise RunDirError(f"input {source} does not exist")
            target = self.scratch / entry
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)  # linked, not copied: training data is large
        if self.spool.exists():
            if self.spool.stat().st_mtime_ns >= self.built.stat().st_mtime_ns:
                shutil.copytree(self.spool, self.scratch, dirs_exist_ok=True)
            else:
                shutil.rmtree(self.spool)

    def keep_checkpoint(self) -> None:
        """What HTCondor does when the job exits with checkpoint_exit_code."""
        kept = self.spool.with_name(self.spool.name + ".new")
        shutil.rmtree(kept, ignore_errors=True)
        for entry in self.checkpoint:
            source, target = self.scratch / entry, kept / entry
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.exists():
                shutil.copy2(source, target)
        shutil.rmtree(self.spool, ignore_errors=True)
        kept.rename(self.spool)  # whole or not at all, as HTCondor commits a checkpoint

    def bring_back(self) -> None:
        for entry in self.outputs:
            source, target = self.scratch / entry, self.origin / entry
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.spool, ignore_errors=True)  # the job left the queue


@dataclass
class Outcome:
    """What a run did. Nodes are job nodes: a sub-DAG node is its nodes (and its PRE
    script, which decides them, is counted as a failure only when it fails)."""

    done: list[str]  # succeeded in this run
    failed: list[tuple[str, str]]  # key, message (stderr path or reason)
    skipped: int  # done before this run
    not_run: list[str] = field(default_factory=list)  # a node they need failed
    interrupted: bool = False


@dataclass
class Progress:
    """Where a run stands, for the progress display."""

    done: int
    failed: int
    total: int
    running: list[str]


Report = Callable[[str, Progress], None]
ENDED = ("done", "FAIL", "retry", "checkpoint", "stop")  # an attempt ends, a service stops


def parse_gpus(text: str | None, source: str = "--gpus") -> list[str]:
    """GPU ids from --gpus or CUDA_VISIBLE_DEVICES: "0,1" -> ["0", "1"]; "" -> none.

    An id is what CUDA_VISIBLE_DEVICES takes: an index or a GPU-/MIG- UUID.
    """
    if not text:
        return []
    ids = [g.strip() for g in text.split(",")]
    for gpu in ids:
        if not GPU_ID.fullmatch(gpu):
            raise RunError(
                f"{source}: {gpu!r} is not a GPU id (an index such as 0 or a GPU-/MIG- "
                f"UUID); expected comma-separated ids, got {text!r}"
            )
    ids = [str(int(g)) if g.isdigit() else g for g in ids]  # 00 is 0
    if len(set(ids)) != len(ids):
        raise RunError(f"{source}: each GPU may be named once, got {text!r}")
    return ids


def visible_gpus() -> list[str]:
    """The GPUs in CUDA_VISIBLE_DEVICES: run-local's default for --gpus."""
    return parse_gpus(
        os.environ.get("CUDA_VISIBLE_DEVICES"), "CUDA_VISIBLE_DEVICES (or choose with --gpus)"
    )


def default_gpus(run_dir: str | Path) -> list[str]:
    """run-local's GPUs when given no --gpus: those of the run dir's `build --gpus`, else
    CUDA_VISIBLE_DEVICES."""
    recorded = rundir.read_gpus(Path(run_dir))
    if not recorded:
        return visible_gpus()
    where = f"{Path(run_dir) / rundir.GPUS} (from build --gpus; or choose with --gpus)"
    return parse_gpus(recorded, where)


def dagman_environment(base_env: dict[str, str], dag: rundir.Dag) -> dict[str, str]:
    """What DAGMan would hold of `base_env`: getenv can only pass on what is there."""
    patterns = (*DAGMAN_GETENV, *dag.env_get)
    return {k: v for k, v in base_env.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def job_command(
    node: rundir.DagNode,
    dag: rundir.Dag,
    base_env: dict[str, str],
    submit: rundir.Submit | None = None,
) -> Command:
    """The process HTCondor would start for this node, from its .sub and VARS;
    `base_env` is what DAGMan holds (dagman_environment)."""
    assert node.submit is not None
    submit = submit or rundir.parse_submit(node.submit)
    macros = {**submit.included_macros(), **node.vars, "JOB": node.name}

    def value(key: str, default: str = "") -> str:
        return quoting.expand_macros(submit.get(key, default), macros)

    where = str(submit.path)
    try:
        args = quoting.split_arguments(value("arguments", '""'))
        env = quoting.split_environment(value("environment", '""'))
    except quoting.QuotingError as exc:
        raise RunDirError(f"{where}: {exc}") from None
    for name in [n.strip() for n in value("getenv").split(",") if n.strip()]:
        if name.lower() in ("true", "false") or "*" in name:
            raise RunDirError(f"{where}: getenv = {name} is not supported by run-local")
        if name in base_env and name not in env:
            env[name] = base_env[name]
    executable = value("executable")
    if value("universe", "vanilla") == "container":
        image = value("container_image")
        gpus = int(value("request_gpus", "0") or 0)
        args = ["exec", *(["--nv"] if gpus else []), image, executable, *args]
        executable = "apptainer"
    initialdir = Path(value("initialdir") or str(node.submit.parent))
    transfer = None
    if value("transfer_output_files"):  # a job without a shared filesystem
        scratch = dag.path.parent / SCRATCH / node.name
        transfer = _transfer(value, initialdir, scratch, node.submit, where)
    return Command(
        argv=[executable, *args],
        env=env,
        cwd=transfer.scratch if transfer else initialdir,
        stdout=initialdir / value("output", "/dev/null"),
        stderr=initialdir / value("error", "/dev/null"),
        gpus=int(value("request_gpus", "0") or 0),
        transfer=transfer,
        hold_exit=_hold_exit(value("on_exit_hold"), where),
        hold_reason=value("on_exit_hold_reason").strip('"'),
        checkpoint_exit=_checkpoint_exit(value("checkpoint_exit_code"), where),
    )


def _checkpoint_exit(text: str, where: str) -> int | None:
    if not text:
        return None
    if not text.strip().isdigit():
        raise RunDirError(f"{where}: checkpoint_exit_code = {text} is not an exit code")
    return int(text)


def _hold_exit(expression: str, where: str) -> int | None:
    """N of `on_exit_hold = ExitCode =?= N`, the one form run-local understands."""
    if not expression:
        return None
    match = re.fullmatch(r"ExitCode\s*=\?=\s*(\d+)", expression.strip())
    if match is None:
        raise RunDirError(f"{where}: run-local reads on_exit_hold = ExitCode =?= N only")
    return int(match.group(1))


def _transfer(
    value: Callable[..., str], initialdir: Path, scratch: Path, built: Path, where: str
) -> Transfer:
    def files(key: str) -> list[str]:  # a transfer list: comma-separated
        return [e.strip() for e in value(key).split(",") if e.strip()]

    if value("preserve_relative_paths").lower() != "true":
        raise RunDirError(f"{where}: run-local transfers files only with preserve_relative_paths")
    if value("output_destination"):
        raise RunDirError(f"{where}: run-local cannot send outputs to output_destination")
    inputs = files("transfer_input_files")
    urls = [e for e in inputs if "://" in e]
    if urls:
        raise RunDirError(f"{where}: run-local cannot fetch {urls[0]}: use a local path")
    outputs, checkpoint = files("transfer_output_files"), files("transfer_checkpoint_files")
    return Transfer(scratch, initialdir, built, inputs, outputs, checkpoint)


def program(node: rundir.DagNode, submit: rundir.Submit) -> str:
    """The program a job node starts (apptainer for the container universe)."""
    if submit.get("universe", "vanilla") == "container":
        return "apptainer"
    macros = {**node.vars, "JOB": node.name}
    return quoting.expand_macros(submit.get("executable"), macros)


class Runner:
    """Schedules the DAG's nodes in dependency order on this machine.

    Event-driven, so that 10^4-node fan-outs cost no more than their nodes: each node
    counts its unfinished parents, and a node becomes ready when its count reaches 0.
    """

    def __init__(self, run_dir: Path, gpus: list[str], jobs: int, report: Report):
        self.gpus = list(gpus)
        self.free_gpus = list(gpus)
        self.jobs = jobs
        self.report = report
        self.tasks: dict[str, Task] = {}
        self.children: dict[str, list[str]] = {}
        self.pending: dict[str, int] = {}  # unfinished parents
        self.ready: deque[str] = deque()  # nodes whose parents are all done, in DAG order
        self.ready_subdags = 0  # how many of them are sub-DAG nodes (they take no slot)
        self.deferring: dict[str, Task] = {}  # ready nodes whose PRE script said: later
        self.running: dict[str, Task] = {}  # jobs with a process
        self.expanded: dict[str, Task] = {}  # sub-DAG nodes whose nodes are running
        self.services: dict[str, list[Task]] = {}  # DAG file: its running SERVICE nodes
        self.counts = {"done": 0, "failed": 0, "total": 0}
        self.record_path = run_dir / RECORD
        self.recorded = rundir.done_times(rundir.read_record(self.record_path, strict=True))
        self.base_env = dict(os.environ)
        self.dagman_envs: dict[Path, dict[str, str]] = {}  # by DAG file
        self.submits: dict[Path, rundir.Submit] = {}
        self.outcome = Outcome([], [], 0)
        self.stop = False
        self.wake = threading.Event()  # set when a process ends: the loop has work

    # --- the graph ----------------------------------------------------------------

    def load(self, dag: rundir.Dag) -> list[str]:
        """Add a DAG's nodes (a sub-DAG's once its node is ready); return their keys."""
        prefix = f"{dag.path.name}:"
        keys = [prefix + name for name in dag.nodes]
        written = dag.path.stat().st_mtime
        for key, (name, node) in zip(keys, dag.nodes.items(), strict=True):
            parents = [prefix + p for p in dag.parents.get(name, [])]
            task = self.tasks[key] = Task(key, node, dag, parents)
            self.children.setdefault(key, [])
            for parent in parents:
                self.children.setdefault(parent, []).append(key)
            job = node.subdag is None  # a sub-DAG node is not counted: its nodes are
            self.counts["total"] += job
            # a success recorded before this DAG file was written belongs to an older
            # build (whose node may have changed since): the build's DONE decides then
            if node.done or self.recorded.get(key, -1.0) >= written:
                task.state = "done"
                nodes = 1 if job else _count_nodes(node.subdag)
                self.counts["total"] += nodes - job
                self.counts["done"] += nodes
                self.outcome.skipped += nodes
        for key in keys:
            task = self.tasks[key]
            self.pending[key] = sum(self.tasks[p].state != "done" for p in task.parents)
            if task.state == "waiting" and self.pending[key] == 0:
                self._queue(key)
        return keys

    def _queue(self, key: str, first: bool = False) -> None:
        """A node whose parents are all done waits for a slot (first: before the rest)."""
        if first:
            self.ready.appendleft(key)
        else:
            self.ready.append(key)
        self.ready_subdags += self.tasks[key].node.subdag is not None

    def begin(self, dag: rundir.Dag, first: bool = False) -> list[str]:
        """Load a DAG, check its programs (and, the `first` DAG, its nodes' GPUs), start
        its services; return its nodes' keys."""
        keys = self.load(dag)
        services = [Task(f"{dag.path.name}:{n}", node, dag, []) for n, node in dag.services.items()]
        self.check_programs(keys, services)
        if first:
            self.check_gpus(keys)
        if services and any(self.tasks[k].state != "done" for k in keys):
            self._start_services(services)
        return keys

    def _start_services(self, services: list[Task]) -> None:
        """DAGMan starts a DAG's SERVICE nodes first and removes them when it is done."""
        for task in services:
            command = self._command(task)
            if command.gpus > len(self.free_gpus):
                raise RunError(
                    f"service {task.node.name} asks for {command.gpus} GPU(s); "
                    f"{len(self.free_gpus)} of --gpus are free"
                )
            if not self._spawn(task, command):
                raise RunError(f"service {task.node.name} cannot start; see {command.stderr}")
            self.services.setdefault(str(task.dag.path), []).append(task)

    def _stop_services(self, dag: Path) -> None:
        for task in self.services.pop(str(dag), []):
            if task.process is None:
                continue
            if task.process.poll() is None:
                self._say(f"stop  {task.key}")
                _terminate(task.process, grace=40)
            self._release(task)

    def check_programs(self, keys: list[str], services: Sequence[Task] = ()) -> None:
        """Every job's program exists before any of them runs (apptainer above all)."""
        programs: dict[str, Path] = {}
        for task in [*(self.tasks[k] for k in keys), *services]:
            if task.node.submit is not None and task.state != "done":
                submit = self._submit(task.node.submit)
                programs.setdefault(program(task.node, submit), task.node.submit)
        for name, path in programs.items():
            if shutil.which(name) is None:
                hint = " (install Apptainer, or build with --container none)" * (
                    "apptainer" in name
                )
                raise RunError(f"{path}: executable {name} not found{hint}")

    def check_gpus(self, keys: list[str]) -> None:
        """Refuse, before anything runs, a node to run that asks for more GPUs than given
        (a sub-DAG's nodes, decided at run time, fail one by one when they come)."""
        short = {}
        for key in keys:
            task = self.tasks[key]
            if task.state != "done" and task.node.submit is not None:
                wanted = self._gpus(task)
                if wanted > len(self.gpus):
                    short[task.node.name] = wanted
        if not short:
            return
        (name, wanted), *others = short.items()
        also = f" (as do {len(others)} more node{'s' * (len(others) > 1)})" if others else ""
        raise RunError(f"{name} asks for {wanted} GPU(s){also} {self._given()}; give it more")

    # --- running ----------------------------------------------------------------------

    def abort(self) -> None:
        """Stop every node and service still running (what was recorded stands)."""
        self._kill_all()
        for dag in list(self.services):
            self._stop_services(Path(dag))

    def run(self) -> Outcome:
        while not self.stop:
            changed = self._reap()
            changed = self._start_ready() or changed
            if not changed and not self.running and not self._deferred():
                break
            if not changed:
                # until a process ends (each has a thread waiting on it), a deferred PRE
                # script is due, or a signal asks to stop
                self.wake.wait(self._next_due())
                self.wake.clear()
        if self.stop:
            self._kill_all()
            self.outcome.interrupted = True
        for dag in list(self.services):
            self._stop_services(Path(dag))
        self.outcome.not_run = [k for k, t in self.tasks.items() if t.state == "blocked"]
        return self.outcome

    def _deferred(self) -> list[float]:
        """When the deferred PRE scripts are due again."""
        return [t.deferred_until for t in self.deferring.values()]

    def _next_due(self) -> float:
        """Seconds until a deferred PRE script is due again (at most half a second)."""
        now = time.monotonic()
        return max(0.0, min([0.5, *(d - now for d in self._deferred() if d > now)]))

    def _start_ready(self) -> bool:
        """Start what can start, in order; True if any node changed state (so the loop
        goes on). Sub-DAGs take no job slot; once the slots are full, the job nodes after
        are not looked at, so each pass costs what it starts, not the whole ready queue."""
        changed = False
        waiting: list[str] = []  # looked at, cannot start yet: they keep their place
        while self.ready:
            full = len(self.running) >= self.jobs
            if full and not self.ready_subdags:
                break
            key = self.ready.popleft()
            task = self.tasks[key]
            if full and task.node.subdag is None:
                waiting.append(key)
                continue
            try:
                if task.node.subdag is not None:
                    self.ready_subdags -= 1
                    self._expand(task)
                    changed = True
                elif self._fits(task) and self._pre_ready(task):
                    self._start(task)
                    changed = True
                elif task.state == "failed":
                    self.deferring.pop(key, None)
                    changed = True
                else:
                    waiting.append(key)
            except AframeDagError as exc:  # e.g. a sub-DAG or .sub that cannot be read
                self.deferring.pop(key, None)
                self._fail(task, str(exc))
                changed = True
        self.ready.extendleft(reversed(waiting))
        return changed

    def _fits(self, task: Task) -> bool:
        """Whether the node can start now: its category throttle and GPUs allow it."""
        category = task.category
        if category is not None:
            limit = task.dag.maxjobs.get(category[1])
            busy = sum(1 for t in self.running.values() if t.category == category)
            if limit is not None and busy >= limit:
                return False
        wanted = self._gpus(task)
        if wanted > len(self.gpus):
            raise RunError(f"asks for {wanted} GPU(s) {self._given()}")
        return wanted <= len(self.free_gpus)

    def _given(self) -> str:
        ids = ",".join(self.gpus) or "none"
        return f"but run-local was given {len(self.gpus)} (--gpus {ids})"

    def _pre_ready(self, task: Task) -> bool:
        """Run a job node's PRE script: True to start the job now. A status that the DAG
        defers on (SCRIPT DEFER) means later; any other failure fails the node."""
        if not task.node.pre:
            return True
        if time.monotonic() < task.deferred_until:
            return False
        done = subprocess.run(task.node.pre, capture_output=True, text=True, check=False)
        defer = task.node.defer
        if defer is not None and done.returncode == defer[0]:
            # DAGMan waits `seconds`; here a second is enough and keeps runs quick
            task.deferred_until = time.monotonic() + min(defer[1], 1.0)
            self.deferring[task.key] = task
            return False
        task.deferred_until = 0.0
        self.deferring.pop(task.key, None)
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            self._fail(task, f"PRE script failed: {message}")
            return False
        return True

    def _submit(self, path: Path) -> rundir.Submit:
        if path not in self.submits:
            self.submits[path] = rundir.parse_submit(path)
        return self.submits[path]

    def _command(self, task: Task) -> Command:
        if task.command is None:
            assert task.node.submit is not None
            submit = self._submit(task.node.submit)
            held = self.dagman_envs.get(task.dag.path)
            if held is None:  # once per DAG, not per node
                held = self.dagman_envs[task.dag.path] = dagman_environment(self.base_env, task.dag)
            task.command = job_command(task.node, task.dag, held, submit)
        return task.command

    def _gpus(self, task: Task) -> int:
        """GPUs a job asks for, known before its PRE script writes any included file."""
        assert task.node.submit is not None
        text = self._submit(task.node.submit).get("request_gpus", "0")
        value = quoting.expand_macros(text, {**task.node.vars, "JOB": task.node.name})
        try:
            return int(value or 0)
        except ValueError:
            raise RunDirError(
                f"{task.node.submit}: request_gpus = {text} is not a number"
            ) from None

    def _start(self, task: Task) -> None:
        task.command = None  # read the included files now, after the PRE script
        command = self._command(task)
        task.attempts += 1
        if command.transfer is not None:
            try:
                command.transfer.prepare()
            except (OSError, RunDirError) as exc:
                self._fail(task, f"cannot transfer its inputs: {exc}")
                return
        # recorded first: if this runner dies, what the node left is known to be unfinished
        self._record("start", task)
        if self._spawn(task, command):
            self.running[task.key] = task

    def _spawn(self, task: Task, command: Command, again: bool = False) -> bool:
        """Start the node's process with its GPUs; False (and the node failed) if it cannot."""
        task.gpus = task.gpus or [self.free_gpus.pop(0) for _ in range(command.gpus)]
        env = dict(command.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(task.gpus) if task.gpus else NO_GPU
        for path in (command.stdout, command.stderr):
            path.parent.mkdir(parents=True, exist_ok=True)
        mode = "ab" if again else "wb"  # started again after a checkpoint: it goes on
        with open(command.stdout, mode) as out, open(command.stderr, mode) as err:
            try:
                task.process = subprocess.Popen(
                    command.argv, cwd=command.cwd, env=env, stdout=out, stderr=err,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                self._release(task)
                self._fail(task, f"cannot start {command.argv[0]}: {exc.strerror}")
                return False
        process = task.process

        def wake_when_done() -> None:
            process.wait()
            self.wake.set()

        threading.Thread(target=wake_when_done, daemon=True).start()
        task.state = "running"
        gpus = f" on GPU {','.join(task.gpus)}" if task.gpus else ""
        self._say(f"start {task.key}{gpus}")
        return True

    def _release(self, task: Task) -> None:
        """Give a node's GPUs back; the lowest ids (in --gpus order) go out first."""
        self.free_gpus = [g for g in self.gpus if g in self.free_gpus or g in task.gpus]
        task.gpus = []

    def _reap(self) -> bool:
        """Collect ended jobs and finished sub-DAGs; True if any."""
        changed = False
        for task in list(self.running.values()):
            assert task.process is not None
            code = task.process.poll()
            if code is None:
                continue
            changed = True
            del self.running[task.key]
            task.process = None
            command = self._command(task)
            if code == command.checkpoint_exit and command.transfer is not None:
                # HTCondor keeps the checkpoint and starts the job again in its scratch dir
                command.transfer.keep_checkpoint()
                self._say(f"checkpoint {task.key}: kept; started again from it")
                if self._spawn(task, command, again=True):
                    self.running[task.key] = task
                continue
            used = ",".join(task.gpus)
            self._release(task)
            if command.transfer is not None:  # HTCondor brings outputs back ON_EXIT, either way
                command.transfer.bring_back()
            if code == 0:
                self._succeed(task)
            elif code == command.hold_exit:
                # HTCondor would hold it and release it to a bigger GPU; here the GPUs
                # are what they are: say so rather than retry on the same one
                self._fail(
                    task,
                    f"{command.hold_reason or f'exit {code}'} (GPU {used}); HTCondor "
                    f"would retry it on a GPU with more memory, run-local cannot: "
                    f"see {command.stderr}",
                )
            elif task.attempts <= task.node.retry:
                self._say(f"retry {task.key} (exit {code}, attempt {task.attempts})")
                task.state = "waiting"
                self._queue(task.key, first=True)
            else:
                self._fail(task, f"exit {code}; see {self._command(task).stderr}")
        for task in list(self.expanded.values()):  # a sub-DAG ends with its last node
            states = {self.tasks[c].state for c in task.children}
            if states & {"waiting", "running"}:
                continue
            changed = True
            del self.expanded[task.key]
            assert task.node.subdag is not None
            self._stop_services(task.node.subdag)
            if states <= {"done"}:
                self._succeed(task)
            else:  # counted as those nodes' failures, not one of its own
                self._fail(task, "a node of its sub-DAG failed", counted=False)
        return changed

    def _expand(self, task: Task) -> None:
        """DAGMan's path for SUBDAG EXTERNAL: PRE script, then the sub-DAG's nodes."""
        task.attempts += 1
        if task.node.pre:
            self._say(f"pre   {task.key}: {' '.join(task.node.pre)}")
            done = subprocess.run(task.node.pre, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                message = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
                self._fail(task, f"PRE script failed: {message}")
                return
        assert task.node.subdag is not None
        task.children = self.begin(rundir.parse_dag(task.node.subdag))
        task.state = "running"  # until its nodes are all done
        self.expanded[task.key] = task

    def _say(self, message: str) -> None:
        running = [key.split(":", 1)[1] for key in self.running]
        progress = Progress(
            self.counts["done"], self.counts["failed"], self.counts["total"], running
        )
        self.report(message, progress)

    def _succeed(self, task: Task) -> None:
        task.state = "done"
        job = task.node.subdag is None  # else its nodes are done: said already
        if job:
            self.counts["done"] += 1
            self.outcome.done.append(task.key)
        self._record("done", task)
        for child in self.children.get(task.key, []):
            self.pending[child] -= 1
            if self.pending[child] == 0 and self.tasks[child].state == "waiting":
                self._queue(child)
        if job:
            self._say(f"done  {task.key}")

    def _fail(self, task: Task, message: str, counted: bool = True) -> None:
        """A node failed (`counted`: a failure of its own, not its sub-DAG's nodes')."""
        task.state = "failed"
        # recorded too: a failed node's partial outputs must never pass for complete
        self._record("failed", task)
        if counted:
            self.counts["failed"] += 1
            self.outcome.failed.append((task.key, message))
        todo = list(self.children.get(task.key, []))
        while todo:  # everything downstream will not run
            child = self.tasks[todo.pop()]
            if child.state == "waiting":
                child.state = "blocked"
                todo.extend(self.children.get(child.key, []))
        if counted:
            self._say(f"FAIL  {task.key}: {message}")

    def _record(self, event: str, task: Task) -> None:
        """Append `EVENT DAG:NODE TIME` to the record, on disk before going on."""
        with open(self.record_path, "a", encoding="utf-8") as record:
            record.write(f"{event} {task.key} {time.time():.3f}\n")
            record.flush()
            os.fsync(record.fileno())

    def _kill_all(self) -> None:
        for dag in list(self.services):
            for task in self.services[dag]:
                if task.process is not None and task.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(task.process.pid, signal.SIGTERM)
        for task in self.running.values():
            if task.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(task.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for task in self.running.values():
            if task.process is None:
                continue
            try:
                task.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(task.process.pid, signal.SIGKILL)
                task.process.wait()


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process (as condor_rm does), SIGKILL its group after `grace` s."""
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def refuse_live(run_dir: Path) -> None:
    """Refuse a run dir that a live run-local is running on (a build, a clean)."""
    holder = lock_holder(run_dir) if run_dir.is_dir() else None
    if holder:
        raise RunDirError(f"{run_dir}: run-local (pid {holder}) is running on it; wait or stop it")


def lock_holder(run_dir: Path) -> str | None:
    """The pid of a live run-local on this run dir, or None."""
    path = run_dir / LOCK
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
    return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One runner per run dir; the lock dies with its process (flock), so a stale one is free."""
    path = run_dir / LOCK
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise RunError(
                f"{run_dir}: another run-local (pid {owner}) is running on this run dir"
            ) from None
        # a build takes its lock, then looks for ours: one of the two is refused
        if write.build_running(run_dir):
            raise RunError(f"{run_dir}: an aframe-dag build is writing it; run when it is done")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def run_local(
    run_dir: str | Path,
    gpus: list[str],
    jobs: int = 1,
    report: Report | None = None,
    targets: Sequence[str] = (),
) -> Outcome:
    """Run RUN_DIR/aframe.dag here (of it, with `targets`, those stages and what they
    need: `for_targets`); successes are recorded so a rerun resumes."""
    run_path = Path(run_dir).absolute()
    dag_path = run_path / rundir.DAG
    if not dag_path.is_file():
        raise RunDirError(f"{run_path}: no aframe.dag (run `aframe-dag build` first)")
    if jobs < 1:
        raise RunError(f"--jobs must be >= 1, got {jobs}")
    try:
        with run_lock(run_path):
            return _run_locked(run_path, dag_path, gpus, jobs, report, targets)
    except OSError as exc:  # the lock, the record or a log, before the run or after it
        raise file_error(exc) from None


def _count_nodes(dag: Path | None) -> int:
    """How many nodes a done sub-DAG ran (0 if its file is gone or unreadable)."""
    try:
        return len(rundir.read_nodes(dag).nodes) if dag is not None and dag.is_file() else 0
    except RunDirError:
        return 0


def for_targets(dag: rundir.Dag, targets: Sequence[str]) -> rundir.Dag:
    """The part of a DAG that `targets` need: the nodes of those stages and every node
    they depend on (a node's stage: its .sub file, or its sub-DAG's file, STAGE.dag)."""
    if not targets:
        return dag
    stages = {name: (node.submit or node.subdag or Path()).stem for name, node in dag.nodes.items()}
    known = dict.fromkeys(stages.values())
    for target in targets:
        if target not in known:
            raise graph.unknown_stage(target, known, "--target")
    todo = [name for name, stage in stages.items() if stage in targets]
    wanted: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(dag.parents.get(name, []))
    return replace(
        dag,
        nodes={name: node for name, node in dag.nodes.items() if name in wanted},
        parents={name: p for name, p in dag.parents.items() if name in wanted},
    )


def _run_locked(
    run_path: Path,
    dag_path: Path,
    gpus: list[str],
    jobs: int,
    report: Report | None,
    targets: Sequence[str],
) -> Outcome:
    runner = Runner(run_path, gpus, jobs, report or (lambda message, progress: None))

    def interrupt(signum: int, _frame: object) -> None:
        runner.stop = True
        runner.wake.set()

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        runner.begin(for_targets(rundir.parse_dag(dag_path), targets), first=True)
        return runner.run()
    except OSError:
        # the runner's own files (its record, a log, a full disk): stop what runs, and
        # let the next run resume from what was recorded
        runner.abort()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def dry_run(run_dir: str | Path, gpus: list[str], targets: Sequence[str] = ()) -> Iterator[str]:
    """Each node's command and environment in dependency order, running nothing."""
    run_path = Path(run_dir).absolute()
    dag = for_targets(rundir.parse_dag(run_path / rundir.DAG), targets)
    env = dict(os.environ)
    for name in _order(dag):
        node = dag.nodes[name]
        if node.subdag is not None:
            yield f"# {name}: sub-DAG {node.subdag}, written at run time by: {' '.join(node.pre)}"
            if node.subdag.exists():
                sub = rundir.parse_dag(node.subdag)
                for child in _order(sub):
                    yield from _describe(sub.nodes[child], sub, env)
            continue
        yield from _describe(node, dag, env)


def _describe(node: rundir.DagNode, dag: rundir.Dag, env: dict[str, str]) -> Iterator[str]:
    command = job_command(node, dag, dagman_environment(env, dag))
    state = " (done)" if node.done else ""
    yield f"# {node.name}{state}: in {command.cwd}, {command.gpus} GPU(s)"
    for key, value in secrets.hide(command.env).items():
        yield f"  {key}={value}"
    yield "  " + " ".join(shlex.quote(a) for a in command.argv)


def _order(dag: rundir.Dag) -> list[str]:
    return graph.topological_order({name: dag.parents.get(name, []) for name in dag.nodes})
