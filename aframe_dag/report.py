"""`aframe-dag report RUN_DIR`: what a run cost, what it produced and how to make it again.

Every figure comes from the run dir's own records, each read by its one reader: where the
run stands (`status.read_status`); each node's jobs from its stage's node log
(`rundir.job_events`, HTCondor's own parser) or, for a stage whose node log is not there,
from DAGMan's JOBSTATE_LOG (whole seconds; no hold reasons, memory or disk); run-local's
record; the tasks records of clustered stages. The figures cover every job the records
hold (`build --force` moves the last run's records aside).

An attempt is one job of a node (DAGMan submits a new one for each retry; run-local
starts it again). It executes once or more (an eviction or a hold ends an execution; the
hold of an executing job, which HTCondor logs as an eviction too, counts as a hold only);
its run time is the sum of its executions, its queue wait the time from its submit to
its first execution (run-local: none). Badput is the execution time that did not end in
a success: evicted, held, failed or removed. CPU- and GPU-hours are run time x the cpus
and gpus its .sub requests. An execution still going counts up to the records' last
event (a live run: up to now); one whose end was never recorded (a run-local killed)
counts nowhere. The GPU memory a job asks for is its .sub's; with GPU-memory retries
(`require_gpus` of NumJobStarts) it doubles at each start of the job, up to the cap.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aframe_dag import provenance, resources, rundir, status, write
from aframe_dag.rundir import JobEvent


@dataclass(slots=True)  # 10^5 of them: slots make them quicker to make
class Attempt:
    """One job of a node, from its submit (or start) to its end."""

    node: str
    job: str
    submitted: float | None = None
    runs: list[tuple[float, float | None, str]] = field(default_factory=list)  # start, end, how
    end: str = "idle"  # success, failure, removed, held, running, idle or unfinished
    exit_code: int | None = None
    holds: list[str] = field(default_factory=list)  # each hold's reason
    memory: int | None = None  # MB used, from its termination
    request_memory: int | None = None  # MB asked for, from its termination
    disk: int | None = None  # KB used
    request_disk: int | None = None  # KB asked for

    def seconds(self) -> float:
        return sum(end - start for start, end, _ in self.runs if end is not None)

    def badput(self) -> float:
        return sum(
            end - start
            for start, end, how in self.runs
            if end is not None and how not in ("success", "running")
        )

    def wait(self) -> float | None:
        if self.submitted is None or not self.runs:
            return None
        return self.runs[0][0] - self.submitted


def attempts(events: Iterable[JobEvent], live: bool, as_of: float) -> dict[str, list[Attempt]]:
    """Each node's attempts (in order) from its jobs' events. An execution without an end
    runs up to `as_of` if the run is `live`, else its end was never recorded."""
    by_job: dict[tuple[str, str], Attempt] = {}
    nodes: dict[str, list[Attempt]] = {}
    for event in events:
        kind, when = event.kind, event.when
        attempt = by_job.get((event.node, event.job))
        if attempt is None or (kind == "submit" and attempt.submitted is not None):
            attempt = by_job[event.node, event.job] = Attempt(event.node, event.job)
            nodes.setdefault(event.node, []).append(attempt)
        if kind == "submit":
            attempt.submitted = when
        elif kind == "execute":
            _close(attempt, when, "evicted")  # an execution whose end was not logged
            attempt.runs.append((when, None, ""))
            attempt.end = "running"
        elif kind == "terminated" or kind == "failed":
            attempt.end = "success" if kind == "terminated" and event.code == 0 else "failure"
            _close(attempt, when, attempt.end)
            attempt.exit_code = event.code
            if event.memory is not None:
                attempt.memory = event.memory
            if event.request_memory is not None:
                attempt.request_memory = event.request_memory
            if event.disk is not None:
                attempt.disk = event.disk
            if event.request_disk is not None:
                attempt.request_disk = event.request_disk
        elif kind == "evicted":
            _close(attempt, when, "evicted")
            attempt.end = "idle"
        elif kind == "held":
            _close(attempt, when, "held")
            if _evicted_by_the_hold(attempt, when):
                attempt.runs[-1] = (*attempt.runs[-1][:2], "held")
            attempt.end = "held"
            attempt.holds.append(event.text)
        elif kind == "released":
            attempt.end = "idle"
        elif kind == "aborted":
            _close(attempt, when, "removed")
            attempt.end = "removed"
    for attempt in by_job.values():
        if attempt.runs and attempt.runs[-1][1] is None:
            if live:
                attempt.runs[-1] = (attempt.runs[-1][0], max(as_of, attempt.runs[-1][0]), "running")
            else:
                attempt.end = "unfinished"
    return nodes


def _evicted_by_the_hold(attempt: Attempt, when: float) -> bool:
    """Whether a hold at `when` is what stopped the attempt's last execution: HTCondor logs
    an executing job's hold as an eviction and the hold, in the same second."""
    if attempt.end != "idle" or not attempt.runs:
        return False
    _, end, how = attempt.runs[-1]
    return how == "evicted" and end is not None and 0 <= when - end <= 1


def _close(attempt: Attempt, when: float, how: str) -> None:
    if attempt.runs and attempt.runs[-1][1] is None:
        attempt.runs[-1] = (attempt.runs[-1][0], when, how)


def local_events(path: Path) -> Iterator[JobEvent]:
    """run-local's record as job events: each start a new job of its node, executing at
    once (no queue), a start that follows an unfinished one a failure of that one
    (run-local records no end for an attempt it retries)."""
    count: dict[str, int] = {}
    running: dict[str, str] = {}  # key -> the job of its start that nothing ended yet
    for event, key, when in rundir.record_events(path):
        if when is None:
            continue  # a torn line
        _, colon, node = key.partition(":")
        node = node if colon else key
        if event == "start":
            if key in running:
                yield JobEvent(node, running[key], "failed", when)
            count[key] = count.get(key, 0) + 1
            job = running[key] = f"{key}#{count[key]}"
            yield JobEvent(node, job, "execute", when)  # no queue: no submit
        elif key in running:
            job = running.pop(key)
            if event == "done":
                yield JobEvent(node, job, "terminated", when, 0)
            else:  # its record keeps no exit code
                yield JobEvent(node, job, "failed", when)


# --- per stage ------------------------------------------------------------------------


@dataclass
class Requests:
    """What a .sub asks for each job (None: not a number, an expression)."""

    cpus: int = 1
    gpus: int = 0
    memory: int | None = None  # MB (memory escalation: the first request)
    gpu_memory: int | None = None  # MB of GPU memory (GPU-memory retries: the first request)
    gpu_memory_cap: int | None = None  # GPU-memory retries: the most a job asks for

    def gpu_memory_asked(self, starts: int) -> list[int]:
        """The GPU memory a job asks for at each of its `starts` executions (one if it never
        started): with GPU-memory retries twice as much after each start, up to the cap."""
        if self.gpu_memory is None or self.gpu_memory_cap is None:
            return [] if self.gpu_memory is None else [self.gpu_memory]
        return [min(self.gpu_memory_cap, self.gpu_memory * 2**k) for k in range(max(starts, 1))]


# memory escalation's request (templates/stage.sub.j2): the first, until a job has used some
_ESCALATING = re.compile(r"ifthenelse\(isUndefined\(MemoryUsage\),\s*(\d+)\s*,")
# GPU-memory retries' requirement (templates/stage.sub.j2): the cap, and the first request
_GPU_ESCALATING = re.compile(
    r"GlobalMemoryMb\s*>=\s*min\(\{\s*(\d+)\s*,\s*(\d+)\s*\*\s*pow\(2,\s*NumJobStarts\)\s*\}\)"
)


def requests(submit: Path) -> Requests:
    """The cpus, gpus, memory and GPU memory a .sub requests."""
    commands = rundir.parse_submit(submit, strict=False)
    memory = commands.get("request_memory").strip()
    escalating = _ESCALATING.match(memory)
    gpu = _GPU_ESCALATING.fullmatch(commands.get("require_gpus").strip())
    minimum = commands.get("gpus_minimum_memory").strip()  # MB
    return Requests(
        _number(commands.get("request_cpus", "1"), 1),
        _number(commands.get("request_gpus", "0"), 0),
        int(escalating[1]) if escalating else _megabytes(memory),
        int(gpu[2]) if gpu else (int(minimum) if minimum.isdigit() else None),
        int(gpu[1]) if gpu else None,
    )


def _number(text: str, default: int) -> int:
    return int(text) if text.strip().isdigit() else default


def _megabytes(text: str) -> int | None:
    text = text.strip().upper()
    if text.isdigit():
        return int(text)
    if len(text) > 2 and text[-1] == "B" and text[-2] in "KMGT":
        try:
            return resources.megabytes(text)
        except ValueError:
            return None
    return None


@dataclass
class StageFigures:
    """A stage's figures; times in seconds, memory in MB, disk in KB."""

    name: str
    total: int | None  # nodes (None: a fan-out not decided yet)
    done: int = 0
    failed: int = 0
    held: int = 0
    tasks: int | None = None  # a clustered stage's tasks, and those done
    tasks_done: int | None = None
    cpus: int = 1  # each job's request
    gpus: int = 0
    attempts: int = 0
    retries: int = 0  # attempts after each node's first
    evictions: int = 0
    holds: int = 0
    wait_median: float | None = None
    wait_max: float | None = None
    run_median: float | None = None
    run_max: float | None = None
    task_median: float | None = None  # a clustered stage's tasks, from its tasks record
    task_max: float | None = None
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    badput_hours: float = 0.0
    memory_requested: list[int] = field(default_factory=list)  # MB: each request seen, in order
    gpu_memory_requested: list[int] = field(default_factory=list)  # MB: each of a GPU, in order
    memory_used: int | None = None  # the most any job used
    disk_requested: int | None = None  # KB
    disk_used: int | None = None


def figures(
    stage: status.StageStatus,
    jobs: dict[str, list[Attempt]],
    asked: Callable[[str], Requests],
    tasks: Path,
) -> StageFigures:
    """One stage's figures from its status, its nodes' attempts and what each node's
    .sub requests."""
    mine = asked(stage.name)
    result = StageFigures(
        stage.name,
        stage.total,
        stage.done,
        stage.failed,
        stage.held,
        stage.tasks,
        stage.tasks_done,
        mine.cpus,
        mine.gpus,
    )
    runs, waits, memory = [], [], []
    for node, node_attempts in jobs.items():
        result.retries += len(node_attempts) - 1
        request = asked(node)
        for attempt in node_attempts:
            result.attempts += 1
            result.holds += len(attempt.holds)
            result.evictions += sum(how == "evicted" for _, _, how in attempt.runs)
            seconds = attempt.seconds()
            if attempt.runs and attempt.end != "unfinished":
                runs.append(seconds)
            wait = attempt.wait()
            if wait is not None:
                waits.append(wait)
            result.cpu_hours += seconds * request.cpus / 3600
            result.gpu_hours += seconds * request.gpus / 3600
            result.badput_hours += attempt.badput() / 3600
            for asked_now in (request.memory, attempt.request_memory):  # first, at its end
                if asked_now is not None and asked_now not in result.memory_requested:
                    result.memory_requested.append(asked_now)
            for asked_now in request.gpu_memory_asked(len(attempt.runs)):  # at each start
                if asked_now not in result.gpu_memory_requested:
                    result.gpu_memory_requested.append(asked_now)
            if attempt.memory is not None:
                memory.append(attempt.memory)
            if attempt.disk is not None:
                result.disk_used = max(result.disk_used or 0, attempt.disk)
            if attempt.request_disk is not None:
                result.disk_requested = max(result.disk_requested or 0, attempt.request_disk)
    result.memory_used = max(memory, default=None)
    result.run_median, result.run_max = _median_max(runs)
    result.wait_median, result.wait_max = _median_max(waits)
    result.task_median, result.task_max = _median_max(task_seconds(tasks))
    return result


def _median_max(values: list[float]) -> tuple[float | None, float | None]:
    return (statistics.median(values), max(values)) if values else (None, None)


def task_seconds(path: Path) -> list[float]:
    """How long each task of a clustered stage ran, from its tasks record (those that ended
    in success or failure)."""
    started: dict[str, float] = {}
    seconds = []
    for event, key, when in rundir.record_events(path):
        if when is None:
            continue
        if event == "start":
            started[key] = when
        elif key in started:
            seconds.append(when - started.pop(key))
    return seconds


# --- the whole run --------------------------------------------------------------------


@dataclass
class Failure:
    """A failed or held node: why, its last attempt's exit code, its stderr's last lines."""

    name: str
    stage: str
    state: str  # "failed" or "held"
    reason: str
    exit_code: int | None = None
    job: str = ""
    stderr: str | None = None
    tail: list[str] = field(default_factory=list)


@dataclass
class Run:
    """What `report` shows: the run's state, its stages' figures and nodes' attempts,
    its failures, pictures and provenance."""

    run_dir: Path
    mode: str
    state: str
    as_of: float | None
    stages: list[StageFigures]
    attempts: dict[str, dict[str, list[Attempt]]]  # stage -> node -> attempts
    failures: list[Failure]
    submit_hosts: list[str] = field(default_factory=list)  # DAGMan: the schedds of its jobs
    pictures: list[provenance.Picture] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause Python's cycle collector (as a decorator or a with block): a report of 10^5
    nodes makes millions of objects that hold no cycles, and the collector would go over
    them again and again (a third of the time, measured); it runs again after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@no_cycle_collection()
def read_run(run_dir: str | Path) -> Run:
    """Every figure of the run in RUN_DIR (pictures and provenance apart: `make`)."""
    run_path = Path(run_dir).absolute()
    current = status.read_status(run_path)
    jobs = status.stage_jobs(run_path)
    # what each .sub asks for, by its stem: STAGE.sub a stage's nodes', NODE.sub a service's
    asked = {submit.stem: requests(submit) for j in jobs for submit in j.logs}
    stage_of = {node: j.name for j in jobs for node in j.nodes}

    def asked_for(node: str) -> Requests:
        return asked.get(node) or asked.get(stage_of.get(node, node)) or Requests()

    if current.mode == "dagman":
        events = _dagman_events(run_path, jobs)
    else:
        events = list(local_events(run_path / rundir.RECORD))
    last = max((e.when for e in events), default=None)
    as_of = (
        time.time()
        if current.runner_live
        else max((t for t in (last, current.as_of) if t is not None), default=None)
    )
    by_stage: dict[str, dict[str, list[Attempt]]] = {}
    for node, node_attempts in attempts(events, current.state == "running", as_of or 0).items():
        by_stage.setdefault(stage_of.get(node, ""), {})[node] = node_attempts
    stages = [
        figures(s, by_stage.get(s.name, {}), asked_for, run_path / rundir.tasks_record(s.name))
        for s in current.stages
    ]
    failures = _failures(current, by_stage)
    run = Run(run_path, current.mode, current.state, as_of, stages, by_stage, failures)
    run.totals = totals(run)
    run.submit_hosts = sorted(
        {provenance.host(e.text) for e in events if e.kind == "submit" and e.text}
    )
    return run


def _dagman_events(run_path: Path, jobs: list[status.StageJobs]) -> list[JobEvent]:
    """The job events of every stage, from its node logs, else from its DAG's
    JOBSTATE_LOG (a stage whose node log is not there)."""
    events: list[JobEvent] = []
    history: list[JobEvent] | None = None
    for stage in jobs:
        logs = [log for log in stage.logs.values() if log is not None and log.exists()]
        if logs:
            events += [e for log in logs for e in rundir.job_events(log, strict=True)]
            continue
        if history is None:
            history = [
                e
                for dag in sorted(run_path.glob("*.dag"))
                for e in rundir.jobstate_history(rundir.jobstate_log(dag))
            ]
        nodes = set(stage.nodes)
        events += [e for e in history if e.node in nodes]
    return events


def _failures(
    current: status.RunStatus, jobs: dict[str, dict[str, list[Attempt]]]
) -> list[Failure]:
    """Failed and held nodes, then those whose jobs were held and released (and why) or
    failed and were retried (with what exit code), in stage order."""
    result = [Failure(h.name, h.stage, "held", h.reason, job=h.job) for h in current.held]
    for failed in current.failed:
        tried = jobs.get(failed.stage, {}).get(failed.name)
        last = tried[-1] if tried else Attempt(failed.name, "")
        code = last.exit_code if last.end == "failure" else None
        stderr = str(failed.stderr) if failed.stderr is not None else None
        result.append(Failure(
            failed.name, failed.stage, "failed", failed.reason, code, last.job, stderr,
            failed.tail,
        ))  # fmt: skip
    named = {f.name for f in result}
    for stage, nodes in jobs.items():
        for node, tried in nodes.items():
            if node not in named:
                result += _past_trouble(node, stage, tried)
    order = {s.name: i for i, s in enumerate(current.stages)}
    return sorted(result, key=lambda f: order.get(f.stage, len(order)))


def _past_trouble(node: str, stage: str, tried: list[Attempt]) -> list[Failure]:
    """A node neither failed nor held now: why its jobs were held, else how those that
    failed before its retry ended."""
    if len(tried) == 1 and not tried[0].holds:  # most nodes: one job, never held
        return []
    reasons = list(dict.fromkeys(r for attempt in tried for r in attempt.holds))
    if reasons:
        # held now by its log, not yet in DAGMan's status file; or held without a node log
        state = "held" if tried[-1].end == "held" else "held, released"
        text = "; ".join(r or "(no reason: no node log)" for r in reasons)
        return [Failure(node, stage, state, text, job=tried[-1].job)]
    failed = [a for a in tried[:-1] if a.end in ("failure", "removed")]
    if not failed:
        return []
    endings = ", ".join(_ending(a) for a in failed)
    text = f"retried after {'a job' if len(failed) == 1 else f'{len(failed)} jobs'}: {endings}"
    last = failed[-1]
    return [Failure(node, stage, "failed, retried", text, last.exit_code, last.job)]


def _ending(attempt: Attempt) -> str:
    if attempt.end == "removed":
        return "removed"
    return "no exit code" if attempt.exit_code is None else f"exit code {attempt.exit_code}"


def totals(run: Run) -> dict[str, Any]:
    """The run's totals: nodes, attempts, hours, and its span of wall time."""
    starts = [
        a.submitted or a.runs[0][0]
        for n in run.attempts.values()
        for node in n.values()
        for a in node
        if a.submitted is not None or a.runs
    ]
    ends = [
        r[1]
        for n in run.attempts.values()
        for node in n.values()
        for a in node
        for r in a.runs
        if r[1] is not None
    ]
    first, last = min(starts, default=None), max(ends, default=None)
    return {
        "nodes": sum(s.total or 0 for s in run.stages),
        "done": sum(s.done for s in run.stages),
        "failed": sum(s.failed for s in run.stages),
        "held": sum(s.held for s in run.stages),
        "attempts": sum(s.attempts for s in run.stages),
        "retries": sum(s.retries for s in run.stages),
        "evictions": sum(s.evictions for s in run.stages),
        "holds": sum(s.holds for s in run.stages),
        "cpu_hours": sum(s.cpu_hours for s in run.stages),
        "gpu_hours": sum(s.gpu_hours for s in run.stages),
        "badput_hours": sum(s.badput_hours for s in run.stages),
        "first": first,
        "last": last,
        "wall_seconds": last - first if first is not None and last is not None else None,
    }


def to_json(run: Run) -> dict[str, Any]:
    """The report's figures as JSON-ready data (`report --json`)."""
    return {
        "run_dir": str(run.run_dir),
        "mode": run.mode,
        "state": run.state,
        "as_of": run.as_of,
        "totals": run.totals,
        "stages": [asdict(s) for s in run.stages],
        "failures": [asdict(f) for f in run.failures],
        "pictures": [asdict(p) for p in run.pictures],
        "provenance": run.provenance,
    }


@no_cycle_collection()
def make(run_dir: str | Path) -> Run:
    """The whole report of the run in RUN_DIR: figures, pictures, provenance."""
    from aframe_dag.config import load_config

    run_path = Path(run_dir).absolute()
    run = read_run(run_path)
    loaded = load_config(run_path / rundir.CONFIG, env={})
    hashes = provenance.Hashes(run_path)
    run.pictures = provenance.pictures(run_path, loaded.config, loaded.source.where, hashes)
    run.provenance = provenance.provenance(run_path, run.submit_hosts, loaded.config, hashes)
    hashes.save()
    return run


def json_text(run: Run) -> str:
    """The report's figures as JSON text."""
    return json.dumps(to_json(run), indent=2) + "\n"


def write_json(run: Run, path: Path) -> None:
    """Write the figures as JSON (atomically)."""
    write.write_file(path, json_text(run))
