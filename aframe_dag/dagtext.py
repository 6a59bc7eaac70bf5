"""The text of the DAG files: aframe.dag, a run-time stage's sub-DAG, node blocks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from aframe_dag import completion, render
from aframe_dag.config import Config
from aframe_dag.plan import Plan, StagePlan
from aframe_dag.submit import env_get, service_name

# --- DAG files ------------------------------------------------------------------


def node_lines(plan: StagePlan, run_dir: Path, done: set[str]) -> str:
    """JOB/VARS/RETRY/CATEGORY lines of a stage's nodes (those `done` written DONE).

    Built column by column here rather than in a Jinja loop: at 10^5 nodes a template
    loop costs seconds, this a tenth of one. The templates place the block.
    """
    name = plan.name
    retry, category = plan.stage.retry, plan.stage.max_jobs
    submit = f"{run_dir}/{name}.sub"
    names = plan.node_names()
    pairs = plan.vars_texts() if plan.spec is not None and plan.fields else []
    # the lines after JOB and VARS need only the node's name: made once, with a marker
    # for the name (one list comprehension of f-strings: the fastest way Python has to
    # make 10^5 blocks)
    mark = "\0"
    tail = (f"RETRY {mark} {retry}\n" if retry else "") + (
        f"CATEGORY {mark} {name}\n" if category else ""
    )
    if plan.stage.service is not None:
        # each node waits for the service's address (manual: DAGMan, SCRIPT DEFER): the
        # script exits 75 until the address is there, and DAGMan runs it again later
        wait = f"{python_for_scripts()} {run_dir}/entry/service.py wait {run_dir}/{name}.address"
        tail += f"SCRIPT DEFER 75 {plan.stage.service.poll} PRE {mark} {wait}\n"
    if plan.clustered:  # a job per cluster, running the tasks not yet complete
        clusters = plan.clusters()
        names = [cluster for cluster, _ in clusters]
        todo = [" ".join(i for i in items if i not in done) or items[0] for _, items in clusters]
        done = {c for c, items in clusters if all(i in done for i in items)} if done else done
        pairs = [f'tasks="{t}"' for t in todo]
    # each node's name joins the tail's pieces: quicker than replacing the marker in it
    parts = tail.split(mark)
    if pairs:
        blocks = [
            f"JOB {n} {submit}{' DONE' if n in done else ''}\nVARS {n} {p}\n{n.join(parts)}"
            for n, p in zip(names, pairs, strict=True)
        ]
    else:
        blocks = [f"JOB {n} {submit}{' DONE' if n in done else ''}\n{n.join(parts)}" for n in names]
    return "".join(blocks) + (f"MAXJOBS {name} {category}\n" if category else "")


def python_for_scripts() -> str:
    """The Python that runs DAGMan's PRE scripts on the access point: the build's own."""
    return sys.executable


def _stage_view(
    plan: StagePlan, run_dir: Path, nodes: bool, judged: completion.Judgement | None
) -> dict[str, Any]:
    return {
        "name": plan.name,
        "subdag": plan.subdag,
        "done": judged is not None and judged.complete,
        "service": service_name(plan.name) if plan.stage.service is not None else "",
        "note": _dag_note(plan),
        "nodes": node_lines(plan, run_dir, judged.done if judged else set()) if nodes else "",
    }


def _dag_note(plan: StagePlan) -> str:
    if plan.runtime:
        return f"fan-out decided at run time from {plan.waits_for}"
    if plan.spec is None:
        return "one node"
    service = ", and the service they talk to (a sub-DAG)" if plan.stage.service else ""
    return f"{len(plan.items)} nodes{service}"


def dag_text(plan: Plan, python: str) -> str:
    """The top-level aframe.dag."""
    names = {s.name: s.dag_names() for s in plan.stages}
    edges = [
        # a lone parent's names are distinct already: only two or more need de-duplicating
        (
            names[s.parents[0]]
            if len(s.parents) == 1
            else list(dict.fromkeys(n for p in s.parents for n in names[p])),
            names[s.name],
        )
        for s in plan.stages
        if s.parents
    ]
    return render.render_file(
        "aframe.dag.j2",
        env_get=env_get(plan.config),
        pipeline=plan.config.name,
        run_dir=str(plan.run_dir),
        expand_command=f"{python} -m aframe_dag expand",
        stages=[
            _stage_view(s, plan.run_dir, not s.subdag, plan.judged.get(s.name)) for s in plan.stages
        ],
        edges=edges,
    )


def stage_dag_text(
    config: Config, run_dir: Path, plan: StagePlan, judged: completion.Judgement
) -> str:
    """The sub-DAG of a run-time fan-out stage, once its items are known."""
    view = _stage_view(plan, run_dir, True, judged)
    inputs = plan.spec.inputs() if plan.spec is not None else []
    view["note"] = f"{len(plan.items)} nodes" + (f" from {inputs[0]}" if inputs else "")
    return render.render_file(
        "stage.dag.j2",
        env_get=env_get(config),
        pipeline=config.name,
        run_dir=str(run_dir),
        stage=view,
    )


DAGMAN_CONFIG = """\
# DAGMan settings of a sub-DAG with a SERVICE node (see its CONFIG line): HTCondor 23
# miscounts the service's idle job, and strict mode would fail the finished sub-DAG.
DAGMAN_USE_STRICT = 0
"""
