"""Which planned nodes are complete: fingerprints judged against the run dir's records
and outputs, then settled across stages."""

from __future__ import annotations

from pathlib import Path

from aframe_dag import completion, quoting, render
from aframe_dag.config import Config
from aframe_dag.plan import StagePlan
from aframe_dag.resolve import template_context
from aframe_dag.submit import braced, item_fields


def _ok(plan: StagePlan, node: str) -> bool:
    """Complete by its own record, or so but for outputs a consumer may have deleted."""
    verdict = plan.verdicts[node]
    return verdict.complete or (
        verdict.reason == "outputs missing" and plan.recorded.get(node) == plan.digest(node)
    )


def ok_nodes(plan: StagePlan) -> set[str]:
    """The stage's nodes that `_ok` accepts (none, at once, when nothing is recorded)."""
    if not plan.recorded and not any(v.complete for v in plan.verdicts.values()):
        return set()
    return {n for n in plan.verdicts if _ok(plan, n)}


RERUN = completion.Verdict(False, "--rerun")


def judge(
    plan: StagePlan,
    config: Config,
    run_dir: Path,
    state: completion.State,
    forced: bool = False,
) -> None:
    """Fingerprint a planned stage's nodes and judge each by its own record and outputs."""
    if plan.runtime:
        return
    recipe, env = completion.submit_parts(plan.submit_text)
    image = completion.image_identity(plan.stage.image)
    patterns = [_pattern(parts) for parts in output_paths(config, run_dir, plan)]
    stage = plan.stage_fingerprint = completion.stage_fingerprint(recipe, env, image)
    names = plan.node_names()
    plan.recorded = {n: state.nodes[n] for n in names if n in state.nodes}
    if forced:
        plan.verdicts = dict.fromkeys(names, RERUN)
    elif not plan.recorded and not patterns:  # a first build: nothing to look at
        plan.verdicts = dict.fromkeys(names, completion.NEVER_RUN)
    else:
        files = completion.Outputs()
        items = plan.items if plan.spec is not None else [{}]
        plan.verdicts = {
            name: completion.verdict(
                name, stage, value, [p.format_map(item) for p in patterns], state, files
            )
            for name, value, item in zip(names, plan.vars_texts(), items, strict=True)
        }


def settle(plans: list[StagePlan]) -> None:
    """Final verdicts: a node is complete only if its parents are, and a node whose outputs
    are gone only if every consumer is complete (merges delete their inputs)."""
    by_name = {p.name: p for p in plans}
    children: dict[str, list[StagePlan]] = {p.name: [] for p in plans}
    for plan in plans:
        for parent in plan.parents:
            children[parent].append(plan)
    ok = {p.name: ok_nodes(p) for p in plans}
    why: dict[str, str] = {}

    def whole(plan: StagePlan) -> bool:
        return not plan.runtime and len(ok[plan.name]) == len(plan.verdicts)

    changed = True
    while changed:
        changed = False
        for plan in plans:
            blocked = next((p for p in plan.parents if not whole(by_name[p])), None)
            if blocked and ok[plan.name]:
                why[plan.name] = f"parent stage {blocked} runs"
                ok[plan.name] = set()
                changed = True
        for plan in reversed(plans):
            consumers = children[plan.name]
            if consumers and all(whole(c) for c in consumers):
                continue
            gone = {n for n in ok[plan.name] if not plan.verdicts[n].complete}
            if gone:
                ok[plan.name] -= gone
                changed = True
    for plan in plans:
        for name, verdict in plan.verdicts.items():
            if name in ok[plan.name] and not verdict.complete:
                plan.verdicts[name] = completion.Verdict(True, "outputs consumed downstream")
            elif name not in ok[plan.name] and (verdict.complete or plan.name in why):
                reason = why.get(plan.name) if verdict.complete else verdict.reason
                plan.verdicts[name] = completion.Verdict(False, reason or verdict.reason)


def output_paths(config: Config, run_dir: Path, plan: StagePlan) -> list[list[quoting.Part]]:
    """Each `outputs` template as text and item macros, filled per node by `_fill`."""
    context = template_context(config, run_dir, plan.name)
    if plan.spec is not None:
        context["item"] = render.ItemPlaceholder(item_fields(plan.spec), plan.name)
    return [
        render.render_value(template, context, f"stages.{plan.name}.outputs.{i}")
        for i, template in enumerate(plan.stage.outputs)
    ]


def _pattern(parts: list[quoting.Part]) -> str:
    """An output path as a format string: item macros become {name}."""
    return "".join(braced(p) for p in parts)
