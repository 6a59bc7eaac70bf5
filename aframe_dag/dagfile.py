"""Read the DAG and submit files this tool writes: the one reader of each format.

Strict (run-local, which must run what DAGMan would): only the subset aframe-dag writes
is understood, and anything else is an error naming the file and line, never silently
ignored (a hand edit inside the subset is honoured). Lenient (status, which reports on
whatever is there): what it does not understand is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from aframe_dag import quoting
from aframe_dag.errors import RunDirError


@dataclass
class DagNode:
    name: str
    submit: Path | None  # None for a SUBDAG EXTERNAL node
    dag: str = ""  # the name of its .dag file, as in run-local's record ("aframe.dag:NODE")
    subdag: Path | None = None
    vars: dict[str, str] = field(default_factory=dict)
    retry: int = 0
    done: bool = False
    category: str | None = None
    pre: list[str] = field(default_factory=list)  # SCRIPT PRE: executable and arguments
    defer: tuple[int, float] | None = None  # SCRIPT DEFER status seconds: run PRE again


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


def _read(path: Path, strict: bool = True) -> list[str]:
    # HTCondor ends lines at \n only; splitlines() would also split a value at \x85, \f
    # or \u2028, which are ordinary characters to HTCondor
    try:
        return path.read_text(encoding="utf-8", errors="strict" if strict else "replace").split(
            "\n"
        )
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror}") from None


def parse_dag(path: Path, strict: bool = True) -> Dag:
    """Parse a .dag file written by aframe-dag (JOB, SUBDAG EXTERNAL, VARS, ...); not
    `strict`, a line it cannot read is skipped."""
    nodes: dict[str, DagNode] = {}
    parents: dict[str, list[str]] = {}
    maxjobs: dict[str, int] = {}
    env_get: list[str] = []
    services: dict[str, DagNode] = {}
    status_file = None

    def node(name: str, where: str) -> DagNode:
        if name not in nodes:
            raise RunDirError(f"{where}: unknown node {name!r}")
        return nodes[name]

    for number, raw in enumerate(_read(path, strict), 1):
        line = raw.strip()
        where = f"{path}:{number}"
        if not line or line.startswith("#"):
            continue
        words = line.split()
        keyword = words[0].upper()
        try:
            if keyword == "JOB":
                name, submit, *rest = words[1:]
                done = any(w.upper() == "DONE" for w in rest)
                nodes[name] = DagNode(name, _resolve(path, submit), path.name, done=done)
                if rest not in ([], ["DONE"]):
                    raise ValueError
            elif keyword == "SUBDAG":
                external, name, dag, *rest = words[1:]
                if external.upper() != "EXTERNAL" or rest not in ([], ["DONE"]):
                    raise ValueError
                nodes[name] = DagNode(
                    name, None, path.name, subdag=_resolve(path, dag), done=bool(rest)
                )
            elif keyword == "SERVICE":
                name, submit = words[1:]
                services[name] = DagNode(name, _resolve(path, submit), path.name)
            elif keyword == "VARS":
                target = node(words[1], where)
                target.vars.update(_vars(line.split(None, 2)[2], where))
            elif keyword == "RETRY":
                node(words[1], where).retry = int(words[2])
                if len(words) != 3:
                    raise ValueError
            elif keyword == "CATEGORY":
                node(words[1], where).category = words[2]
            elif keyword == "MAXJOBS":
                maxjobs[words[1]] = int(words[2])
            elif keyword == "SCRIPT":
                defer = None
                if words[1].upper() == "DEFER":  # SCRIPT DEFER status seconds PRE ...
                    defer = (int(words[2]), float(words[3]))
                    words = [words[0], *words[4:]]
                if words[1].upper() != "PRE":
                    raise RunDirError(f"{where}: run-local supports SCRIPT PRE only")
                target = node(words[2], where)
                target.pre, target.defer = words[3:], defer  # DAGMan splits on whitespace
            elif keyword == "ENV":
                if words[1].upper() != "GET":
                    raise RunDirError(f"{where}: run-local supports ENV GET only")
                env_get.extend(name for word in words[2:] for name in word.split(","))
            elif keyword == "DONE":
                node(words[1], where).done = True
            elif keyword == "PARENT":
                split = [w.upper() for w in words].index("CHILD")
                for child in words[split + 1 :]:
                    node(child, where)
                    parents.setdefault(child, []).extend(
                        node(p, where).name for p in words[1:split]
                    )
            elif keyword == "NODE_STATUS_FILE":
                status_file = Path(words[1])
            elif keyword not in _DAG_IGNORED:
                raise RunDirError(f"{where}: {words[0]} is not supported by run-local")
        except RunDirError:
            if strict:
                raise
        except (ValueError, IndexError):
            if strict:
                raise RunDirError(f"{where}: cannot read {words[0]} line: {line!r}") from None
    return Dag(path, nodes, parents, maxjobs, env_get, services, status_file)


def _resolve(dag: Path, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else dag.parent / name


def _vars(text: str, where: str) -> dict[str, str]:
    values, position = {}, 0
    while position < len(text.rstrip()):
        match = _VARS_PAIR.match(text, position)
        if not match:
            raise RunDirError(f"{where}: cannot read VARS value at {text[position:]!r}")
        values[match.group(1)] = quoting.dag_unescape(match.group(2))
        position = match.end()
    return values


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
    "on_exit_hold_reason",
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
        lines = _read(path, strict)
    except RunDirError:
        if strict:
            raise
        return Submit(path, commands, includes)
    number = 0
    queued = False
    while number < len(lines):
        start = number + 1
        line = lines[number].strip()
        number += 1
        while line.endswith("\\") and number < len(lines):  # submit-file continuation
            line = line[:-1] + lines[number].strip()
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
        if key.startswith("+"):
            continue  # job ClassAd attributes: HTCondor's business
        if key.lower() not in SUPPORTED:
            if strict:
                raise RunDirError(f"{where}: {key} is not supported by run-local")
            continue
        commands[key.lower()] = value.strip()
    if not queued and strict:
        raise RunDirError(f"{path}: no queue statement")
    return Submit(path, commands, includes)
