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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aframe_dag import dagfile, graph, quoting
from aframe_dag.errors import AframeDagError, RunDirError

# The variables condor_submit_dag lets into DAGMan's own environment (23.x), from which
# node jobs are submitted; a DAG's ENV GET adds more. Seen in a *.condor.sub on the pool.
DAGMAN_GETENV = (
    "CONDOR_CONFIG", "_CONDOR_*", "PATH", "PYTHONPATH", "PERL*", "PEGASUS_*", "TZ", "HOME",
    "USER", "LANG", "LC_ALL", "BEARER_TOKEN", "BEARER_TOKEN_FILE", "XDG_RUNTIME_DIR",
)  # fmt: skip
RECORD = "run-local.record"
LOCK = ".run-local.lock"
NO_GPU = "10000"  # what HTCondor sets for a job that asked for no GPU
GPU_ID = re.compile(r"[0-9]+|(?:GPU|MIG)-[0-9A-Za-z-]+")


class RunError(AframeDagError):
    """run-local cannot start: a missing program, a bad --gpus, a lock held by another."""


@dataclass
class Task:
    """A node to run: a job, or a sub-DAG to expand."""

    key: str  # unique across the run: DAGFILE:NODE
    node: dagfile.DagNode
    dag: dagfile.Dag
    parents: list[str]
    attempts: int = 0
    gpus: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    children: list[str] = field(default_factory=list)  # nodes of an expanded sub-DAG
    state: str = "waiting"  # waiting, running, done, failed, blocked
    command: Command | None = None

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


@dataclass
class Outcome:
    done: list[str]
    failed: list[tuple[str, str]]  # key, message (stderr path or reason)
    skipped: int
    interrupted: bool = False


@dataclass
class Progress:
    """Where a run stands, for the progress display."""

    done: int
    failed: int
    total: int
    running: list[str]


Report = Callable[[str, Progress], None]


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


def job_command(
    node: dagfile.DagNode,
    dag: dagfile.Dag,
    base_env: dict[str, str],
    submit: dagfile.Submit | None = None,
) -> Command:
    """The process HTCondor would start for this node, from its .sub and VARS."""
    assert node.submit is not None
    submit = submit or dagfile.parse_submit(node.submit)
    macros = {**node.vars, "JOB": node.name}

    def value(key: str, default: str = "") -> str:
        return quoting.expand_macros(submit.get(key, default), macros)

    where = str(submit.path)
    # what DAGMan would hold: getenv can only pass on what is there
    patterns = (*DAGMAN_GETENV, *dag.env_get)
    base_env = {
        k: v for k, v in base_env.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)
    }
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
    cwd = Path(value("initialdir") or str(node.submit.parent))
    return Command(
        argv=[executable, *args],
        env=env,
        cwd=cwd,
        stdout=cwd / value("output", "/dev/null"),
        stderr=cwd / value("error", "/dev/null"),
        gpus=int(value("request_gpus", "0") or 0),
    )


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
        self.ready: list[str] = []  # waiting nodes whose parents are all done, in DAG order
        self.running: dict[str, Task] = {}  # jobs with a process
        self.expanded: dict[str, Task] = {}  # sub-DAG nodes whose nodes are running
        self.counts = {"done": 0, "failed": 0, "total": 0}
        self.record_path = run_dir / RECORD
        self.recorded = self._read_record()
        self.base_env = dict(os.environ)
        self.submits: dict[Path, dagfile.Submit] = {}
        self.outcome = Outcome([], [], 0)
        self.stop = False

    # --- the graph ----------------------------------------------------------------

    def load(self, dag: dagfile.Dag) -> list[str]:
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
            self.counts["total"] += 1
            # a success recorded before this DAG file was written belongs to an older
            # build (whose node may have changed since): the build's DONE decides then
            if node.done or self.recorded.get(key, -1.0) >= written:
                task.state = "done"
                self.counts["done"] += 1
                self.outcome.skipped += 1
        for key in keys:
            task = self.tasks[key]
            self.pending[key] = sum(self.tasks[p].state != "done" for p in task.parents)
            if task.state == "waiting" and self.pending[key] == 0:
                self.ready.append(key)
        return keys

    def check_programs(self, keys: list[str]) -> None:
        """Every job's program exists before any of them runs (apptainer above all)."""
        programs: dict[str, Path] = {}
        for key in keys:
            task = self.tasks[key]
            if task.node.submit is not None and task.state != "done":
                programs.setdefault(self._command(task).argv[0], task.node.submit)
        for program, submit in programs.items():
            if shutil.which(program) is None:
                hint = " (install Apptainer, or build with --container none)" * (
                    "apptainer" in program
                )
                raise RunError(f"{submit}: executable {program} not found{hint}")

    # --- running ----------------------------------------------------------------------

    def run(self) -> Outcome:
        while not self.stop:
            changed = self._reap()
            changed = self._start_ready() or changed
            if not changed and not self.running:
                break
            if not changed:
                time.sleep(0.02)
        if self.stop:
            self._kill_all()
            self.outcome.interrupted = True
        for task in self.tasks.values():
            if task.state == "blocked":
                self.outcome.failed.append((task.key, "not run: a node it needs failed"))
        return self.outcome

    def _start_ready(self) -> bool:
        """Start what can start; True if any node changed state (so the loop goes on)."""
        changed = False
        for key in list(self.ready):
            if len(self.running) >= self.jobs and self.tasks[key].node.subdag is None:
                continue
            task = self.tasks[key]
            try:
                if task.node.subdag is not None:
                    self.ready.remove(key)
                    self._expand(task)
                    changed = True
                elif self._fits(task):
                    self.ready.remove(key)
                    self._start(task)
                    changed = True
            except AframeDagError as exc:  # e.g. a sub-DAG or .sub that cannot be read
                if key in self.ready:
                    self.ready.remove(key)
                self._fail(task, str(exc))
                changed = True
        return changed

    def _fits(self, task: Task) -> bool:
        """Whether the node can start now: its category throttle and GPUs allow it."""
        category = task.category
        if category is not None:
            limit = task.dag.maxjobs.get(category[1])
            busy = sum(1 for t in self.running.values() if t.category == category)
            if limit is not None and busy >= limit:
                return False
        wanted = self._command(task).gpus
        if wanted > len(self.gpus):
            raise RunError(
                f"asks for {wanted} GPU(s) but run-local was given {len(self.gpus)} (--gpus)"
            )
        return wanted <= len(self.free_gpus)

    def _command(self, task: Task) -> Command:
        if task.command is None:
            assert task.node.submit is not None
            if task.node.submit not in self.submits:
                self.submits[task.node.submit] = dagfile.parse_submit(task.node.submit)
            submit = self.submits[task.node.submit]
            task.command = job_command(task.node, task.dag, self.base_env, submit)
        return task.command

    def _start(self, task: Task) -> None:
        command = self._command(task)
        task.gpus = [self.free_gpus.pop(0) for _ in range(command.gpus)]
        env = dict(command.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(task.gpus) if task.gpus else NO_GPU
        task.attempts += 1
        for path in (command.stdout, command.stderr):
            path.parent.mkdir(parents=True, exist_ok=True)
        with open(command.stdout, "wb") as out, open(command.stderr, "wb") as err:
            try:
                task.process = subprocess.Popen(
                    command.argv, cwd=command.cwd, env=env, stdout=out, stderr=err,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                self._release(task)
                self._fail(task, f"cannot start {command.argv[0]}: {exc.strerror}")
                return
        task.state = "running"
        self.running[task.key] = task
        gpus = f" on GPU {','.join(task.gpus)}" if task.gpus else ""
        self._say(f"start {task.key}{gpus}")

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
            self._release(task)
            if code == 0:
                self._succeed(task)
            elif task.attempts <= task.node.retry:
                self._say(f"retry {task.key} (exit {code}, attempt {task.attempts})")
                task.state = "waiting"
                self.ready.insert(0, task.key)
            else:
                self._fail(task, f"exit {code}; see {self._command(task).stderr}")
        for task in list(self.expanded.values()):  # a sub-DAG ends with its last node
            states = {self.tasks[c].state for c in task.children}
            if states & {"waiting", "running"}:
                continue
            changed = True
            del self.expanded[task.key]
            if states <= {"done"}:
                self._succeed(task)
            else:
                self._fail(task, "a node of its sub-DAG failed")
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
        task.children = self.load(dagfile.parse_dag(task.node.subdag))
        self.check_programs(task.children)
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
        self.counts["done"] += 1
        self.outcome.done.append(task.key)
        self._record("done", task)
        for child in self.children.get(task.key, []):
            self.pending[child] -= 1
            if self.pending[child] == 0 and self.tasks[child].state == "waiting":
                self.ready.append(child)
        self._say(f"done  {task.key}")

    def _fail(self, task: Task, message: str) -> None:
        task.state = "failed"
        self.counts["failed"] += 1
        # recorded too: a failed node's partial outputs must never pass for complete
        self._record("failed", task)
        self.outcome.failed.append((task.key, message))
        todo = list(self.children.get(task.key, []))
        while todo:  # everything downstream will not run
            child = self.tasks[todo.pop()]
            if child.state == "waiting":
                child.state = "blocked"
                self.counts["failed"] += 1
                todo.extend(self.children.get(child.key, []))
        self._say(f"FAIL  {task.key}: {message}")

    def _record(self, event: str, task: Task) -> None:
        """Append `EVENT DAG:NODE TIME` to the record, on disk before going on."""
        with open(self.record_path, "a", encoding="utf-8") as record:
            record.write(f"{event} {task.key} {time.time():.3f}\n")
            record.flush()
            os.fsync(record.fileno())

    def _kill_all(self) -> None:
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

    def _read_record(self) -> dict[str, float]:
        """When each node last succeeded here (a later failure cancels it)."""
        if not self.record_path.exists():
            return {}
        recorded: dict[str, float] = {}
        for line in self.record_path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "done":
                recorded[words[1]] = float(words[2])
            elif len(words) >= 2 and words[0] == "failed":
                recorded.pop(words[1], None)
        return recorded


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
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def run_local(
    run_dir: str | Path, gpus: list[str], jobs: int = 1, report: Report | None = None
) -> Outcome:
    """Run RUN_DIR/aframe.dag here; successes are recorded so a rerun resumes."""
    run_path = Path(run_dir).absolute()
    dag_path = run_path / "aframe.dag"
    if not dag_path.is_file():
        raise RunDirError(f"{run_path}: no aframe.dag (run `aframe-dag build` first)")
    if jobs < 1:
        raise RunError(f"--jobs must be >= 1, got {jobs}")
    with run_lock(run_path):
        runner = Runner(run_path, gpus, jobs, report or (lambda message, progress: None))
        runner.check_programs(runner.load(dagfile.parse_dag(dag_path)))

        def interrupt(signum: int, _frame: object) -> None:
            runner.stop = True

        previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return runner.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def dry_run(run_dir: str | Path, gpus: list[str]) -> Iterator[str]:
    """Each node's command and environment in dependency order, running nothing."""
    run_path = Path(run_dir).absolute()
    dag = dagfile.parse_dag(run_path / "aframe.dag")
    env = dict(os.environ)
    for name in _order(dag):
        node = dag.nodes[name]
        if node.subdag is not None:
            yield f"# {name}: sub-DAG {node.subdag}, written at run time by: {' '.join(node.pre)}"
            if node.subdag.exists():
                sub = dagfile.parse_dag(node.subdag)
                for child in _order(sub):
                    yield from _describe(sub.nodes[child], sub, env)
            continue
        yield from _describe(node, dag, env)


def _describe(node: dagfile.DagNode, dag: dagfile.Dag, env: dict[str, str]) -> Iterator[str]:
    command = job_command(node, dag, env)
    state = " (done)" if node.done else ""
    yield f"# {node.name}{state}: in {command.cwd}, {command.gpus} GPU(s)"
    for key, value in command.env.items():
        yield f"  {key}={value}"
    yield "  " + " ".join(shlex.quote(a) for a in command.argv)


def _order(dag: dagfile.Dag) -> list[str]:
    return graph.topological_order({name: dag.parents.get(name, []) for name in dag.nodes})
