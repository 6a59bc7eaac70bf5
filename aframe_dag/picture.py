"""Draw a run dir's DAG with graphviz: one box per stage, or per node of a small fan-out.

Everything is read from the run dir's own files, so a run dir copied off the submit host
draws the same: `aframe.dag` and each written `STAGE.dag` (nodes, edges, DONE), the stage
order in `config.yaml`, and what is complete or failed (`node_states`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aframe_dag import rundir
from aframe_dag.errors import AframeDagError, RunDirError
from aframe_dag.rundir import RECORD, done_times, read_node_status, read_record
from aframe_dag.status import read_stages
from aframe_dag.write import write_file

# DAGMan's NodeStatus values in a NODE_STATUS_FILE (manual: DAGMan, node status file)
STATUS_DONE = 5
STATUS_ERROR = 6
FORMATS = {".dot": None, ".svg": "svg", ".png": "png"}

DONE_FILL = "#d3d3d3"
FAILED_COLOR = "#d62728"
FONT = "Helvetica"
TIMES = "\u00d7"  # MULTIPLICATION SIGN, as in "gen \u00d720"


class GraphvizError(AframeDagError):
    """The picture cannot be written: unknown format, or graphviz's `dot` missing or failing."""


# --- what is complete -----------------------------------------------------------------


def node_states(run_dir: Path) -> dict[str, str]:
    """Node name -> "done" or "failed", for the nodes a run has finished so far.

    Done: DONE in `aframe.dag` or a `STAGE.dag`, recorded by run-local (after that DAG
    file was written, as run-local reads it), or NodeStatus 5 in DAGMan's `aframe.status`
    / `STAGE.status`. Failed: NodeStatus 6, unless a source says done (a later run
    succeeded). Node names are unique across the DAG and its sub-DAGs.
    """
    return _node_states(Path(run_dir), {})


def _node_states(run_dir: Path, dags: dict[Path, rundir.Dag]) -> dict[str, str]:
    """node_states, with the DAG files read so far (`dags`, by path: each is read once)."""
    done: set[str] = set()
    failed: set[str] = set()
    names = ["aframe", *_stage_names(run_dir)]
    written: dict[str, float] = {}
    for name in names:
        path = run_dir / f"{name}.dag"
        if path.is_file():
            written[path.name] = path.stat().st_mtime
            done.update(n.name for n in _parsed(path, dags).nodes.values() if n.done)
    recorded = done_times(read_record(run_dir / RECORD))
    for key, when in recorded.items():
        dag, _, node = key.partition(":")
        if dag in written and when >= written[dag]:
            done.add(node)
    for name in names:
        path = run_dir / f"{name}.status"
        if path.is_file():
            for node, ad in read_node_status(path)[1].items():
                status = int(ad.get("NodeStatus", -1))
                if status == STATUS_DONE:
                    done.add(node)
                elif status == STATUS_ERROR:
                    failed.add(node)
    states = dict.fromkeys(sorted(failed - done), "failed")
    states.update(dict.fromkeys(sorted(done), "done"))
    return states


def _parsed(path: Path, dags: dict[Path, rundir.Dag]) -> rundir.Dag:
    if path not in dags:
        dags[path] = rundir.parse_dag(path)
    return dags[path]


def _pipeline_name(run_dir: Path) -> str:
    try:
        config = yaml.safe_load((run_dir / rundir.CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        config = None
    return str(config.get("name", run_dir.name)) if isinstance(config, dict) else run_dir.name


def _stage_names(run_dir: Path) -> list[str]:
    path = run_dir / rundir.CONFIG
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no config.yaml (not a run dir made by aframe-dag build)")
    return list(read_stages(path))


# --- the picture ---------------------------------------------------------------------


@dataclass
class _Box:
    """One drawn node: a DAG node, a collapsed fan-out, or a stage decided at run time."""

    id: str
    label: str
    done: bool = False
    failed: bool = False


@dataclass
class _Stage:
    name: str
    nodes: list[str] = field(default_factory=list)  # leaf nodes (jobs), in DAG order
    runtime: str | None = None  # the SUBDAG node of a stage whose sub-DAG is not written
    boxes: list[_Box] = field(default_factory=list)


def to_dot(run_dir: Path, collapse: int = 8) -> str:
    """The run's DAG as DOT text: a cluster per stage, fan-outs of more than `collapse`
    nodes drawn as one box, complete nodes shaded and failed ones outlined in red.

    Edges join drawn boxes (one per pair); where every box of a stage precedes every box
    of the next and both have several, one edge joins the two clusters instead.
    """
    run_dir = Path(run_dir)
    dag_path = run_dir / rundir.DAG
    if not dag_path.is_file():
        raise RunDirError(f"{run_dir}: no aframe.dag (run `aframe-dag build` first)")
    dags: dict[Path, rundir.Dag] = {}  # each DAG file read once
    dag = _parsed(dag_path, dags)
    states = _node_states(run_dir, dags)
    stages = {name: _Stage(name) for name in _stage_names(run_dir)}
    loose = _Stage("")  # nodes of no stage (a hand edit): drawn outside the clusters
    parents: dict[str, list[str]] = dict(dag.parents)
    members: dict[str, list[str]] = {}  # SUBDAG node -> its sub-DAG's nodes

    for name, node in dag.nodes.items():
        stage = stages.get(_stage_of(name, stages), loose)
        if node.subdag is None:
            stage.nodes.append(name)
            continue
        sub_path = run_dir / f"{name}.dag"  # not node.subdag: the run dir may have moved
        if not sub_path.is_file():
            if stage is loose:
                stage.nodes.append(name)
            else:
                stage.runtime = name
            continue
        sub = _parsed(sub_path, dags)
        members[name] = list(sub.nodes)
        stage.nodes.extend(sub.nodes)
        for child, its_parents in sub.parents.items():
            parents.setdefault(child, []).extend(its_parents)
        if states.get(name) == "done":  # DAGMan: a SUBDAG node is done when all of it is
            for child in sub.nodes:
                states[child] = "done"

    drawn = [s for s in stages.values() if s.nodes or s.runtime]
    box_of: dict[str, list[str]] = {}  # DAG node -> ids of the boxes that draw it
    for stage in [*drawn, loose]:
        _make_boxes(stage, states, collapse, box_of)
    for subdag, nodes in members.items():
        box_of[subdag] = list(dict.fromkeys(b for n in nodes for b in box_of[n]))

    order = {box.id: i for s in [*drawn, loose] for i, box in enumerate(s.boxes, 1)}
    stage_of_box = {box.id: s for s in [*drawn, loose] for box in s.boxes}
    rank = {s.name: i for i, s in enumerate([*drawn, loose])}
    edges: set[tuple[str, str]] = set()
    for child, its_parents in parents.items():
        heads = box_of.get(child, [])
        tails = dict.fromkeys(tail for parent in its_parents for tail in box_of.get(parent, []))
        edges.update((tail, head) for tail in tails for head in heads if head != tail)

    def key(edge: tuple[str, str]) -> tuple[int, int, int, int]:
        tail, head = edge
        return (
            rank[stage_of_box[tail].name],
            order[tail],
            rank[stage_of_box[head].name],
            order[head],
        )

    leaves = [n for s in [*drawn, loose] for n in s.nodes]  # jobs, as build counts them
    done = sum(states.get(n) == "done" for n in leaves)
    runtime = [s.runtime for s in drawn if s.runtime is not None]
    failed = sum(states.get(n) == "failed" for n in [*leaves, *runtime])
    title = f"{_pipeline_name(run_dir)}: {done} of {len(leaves)} nodes done"
    if failed:
        title += f", {failed} failed"
    undecided = sum(1 for s in drawn if s.runtime)
    if undecided:
        title += f"; {undecided} stage{'s' * (undecided > 1)} decided at run time"

    lines = [
        "digraph aframe {",
        f"  graph [rankdir=TB, compound=true, newrank=true, nodesep=0.25, ranksep=0.4, "
        f"fontname={_q(FONT)}, fontsize=14, labelloc=t, label={_q(title)}];",
        f"  node [shape=box, style=rounded, fontname={_q(FONT)}, fontsize=11, "
        'height=0.35, margin="0.12,0.04"];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    rows = {  # fan-outs drawn side by side, in order (unless a hand edit links their nodes)
        s.name: s
        for s in drawn
        if len(s.boxes) > 1 and not any(stage_of_box[t] is s is stage_of_box[h] for t, h in edges)
    }
    for stage in drawn:
        label = stage.name
        if (run_dir / f"{stage.name}-service.sub").is_file():  # a SERVICE node beside them
            label += f" (and its service, {stage.name}-service)"
        lines.append(f"  subgraph {_q('cluster_' + stage.name)} {{")
        lines.append(
            f"    graph [label={_q(label)}, labeljust=l, style=rounded, "
            'color="#a0a0a0", fontsize=11, margin=8];'
        )
        lines.extend(f"    {_box_line(box)}" for box in stage.boxes)
        if stage.name in rows:
            chain = " -> ".join(_q(box.id) for box in stage.boxes)
            lines.append(f"    {{ rank=same; {chain} [style=invis]; }}")
        lines.append("  }")
    lines.extend(f"  {_box_line(box)}" for box in loose.boxes)
    lines.extend(_edge_lines(sorted(edges, key=key), stage_of_box, rows))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _stage_of(node: str, stages: dict[str, _Stage]) -> str:
    """The longest stage name S with node == S or node == S-DIGITS ("" for none)."""
    if node in stages:
        return node
    base, dash, index = node.rpartition("-")
    return base if dash and index.isdecimal() and base in stages else ""


def _make_boxes(
    stage: _Stage, states: dict[str, str], collapse: int, box_of: dict[str, list[str]]
) -> None:
    if stage.runtime is not None:
        state = states.get(stage.runtime)
        box = _Box(
            f"stage:{stage.name}",
            _mark(f"{stage.name} (decided at run time)", state == "failed"),
            done=state == "done",
            failed=state == "failed",
        )
        stage.boxes.append(box)
        box_of[stage.runtime] = [box.id]
        return
    if len(stage.nodes) > max(collapse, 1) and stage.name:
        done = sum(states.get(n) == "done" for n in stage.nodes)
        failed = sum(states.get(n) == "failed" for n in stage.nodes)
        counts = [f"{done} done"] * bool(done) + [f"{failed} failed"] * bool(failed)
        label = f"{stage.name} {TIMES}{len(stage.nodes)}" + ("\n" + ", ".join(counts)) * bool(
            counts
        )
        box = _Box(f"stage:{stage.name}", label, done == len(stage.nodes), failed > 0)
        stage.boxes.append(box)
        for node in stage.nodes:
            box_of[node] = [box.id]
        return
    for node in stage.nodes:
        state = states.get(node)
        box = _Box(node, _mark(node, state == "failed"), state == "done", state == "failed")
        stage.boxes.append(box)
        box_of[node] = [box.id]


def _mark(label: str, failed: bool) -> str:
    return f"{label}\nfailed" if failed else label


def _box_line(box: _Box) -> str:
    attrs = [f"label={_q(box.label)}"]
    if box.done:
        attrs += ['style="rounded,filled"', f"fillcolor={_q(DONE_FILL)}"]
    if box.failed:
        attrs += [f"color={_q(FAILED_COLOR)}", f"fontcolor={_q(FAILED_COLOR)}", "penwidth=2"]
    return f"{_q(box.id)} [{', '.join(attrs)}];"


def _edge_lines(
    edges: list[tuple[str, str]], stage_of_box: dict[str, _Stage], rows: dict[str, _Stage]
) -> list[str]:
    """One line per edge; where every box of one stage precedes every box of another and
    both stages are rows of several boxes, one edge joins the two clusters instead."""
    pairs: dict[tuple[str, str], int] = {}
    for tail, head in edges:
        pair = (stage_of_box[tail].name, stage_of_box[head].name)
        pairs[pair] = pairs.get(pair, 0) + 1
    joined: dict[tuple[str, str], list[str]] = {}
    for (up, down), count in pairs.items():
        if up in rows and down in rows and up != down:
            tails, heads = rows[up], rows[down]
            if count == len(tails.boxes) * len(heads.boxes):
                tail = tails.boxes[(len(tails.boxes) - 1) // 2].id
                head = heads.boxes[(len(heads.boxes) - 1) // 2].id
                joined[(up, down)] = [
                    f"  {_q(tail)} -> {_q(head)} "
                    f"[ltail={_q('cluster_' + up)}, lhead={_q('cluster_' + down)}];"
                ]
    lines: list[str] = []
    for tail, head in edges:
        pair = (stage_of_box[tail].name, stage_of_box[head].name)
        if pair not in joined:
            lines.append(f"  {_q(tail)} -> {_q(head)};")
        elif joined[pair]:  # at the pair's first edge; the rest are drawn by it
            lines.extend(joined[pair])
            joined[pair] = []
    return lines


def _q(text: str) -> str:
    """A DOT quoted string (an id or a label; a newline becomes a centred line break)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# --- writing ------------------------------------------------------------------------


def render(dot_text: str, output: Path) -> None:
    """Write the picture: DOT text for `.dot`, graphviz's drawing for `.svg` and `.png`.

    The file is written whole or not at all (temp file in the same directory, renamed).
    """
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise GraphvizError(
            f"{output}: unknown picture format {suffix or '(no suffix)'!r}; "
            f"name the file FILE{', FILE'.join(FORMATS)}"
        )
    fmt = FORMATS[suffix]
    if fmt is None:
        write_file(output, dot_text)
        return
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizError(
            "graphviz's `dot` is not installed (apt-get install graphviz); "
            f"write {output.with_suffix('.dot')} instead"
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        os.close(fd)
    except OSError as exc:
        raise RunDirError(f"{output}: cannot write: {exc.strerror or exc}") from None
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}", "-o", tmp],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GraphvizError(
                f"{output}: dot failed: {message[-1] if message else f'exit {done.returncode}'}"
            )
        mask = os.umask(0o022)
        os.umask(mask)
        try:
            Path(tmp).chmod(0o666 & ~mask)  # mkstemp makes 0600 files
            Path(tmp).replace(output)
        except OSError as exc:
            raise RunDirError(f"{output}: cannot write: {exc.strerror or exc}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
