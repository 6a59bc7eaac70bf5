"""The run dir's contract: its file names, and the one reader of each format.

Every command that asks what a run did reads through here (status leniently, run-local
strictly), so two commands cannot disagree.

Records (run-local's `run-local.record`, a clustered stage's `STAGE.tasks.record`) are a
line per event, `start|done|failed KEY TIME`, appended and fsync'd as it happens.
One rule says what a sequence means: a key's LAST event decides. `done` with a time is a
success at that time; `failed` is a failure; a `start` that nothing ended (the runner or
the job was killed) and a torn line (a crash mid-write) mean the work is unfinished,
never a success, whatever came before.

DAG and submit files are read in the subset aframe-dag writes. Strict (run-local, which
must run what DAGMan would): anything else is an error naming the file and line, never
silently ignored (a hand edit inside the subset is honoured); the commands that place a
job on a pool (`requirements`, `priority`, attributes: `submit_commands.PLACEMENT`) are
skipped.
Lenient (status, which reports on whatever is there): what it does not understand is
skipped.

Every file is split at newlines only, as HTCondor reads it: a value may hold U+2028,
U+0085 or a form feed, at which str.splitlines() would also split.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from aframe_dag import quoting, submit_commands
from aframe_dag.errors import RunDirError

# files of the run dir that more than one module names
CONFIG = "config.yaml"
DAG = "aframe.dag"
RECORD = "run-local.record"  # run-local's events
LOCK = ".run-local.lock"  # held (flock) by a live run-local
STATE = ".aframe-dag"  # aframe-dag's own bookkeeping
BUILD_LOCK = f"{STATE}/build.lock"  # held (flock) by a build from its first read to its last write
# the DAG templates name DAGMan's own files beside each DAG: DAG.jobstate.log, DAG.status
NODE_STATUS = "aframe.status"  # DAGMan's NODE_STATUS_FILE of aframe.dag
FINGERPRINTS = "fingerprints.json"  # a build's fingerprints; STAGE.fingerprints.json an expand's
COMPLETED = f"{STATE}/completed.json"  # successes harvested by the builds so far
SCRATCH = f"{STATE}/scratch"  # where run-local runs jobs without a shared filesystem
GPUS = f"{STATE}/gpus"  # `build --gpus`: the GPU ids run-local takes when given none
IMAGE_HASHES = f"{STATE}/image-hashes.json"  # `report`'s sha256 of each image


def gpus_text(ids: list[str] | tuple[str, ...]) -> str:
    """The GPUS file: `build --gpus`'s ids as --gpus takes them (`0,1`), or an empty line."""
    return ",".join(ids) + "\n"


def read_gpus(run_dir: Path) -> str:
    """The GPU ids the run dir's build was given (`0,1`), "" if none."""
    found = lines(run_dir / GPUS)
    return found[0].strip() if found else ""


def node_stage(node: str, stages: Container[str]) -> str | None:
    """The stage of `stages` whose node (STAGE, STAGE-INDEX) or task `node` is, or None."""
    if node in stages:
        return node
    stage = node.rpartition("-")[0]
    return stage if stage in stages else None


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


_UNFINISHED = Event("unfinished", None)


def lines(path: Path, strict: bool = False) -> list[str]:
    """The lines of a record, tasks file or DAGMan log, none if it is not there (or,
    unless `strict`, cannot be read)."""
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
        if len(words) < 2:
            continue
        kind = words[0]
        if kind == "start":  # what the work left is not whole until its `done`
            events[words[1]] = _UNFINISHED
        elif kind == "done":
            when = _time(words[2]) if len(words) == 3 else None
            events[words[1]] = Event("done", when) if when is not None else _UNFINISHED  # torn
        elif kind == "failed":
            events[words[1]] = Event("failed", _time(words[2]) if len(words) == 3 else None)
    return events


def record_events(path: Path) -> Iterator[tuple[str, str, float | None]]:
    """Every event of a record in order, (start|done|failed, KEY, TIME), for `report`;
    TIME is None on a torn line."""
    for line in lines(path):
        words = line.split()
        if len(words) >= 2 and words[0] in ("start", "done", "failed"):
            yield words[0], words[1], _time(words[2]) if len(words) == 3 else None


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


# --- DAGMan's own files -----------------------------------------------------------

# Terminal events of a node in a JOBSTATE_LOG (manual: DAGMan, "Machine-readable event
# history, the jobstate.log file")
_JOBSTATE_SUCCESS = {"JOB_SUCCESS", "POST_SUCCESS"}
_JOBSTATE_FAILURE = {"JOB_FAILURE", "POST_FAILURE", "PRE_FAILURE", "JOB_ABORTED"}
_JOBSTATE_OUTCOME = dict.fromkeys(_JOBSTATE_SUCCESS, "success") | dict.fromkeys(
    _JOBSTATE_FAILURE, "failure"
)


def jobstate_log(dag: Path) -> Path:
    """The JOBSTATE_LOG that aframe-dag's DAG file `dag` names: DAG.jobstate.log."""
    return dag.with_name(dag.stem + ".jobstate.log")


def jobstate_events(path: Path, since: float) -> dict[str, str]:
    """Each node's last terminal event ('success'/'failure') after `since` in a JOBSTATE_LOG."""
    first = int(since)  # the log's times are whole seconds
    # a node logs 4 lines a run (SUBMIT, EXECUTE, JOB_TERMINATED, ...), 1 terminal: only
    # lines holding a word of a terminal event's name are split (10^5 nodes: 4x10^5 lines)
    terminal = (
        line.split(None, 3)
        for line in lines(path)
        if "SUCCESS" in line or "FAILURE" in line or "ABORTED" in line
    )
    return {  # a dict display keeps each node's last event
        words[1]: _JOBSTATE_OUTCOME[words[2]]
        for words in terminal
        if len(words) > 2
        and words[2] in _JOBSTATE_OUTCOME
        and words[0].isdigit()
        and int(words[0]) >= first
    }


def read_node_status(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict]:
    """A NODE_STATUS_FILE: its DagStatus ad, NodeStatus ads by node name, StatusEnd ad.

    DAGMan writes one ad per node, each `[` ... `]` on lines of their own (strings are
    escaped, so no value holds a line that is `]`). The NodeStatus ads in HTCondor 23's
    layout are found in one pass of `_NODE_STATUS_ADS`; what is left is parsed ad by ad,
    as parsing the whole file at once costs time quadratic in its length.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror}") from None
    found = _NODE_STATUS_ADS.findall(text)
    rest = _NODE_STATUS_ADS.sub("", text) if found else text
    try:
        ads = [_node_ad(chunk) for chunk in rest.split("\n]") if chunk.strip()]
    except ValueError as exc:
        raise RunDirError(f"{path}: cannot read DAGMan's node status file: {exc}") from None
    dag = next((ad for ad in ads if ad.get("Type") == "DagStatus"), {})
    end = next((ad for ad in ads if ad.get("Type") == "StatusEnd"), {})
    nodes = {values[0]: _status_ad(*values) for values in found}
    nodes.update(
        (str(ad["Node"]), ad) for ad in ads if ad.get("Type") == "NodeStatus" and "Node" in ad
    )
    return dag, nodes, end


# A NodeStatus ad as HTCondor 23's DAGMan writes it in the node status file, one per
# node: read by this pattern at under a microsecond a node. Any other ad, or one whose
# strings hold an escape, goes to classad2.
_NODE_STATUS = re.compile(
    r'\[\n  Type = "NodeStatus";\n  Node = "([^"\\\n]*)";\n'
    r"  NodeStatus = (-?\d+);(?: /\*[^*\n]*\*/)?\n"
    r'  StatusDetails = "([^"\\\n]*)";\n  RetryCount = (-?\d+);\n'
    r"  JobProcsQueued = (-?\d+);\n  JobProcsHeld = (-?\d+);"
)
# the same ads in a whole file: each from its `[` line to its `]` line
_NODE_STATUS_ADS = re.compile(rf"(?m)^{_NODE_STATUS.pattern}\n\]\n?")


def _status_ad(
    node: str, status: str, details: str, retries: str, queued: str, held: str
) -> dict[str, Any]:
    return {
        "Type": "NodeStatus", "Node": node, "NodeStatus": int(status),
        "StatusDetails": details, "RetryCount": int(retries),
        "JobProcsQueued": int(queued), "JobProcsHeld": int(held),
    }  # fmt: skip


def _node_ad(chunk: str) -> dict[str, Any]:
    """One ad of a node status file (its text up to the closing `]`)."""
    match = _NODE_STATUS.fullmatch(chunk.strip())
    if match is None:
        import classad2  # here: most files hold no other ad, and it costs 12 ms to import

        return dict(classad2.parseOne(f"{chunk}]"))
    return _status_ad(*match.groups())


class Hold(NamedTuple):
    """A held job, from a node log: its id and HTCondor's hold reason."""

    job: str  # CLUSTER.PROC, as condor_q -better-analyze and condor_release take it
    reason: str
    code: int | None  # HoldReasonCode
    subcode: int | None  # HoldReasonSubCode


class JobEvent(NamedTuple):
    """One event of a DAG node's job, from a node log (or a JOBSTATE_LOG)."""

    node: str  # the DAG node whose job it is ("DAG Node: NAME" of the job's SUBMIT)
    job: str  # CLUSTER.PROC
    kind: str  # submit, execute, evicted, held, released, terminated or aborted
    when: float  # epoch seconds
    code: int | None = None  # terminated: exit code (None: killed by a signal); held: code
    subcode: int | None = None  # held: HoldReasonSubCode
    text: str = ""  # held, aborted: HTCondor's reason; submit: the submitting schedd
    memory: int | None = None  # terminated: MemoryUsage (MB)
    request_memory: int | None = None  # terminated: RequestMemory (MB)
    disk: int | None = None  # terminated: DiskUsage (KB)
    request_disk: int | None = None  # terminated: RequestDisk (KB)


def job_events(log: Path, strict: bool = False) -> list[JobEvent]:
    """The events of DAG nodes' jobs in a node log (a job's `log`: HTCondor's job event
    log, read by its own parser, htcondor2.JobEventLog), in order; a job no DAG node
    submitted is left out. A log that is not there has none. One that cannot be read:
    `strict`, an error naming it; else its events up to where it stops being readable."""
    if not log.is_file():  # never block on a pipe
        if strict and log.exists():
            raise RunDirError(f"{log}: not a file (a job event log was expected)")
        return []
    import htcondor2  # here: commands start faster without it, and few runs need it

    kind = htcondor2.JobEventType
    names = {
        kind.EXECUTE: "execute", kind.JOB_EVICTED: "evicted", kind.JOB_HELD: "held",
        kind.JOB_RELEASED: "released", kind.JOB_TERMINATED: "terminated",
        kind.JOB_ABORTED: "aborted",
    }  # fmt: skip
    nodes: dict[str, str] = {}  # job id -> its node
    events: list[JobEvent] = []
    stamps: dict[str, int] = {}  # EventTime -> epoch: the bindings' strptime, once a second
    read = 0
    try:
        for read, event in enumerate(htcondor2.JobEventLog(str(log)).events(stop_after=0), 1):  # noqa: B007 (read after it)
            event_type = event.type
            name = names.get(event_type)
            if name is None and event_type != kind.SUBMIT:
                continue  # image size, file transfer, ...: before reading any more of it
            job = f"{event.cluster}.{event.proc}"
            if name is None:  # a submit
                notes = str(event.get("LogNotes", ""))
                if notes.startswith("DAG Node: "):
                    node = nodes[job] = notes.removeprefix("DAG Node: ").strip()
                    host = str(event.get("SubmitHost", ""))
                    events.append(JobEvent(node, job, "submit", _when(event, stamps), text=host))
                continue
            if job not in nodes:
                continue
            node, when = nodes[job], _when(event, stamps)
            if name == "terminated":
                code = event.get("ReturnValue") if event.get("TerminatedNormally") else None
                events.append(JobEvent(
                    node, job, name, when, _int(code), memory=_int(event.get("MemoryUsage")),
                    request_memory=_int(event.get("RequestMemory")),
                    disk=_int(event.get("DiskUsage")), request_disk=_int(event.get("RequestDisk")),
                ))  # fmt: skip
            elif name == "held":
                code, subcode = event.get("HoldReasonCode"), event.get("HoldReasonSubCode")
                reason = str(event.get("HoldReason", ""))
                events.append(JobEvent(node, job, name, when, _int(code), _int(subcode), reason))
            elif name == "aborted":
                events.append(JobEvent(node, job, name, when, text=str(event.get("Reason", ""))))
            else:
                events.append(JobEvent(node, job, name, when))
    except (OSError, ValueError, htcondor2.HTCondorException) as exc:
        if strict:
            raise RunDirError(f"{log}: cannot read this job event log: {exc}") from None
        # not an event log, or an event the bindings cannot read: what came before stands
    if strict and not read and log.stat().st_size:  # the bindings read text as no event
        raise RunDirError(f"{log}: cannot read this job event log: no event in it")
    return events


def _when(event: Any, stamps: dict[str, int]) -> int:
    """An event's time as htcondor2 gives it (`timestamp`), worked out once per EventTime."""
    iso = str(event.get("EventTime", ""))
    when = stamps.get(iso)
    if when is None:
        when = stamps[iso] = event.timestamp
    return when


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_holds(log: Path) -> dict[str, Hold]:
    """The jobs held now, by DAG node, from a node log ({} if it cannot be read). A node's
    last SUBMIT names its job, held if a HOLD is not followed by a RELEASE, TERMINATE or
    ABORT."""
    jobs: dict[str, str] = {}  # node name -> job id
    holds: dict[str, Hold] = {}  # job id -> its hold
    for event in job_events(log):
        if event.kind == "submit":
            jobs[event.node] = event.job
        elif event.kind == "held":
            holds[event.job] = Hold(event.job, event.text, event.code, event.subcode)
        elif event.kind in ("released", "terminated", "aborted"):
            holds.pop(event.job, None)
    return {name: holds[job] for name, job in jobs.items() if job in holds}


# JOBSTATE_LOG events of a node's job, as `job_events` names them (JOB_SUCCESS and
# JOB_FAILURE: its termination, with the exit code DAGMan saw)
_JOBSTATE_JOB = {
    "SUBMIT": "submit", "EXECUTE": "execute", "JOB_EVICTED": "evicted", "JOB_HELD": "held",
    "JOB_RELEASED": "released", "JOB_ABORTED": "aborted", "JOB_SUCCESS": "terminated",
    "JOB_FAILURE": "terminated",
}  # fmt: skip


def jobstate_history(path: Path) -> list[JobEvent]:
    """The job events of a JOBSTATE_LOG in order, as `job_events` gives a node log's: times
    in whole seconds, no hold reasons, memory or disk (the log has none). A job is named
    by its node's last SUBMIT; the JOB_FAILURE of a removed job (after its JOB_ABORTED)
    is no termination."""
    events: list[JobEvent] = []
    jobs: dict[str, str] = {}  # node -> its job's id
    aborted: set[str] = set()
    for line in lines(path):
        words = line.split()
        if len(words) < 4 or words[2] not in _JOBSTATE_JOB or not words[0].isdigit():
            continue
        node, kind, code = words[1], _JOBSTATE_JOB[words[2]], None
        if kind == "submit":
            jobs[node] = ".".join(words[3].split(".")[:2])  # 443.0 as the node log's 443.0
            aborted.discard(node)
        elif kind == "aborted":
            aborted.add(node)
        elif kind == "terminated":
            if node in aborted:
                continue
            code = int(words[3]) if words[3].lstrip("-").isdigit() else None
        events.append(JobEvent(node, jobs.get(node, ""), kind, float(words[0]), code))
    return events


def dagman_version(path: Path) -> str | None:
    """The HTCondor version that a .dagman.out's DAGMan names ($CondorVersion: X), if any."""
    for line in lines(path)[:100]:
        found = re.search(r"\$CondorVersion: (\S+)", line)
        if found:
            return found[1]
    return None


# --- DAG files ------------------------------------------------------------------


@dataclass(slots=True)  # 10^5 of them: slots make them a third quicker to make
class DagNode:
    name: str
    submit: Path | None  # None for a SUBDAG EXTERNAL node
    dag: str = ""  # the name of its .dag file, as in run-local's record ("aframe.dag:NODE")
    subdag: Path | None = None
    vars_texts: list[str] = field(default_factory=list)  # its VARS lines' pairs, checked
    retry: int = 0
    done: bool = False
    category: str | None = None
    pre: list[str] = field(default_factory=list)  # SCRIPT PRE: executable and arguments
    defer: tuple[int, float] | None = None  # SCRIPT DEFER status seconds: run PRE again

    @property
    def vars(self) -> dict[str, str]:
        """The node's VARS, read when asked for (status needs those of few nodes)."""
        return {k: v for text in self.vars_texts for k, v in vars_values(text).items()}


@dataclass
class Dag:
    path: Path
    nodes: dict[str, DagNode]
    parents: dict[str, list[str]]
    maxjobs: dict[str, int]
    env_get: list[str] = field(default_factory=list)
    services: dict[str, DagNode] = field(default_factory=dict)  # SERVICE nodes
    status_file: Path | None = None  # NODE_STATUS_FILE, as written


# DAG file commands that only configure DAGMan's own bookkeeping
_DAG_IGNORED = {"JOBSTATE_LOG", "CONFIG"}
_VARS_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"')
_VARS_TEXT = re.compile(r'(?:\s*[A-Za-z_][A-Za-z0-9_.]*\s*=\s*"(?:[^"\\]|\\.)*")*\s*')


def _read(path: Path, strict: bool = True) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="strict" if strict else "replace").split(
            "\n"
        )
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror}") from None


def parse_dag(path: Path) -> Dag:
    """Parse a .dag file written by aframe-dag (JOB, SUBDAG EXTERNAL, VARS, ...), as
    run-local runs it: a line it cannot read is an error naming it."""
    nodes: dict[str, DagNode] = {}
    parents: dict[str, list[str]] = {}
    maxjobs: dict[str, int] = {}
    env_get: list[str] = []
    services: dict[str, DagNode] = {}
    status_file = None
    resolved: dict[str, Path] = {}

    def resolve(name: str) -> Path:  # a stage's nodes share one .sub: one Path for all
        if name not in resolved:
            resolved[name] = _resolve(path, name)
        return resolved[name]

    number, dag_name = 0, path.name

    def where() -> str:  # made for an error only: 10^5 lines need none
        return f"{path}:{number}"

    def node(name: str) -> DagNode:
        if name not in nodes:
            raise RunDirError(f"{where()}: unknown node {name!r}")
        return nodes[name]

    for number, raw in enumerate(_read(path), 1):  # noqa: B007 (where() reads it)
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        keyword = words[0].upper()
        try:
            if keyword == "JOB":
                name, submit, *rest = words[1:]
                done = any(w.upper() == "DONE" for w in rest)
                nodes[name] = DagNode(name, resolve(submit), dag_name, done=done)
                if rest not in ([], ["DONE"]):
                    raise ValueError
            elif keyword == "SUBDAG":
                external, name, dag, *rest = words[1:]
                if external.upper() != "EXTERNAL" or rest not in ([], ["DONE"]):
                    raise ValueError
                nodes[name] = DagNode(name, None, dag_name, subdag=resolve(dag), done=bool(rest))
            elif keyword == "SERVICE":
                name, submit = words[1:]
                services[name] = DagNode(name, resolve(submit), dag_name)
            elif keyword == "VARS":
                target = node(words[1])
                target.vars_texts.append(_vars(line.split(None, 2)[2], where))
            elif keyword == "RETRY":
                node(words[1]).retry = int(words[2])
                if len(words) != 3:
                    raise ValueError
            elif keyword == "CATEGORY":
                node(words[1]).category = words[2]
            elif keyword == "MAXJOBS":
                maxjobs[words[1]] = int(words[2])
            elif keyword == "SCRIPT":
                defer = None
                if words[1].upper() == "DEFER":  # SCRIPT DEFER status seconds PRE ...
                    defer = (int(words[2]), float(words[3]))
                    words = [words[0], *words[4:]]
                if words[1].upper() != "PRE":
                    raise RunDirError(f"{where()}: run-local supports SCRIPT PRE only")
                target = node(words[2])
                target.pre, target.defer = words[3:], defer  # DAGMan splits on whitespace
            elif keyword == "ENV":
                if words[1].upper() != "GET":
                    raise RunDirError(f"{where()}: run-local supports ENV GET only")
                env_get.extend(name for word in words[2:] for name in word.split(","))
            elif keyword == "DONE":
                node(words[1]).done = True
            elif keyword == "PARENT":
                split = [w.upper() for w in words].index("CHILD")
                for child in words[split + 1 :]:
                    node(child)
                    parents.setdefault(child, []).extend(node(p).name for p in words[1:split])
            elif keyword == "NODE_STATUS_FILE":
                status_file = Path(words[1])
            elif keyword not in _DAG_IGNORED:
                raise RunDirError(f"{where()}: {words[0]} is not supported by run-local")
        except (ValueError, IndexError):
            raise RunDirError(f"{where()}: cannot read {words[0]} line: {line!r}") from None
    return Dag(path, nodes, parents, maxjobs, env_get, services, status_file)


_NODE_LINES = {"JOB", "SUBDAG", "DONE", "NODE_STATUS_FILE"}  # what read_nodes reads, and VARS


def read_nodes(path: Path) -> Dag:
    """The nodes of a .dag file as `status` needs them, read leniently and fast (10^5
    nodes in a quarter of a second): JOB, SUBDAG EXTERNAL, DONE and NODE_STATUS_FILE
    lines, and each VARS line's pairs unchecked (`DagNode.vars` reads what it can).
    Dependencies, scripts and retries are not read; a line it cannot read is skipped."""
    nodes: dict[str, DagNode] = {}
    resolved: dict[str, Path] = {}  # a stage's nodes share one .sub: one Path for all
    status_file, dag_name = None, path.name
    for line in _read(path, strict=False):
        words = line.split(None, 2)  # VARS lines, the most, need no more than this
        if len(words) < 2:
            continue
        keyword = words[0].upper()
        if keyword == "VARS":
            node = nodes.get(words[1])
            if node is not None and len(words) == 3:
                node.vars_texts.append(words[2].strip())
            continue
        if keyword not in _NODE_LINES:  # RETRY, PARENT, SCRIPT, ...
            continue
        words = line.split()
        if keyword == "JOB" and len(words) >= 3:
            if words[2] not in resolved:
                resolved[words[2]] = _resolve(path, words[2])
            submit = resolved[words[2]]
            done = len(words) > 3 and "DONE" in [word.upper() for word in words[3:]]
            nodes[words[1]] = DagNode(words[1], submit, dag_name, done=done)
        elif keyword == "SUBDAG" and len(words) >= 4 and words[1].upper() == "EXTERNAL":
            done = "DONE" in [word.upper() for word in words[4:]]
            subdag = _resolve(path, words[3])
            nodes[words[2]] = DagNode(words[2], None, dag_name, subdag=subdag, done=done)
        elif keyword == "DONE" and words[1] in nodes:
            nodes[words[1]].done = True
        elif keyword == "NODE_STATUS_FILE":
            status_file = Path(words[1])
    return Dag(path, nodes, {}, {}, status_file=status_file)


def vars_texts(path: Path, wanted: set[str]) -> dict[str, str]:
    """The VARS pairs of the `wanted` JOB nodes of a DAG file, as written (a node's part of
    its fingerprint), read leniently: the lines `parse_dag` reads as JOB and VARS, without
    parsing each value (a rebuild reads 10^5 of them)."""
    texts: dict[str, str] = {}
    try:
        dag_lines = _read(path, strict=False)
    except RunDirError:
        return texts
    for line in dag_lines:  # as read_nodes reads them, with no object per node
        words = line.split(None, 2)
        if len(words) < 2:
            continue
        keyword = words[0].upper()
        if keyword == "JOB" and words[1] in wanted:
            texts[words[1]] = ""
        elif keyword == "VARS" and len(words) == 3 and words[1] in texts:
            texts[words[1]] += words[2].strip()
    return texts


def _resolve(dag: Path, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else dag.parent / name


def vars_values(text: str) -> dict[str, str]:
    """The values of a VARS line's pairs (checked by parse_dag)."""
    return {name: quoting.dag_unescape(value) for name, value in _VARS_PAIR.findall(text)}


def _vars(text: str, where: Callable[[], str]) -> str:
    """A VARS line's pairs, checked (in C: a DAG has 10^5 of them); read by DagNode.vars."""
    if _VARS_TEXT.fullmatch(text):
        return text
    position = 0
    while match := _VARS_PAIR.match(text, position):  # up to the pair it cannot read
        position = match.end()
    raise RunDirError(f"{where()}: cannot read VARS value at {text[position:]!r}")


# --- submit files -------------------------------------------------------------------

SUPPORTED = {
    "universe", "executable", "arguments", "transfer_executable", "initialdir",
    "environment", "getenv", "request_cpus", "request_memory", "request_disk",
    "request_gpus", "log", "output", "error", "accounting_group", "accounting_group_user",
    "use_oauth_services", "periodic_release", "periodic_remove", "container_image",
    "should_transfer_files", "when_to_transfer_output", "transfer_input_files",
    "transfer_output_files", "preserve_relative_paths", "output_destination",
    "aws_access_key_id_file", "aws_secret_access_key_file", "gpus_minimum_memory",
    "gpus_minimum_capability", "require_gpus", "on_exit_hold", "on_exit_hold_subcode",
    "on_exit_hold_reason", "checkpoint_exit_code", "transfer_checkpoint_files",
}  # fmt: skip


@dataclass
class Submit:
    path: Path
    commands: dict[str, str]
    includes: list[Path] = field(default_factory=list)  # read when the job is submitted

    def get(self, key: str, default: str = "") -> str:
        return self.commands.get(key, default)

    def included_macros(self) -> dict[str, str]:
        """Macros from the `include :` files, read now (a PRE script may just have written
        them, as condor_submit reads them when DAGMan submits the node)."""
        macros: dict[str, str] = {}
        for path in self.includes:
            for number, raw in enumerate(_read(path), 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                key, sep, value = line.partition("=")
                if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
                    raise RunDirError(f"{path}:{number}: run-local reads only NAME = VALUE")
                macros[key.strip()] = value.strip()
        return macros


def parse_submit(path: Path, strict: bool = True) -> Submit:
    """Parse a .sub file in the subset aframe-dag writes (one `queue`, no loops); not
    `strict`, what it cannot read is skipped (a file that cannot be read has no commands)."""
    commands: dict[str, str] = {}
    includes: list[Path] = []
    try:
        text_lines = _read(path, strict)
    except RunDirError:
        if strict:
            raise
        return Submit(path, commands, includes)
    number = 0
    queued = False
    while number < len(text_lines):
        start = number + 1
        line = text_lines[number].strip()
        number += 1
        while line.endswith("\\") and number < len(text_lines):  # submit-file continuation
            line = line[:-1] + text_lines[number].strip()
            number += 1
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{start}"
        if line.lower() == "queue":
            if queued and strict:
                raise RunDirError(f"{where}: a second queue statement is not supported")
            queued = True
            continue
        include = re.fullmatch(r"include\s*:\s*(\S+)", line, re.IGNORECASE)
        if include:
            includes.append(_resolve(path, include.group(1)))
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or " " in key:
            if strict:
                raise RunDirError(f"{where}: cannot read {line!r} (run-local reads KEY = VALUE)")
            continue
        if key.startswith("+") or key.upper().startswith("MY."):
            continue  # job ClassAd attributes: HTCondor's business
        if key.lower() in submit_commands.PLACEMENT:
            continue  # where and when a pool runs the job (condor.submit): not run-local's
        if key.lower() not in SUPPORTED:
            if strict:
                raise RunDirError(f"{where}: {key} is not supported by run-local")
            continue
        commands[submit_command(line)] = value.strip()
    if not queued and strict:
        raise RunDirError(f"{path}: no queue statement")
    return Submit(path, commands, includes)


def submit_command(line: str) -> str:
    """The command a submit-file line sets, lowercased (HTCondor's commands are not case
    sensitive); "" for a line that sets none."""
    key, sep, _ = line.partition("=")
    return key.strip().lower() if sep else ""
