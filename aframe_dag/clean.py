"""`aframe-dag clean`: remove stages' declared outputs and forget their successes, so that
the next build runs them again (law's `--remove-output`).

Only aframe-dag's own records change: the stages leave `.aframe-dag/completed.json` and
the fingerprints files, so that no record, DAGMan's or run-local's, counts for their
nodes again. DAGMan's files are never touched, and nothing is done while a run or a
build is live on the run dir.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aframe_dag import completion, graph, judge, rundir, write
from aframe_dag.errors import RunDirError
from aframe_dag.workflow import load_run_config, plan_stage


@dataclass(frozen=True)
class Cleaning:
    """What `clean` removes: the stages (their records of success) and their output files
    that exist."""

    run_dir: Path
    stages: list[str]  # in the config's order
    outputs: list[Path]


def plan_clean(run_dir: str | Path, stages: list[str], downstream: bool = False) -> Cleaning:
    """What cleaning `stages` (and, `downstream`, every stage after them) removes."""
    run_path = Path(run_dir).absolute()
    loaded = load_run_config(run_path)
    config = loaded.config
    after = {name: stage.after for name, stage in config.stages.items()}
    for name in stages:
        if name not in after:
            raise graph.unknown_stage(name, after, "clean")
    chosen = set(stages)
    if downstream:
        chosen |= {n for n in after if graph.with_ancestors(after, [n]) & set(stages)}
    ordered = [name for name in config.stages if name in chosen]
    outputs: list[Path] = []
    for name in ordered:
        plan = plan_stage(config, run_path, name, loaded.source.where)
        if plan.waits_for is not None:  # its fan-out input is not there: it made nothing
            continue
        patterns = judge.output_patterns(config, run_path, plan)
        items = plan.items if plan.spec is not None else [{}]
        paths = (Path(p.format_map(item)) for item in items for p in patterns)
        outputs.extend(p for p in paths if p.is_file() or p.is_symlink())
    return Cleaning(run_path, ordered, outputs)


def clean(cleaning: Cleaning) -> None:
    """Remove the outputs and forget the stages' successes, under the build lock."""
    run_path = cleaning.run_dir
    with write.build_lock(run_path):
        _refuse_live(run_path)
        chosen = set(cleaning.stages)
        completed_path = run_path / rundir.COMPLETED
        completed = completion.read_json(completed_path)
        if completed:
            nodes = completed.get("nodes", {})
            completed["nodes"] = {
                n: d for n, d in nodes.items() if rundir.node_stage(n, chosen) is None
            }
            write.write_file(completed_path, json.dumps(completed, separators=(",", ":")) + "\n")
        for path in sorted(run_path.glob(f"*{rundir.FINGERPRINTS}")):
            data = completion.read_json(path)
            if not data:
                continue
            data["stages"] = {n: b for n, b in data.get("stages", {}).items() if n not in chosen}
            data["tasks"] = [n for n in data.get("tasks", []) if n not in chosen]
            done = data.get("done", {})  # carried over by an expansion
            data["done"] = {n: d for n, d in done.items() if rundir.node_stage(n, chosen) is None}
            write.write_file(path, json.dumps(data, separators=(",", ":")) + "\n")
        for output in cleaning.outputs:
            try:
                output.unlink(missing_ok=True)
            except OSError as exc:
                raise RunDirError(f"{output}: cannot remove: {exc.strerror}") from None


def _refuse_live(run_path: Path) -> None:
    """Refuse a run dir that DAGMan or run-local is working on (a build holds the lock)."""
    from aframe_dag.runner import refuse_live

    refuse_live(run_path)
    locks = sorted(p.name for p in run_path.glob("*.dag.lock"))
    if locks:
        raise RunDirError(
            f"{run_path}: DAGMan is running on it ({locks[0]}); wait for it to end, or "
            "stop it with condor_rm"
        )
