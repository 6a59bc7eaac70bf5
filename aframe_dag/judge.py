"""Which planned nodes are complete: fingerprints judged against the run dir's records
and outputs, then settled across stages. The plan is not changed: a stage's judgement is
its own value."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from aframe_dag import completion, explain, quoting, render
from aframe_dag.config import Config
from aframe_dag.plan import StagePlan
from aframe_dag.resolve import template_context
from aframe_dag.submit import item_fields
from aframe_dag.wrappers import braced


def ok_nodes(plan: StagePlan, judged: completion.Judgement) -> set[str]:
    """The stage's nodes complete by their own record, or so but for outputs a consumer
    may have deleted (none, at once, when nothing is recorded)."""
    verdicts, recorded = judged.verdicts, judged.recorded
    if not recorded and not any(v.complete for v in verdicts.values()):
        return set()
    base = judged.fingerprint.base
    return {
        node
        for node, vars_text in zip(plan.node_names(), plan.vars_texts(), strict=True)
        if verdicts[node].complete
        or (
            verdicts[node].reason == "outputs missing"
            and recorded.get(node) == f"{base}/{vars_text}"
        )
    }


RERUN = completion.Verdict(False, "--rerun")


def judge(
    plan: StagePlan,
    config: Config,
    run_dir: Path,
    state: completion.State,
    forced: bool = False,
) -> completion.Judgement:
    """Fingerprint a planned stage's nodes (not a run-time one's) and judge each by its
    own record and outputs."""
    assert not plan.runtime, "a run-time stage's nodes are judged when it expands"
    recipe, env = completion.submit_parts(plan.submit_text)
    image = completion.image_identity(plan.stage.image)
    patterns = output_patterns(config, run_dir, plan)
    params = config.stage_params(plan.name)  # the stage's own over params
    inputs = explain.stage_inputs(plan.submit_text, image, plan.stage, params, config.dirs)
    stage = completion.stage_fingerprint(recipe, env, image, inputs)
    names = plan.node_names()
    recorded = {n: state.nodes[n] for n in names if n in state.nodes}
    if forced:
        verdicts = dict.fromkeys(names, RERUN)
    elif not recorded and not patterns:  # a first build: nothing to look at
        verdicts = dict.fromkeys(names, completion.NEVER_RUN)
    else:
        files = completion.Outputs()
        items = plan.items if plan.spec is not None else [{}]
        verdicts = {
            name: completion.verdict(
                name, stage, value, [p.format_map(item) for p in patterns], state, files
            )
            for name, value, item in zip(names, plan.vars_texts(), items, strict=True)
        }
    return completion.Judgement(stage, recorded, verdicts, state.inputs, state.bases)


def settle(
    plans: list[StagePlan], judged: dict[str, completion.Judgement]
) -> dict[str, completion.Judgement]:
    """Final verdicts: a node is complete only if its parents are, and a node whose outputs
    are gone only if every consumer is complete (merges delete their inputs)."""
    by_name = {p.name: p for p in plans}
    children: dict[str, list[StagePlan]] = {p.name: [] for p in plans}
    for plan in plans:
        for parent in plan.parents:
            children[parent].append(plan)
    ok = {p.name: ok_nodes(p, judged[p.name]) if p.name in judged else set() for p in plans}
    why: dict[str, str] = {}

    def whole(plan: StagePlan) -> bool:
        return plan.name in judged and len(ok[plan.name]) == len(judged[plan.name].verdicts)

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
            gone = {n for n in ok[plan.name] if not judged[plan.name].verdicts[n].complete}
            if gone:
                ok[plan.name] -= gone
                changed = True
    settled = {}
    for name, judgement in judged.items():
        verdicts = dict(judgement.verdicts)
        for node, verdict in judgement.verdicts.items():
            if node in ok[name] and not verdict.complete:
                verdicts[node] = completion.Verdict(True, "outputs consumed downstream")
            elif node not in ok[name] and (verdict.complete or name in why):
                reason = why.get(name) if verdict.complete else verdict.reason
                verdicts[node] = completion.Verdict(False, reason or verdict.reason)
        settled[name] = replace(judgement, verdicts=verdicts)
    return settled


def output_paths(config: Config, run_dir: Path, plan: StagePlan) -> list[list[quoting.Part]]:
    """Each `outputs` template as text and item macros, filled per node by `_fill`."""
    context = template_context(config, run_dir, plan.name)
    if plan.spec is not None:
        context["item"] = render.ItemPlaceholder(item_fields(plan.spec), plan.name)
    return [
        render.render_value(template, context, f"stages.{plan.name}.outputs.{i}")
        for i, template in enumerate(plan.stage.outputs)
    ]


def output_patterns(config: Config, run_dir: Path, plan: StagePlan) -> list[str]:
    """Each `outputs` path of a stage as a format string, its item fields as {name}: a
    node's paths are `pattern.format_map(item)`."""
    return [_pattern(parts) for parts in output_paths(config, run_dir, plan)]


def _pattern(parts: list[quoting.Part]) -> str:
    """An output path as a format string: item macros become {name}."""
    return "".join(braced(p) for p in parts)
