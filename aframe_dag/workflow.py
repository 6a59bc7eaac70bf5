"""From a validated config to run-dir files: stages, nodes, submit and DAG text."""

from __future__ import annotations

import operator
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aframe_dag import (
    completion,
    fanout,
    graph,
    preflight,
    quoting,
    remote,
    render,
    rundir,
    secrets,
    write,
)
from aframe_dag.config import (
    NAME,
    Config,
    LoadedConfig,
    Stage,
    Wandb,
    dump_config,
    load_config,
    read_yaml,
)
from aframe_dag.errors import ConfigError, FanoutError, GraphError, RunDirError
from aframe_dag.resolve import resolve, template_context

ENTRY_DIR = Path(__file__).parent / "entry"
ENTRY_SCRIPTS = sorted(p.stem for p in ENTRY_DIR.glob("*.py") if p.stem != "__init__")
_UNSAFE_PATH = (" ", "\t", "$", '"', "'", "\\")


@dataclass
class StagePlan:
    """One stage as it will be written."""

    name: str
    stage: Stage
    parents: list[str]
    spec: fanout.Spec | None
    fields: list[str]  # item fields the command uses, set per node through VARS
    waits_for: str | None = None  # input that does not exist yet: fan-out at run time
    items: list[fanout.Item] = field(default_factory=list)
    submit_text: str = ""
    entry_scripts: list[str] = field(default_factory=list)
    stage_fingerprint: completion.Fingerprint | None = None
    verdicts: dict[str, completion.Verdict] = field(default_factory=dict)
    recorded: dict[str, str] = field(default_factory=dict)  # node: last known digest
    _names: list[str] = field(default_factory=list, repr=False)
    _vars: list[str] = field(default_factory=list, repr=False)
    _digests: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """Every node of the stage is complete (a run-time stage never is, at build)."""
        return not self.runtime and all(v.complete for v in self.verdicts.values())

    @property
    def runtime(self) -> bool:
        return self.waits_for is not None

    @property
    def subdag(self) -> bool:
        """Written as a sub-DAG: its fan-out waits for an input, or it has a service,
        which must start with its nodes, not with the whole workflow."""
        return self.runtime or self.stage.service is not None

    def dag_names(self) -> list[str]:
        """Its nodes' names in aframe.dag: a sub-DAG stage is one node there, a clustered
        stage's jobs are its nodes."""
        if self.subdag:
            return [self.name]
        return [c for c, _ in self.clusters()] if self.clustered else self.node_names()

    def tasks_text(self) -> str:
        """RUN/STAGE.tasks of a clustered stage: a line per item, `NODE field="value" ...`."""
        pairs = zip(self.node_names(), self.vars_texts(), strict=True)
        return "".join(f"{node} {text}\n" for node, text in pairs)

    @property
    def clustered(self) -> bool:
        """Its items run `tasks_per_job` to a job (RUN/STAGE.tasks lists them)."""
        return self.spec is not None and self.stage.tasks_per_job > 1

    def clusters(self) -> list[tuple[str, list[str]]]:
        """The jobs of a clustered stage: (STAGE-FIRST-LAST, its items' node names)."""
        names, k = self.node_names(), self.stage.tasks_per_job
        groups = [names[i : i + k] for i in range(0, len(names), k)]
        return [(f"{g[0]}-{g[-1].rpartition('-')[2]}", g) for g in groups]

    def vars_texts(self) -> list[str]:
        """Each node's VARS pairs as the DAG file writes them (computed once); also the
        node's part of its fingerprint. A clustered stage's items keep their raw values
        (its tasks file is read by the tasks wrapper, not by condor_submit)."""
        if self.spec is None or self.runtime:
            return [""]
        if len(self._vars) != len(self.items):
            where = f"stage {self.name} item"
            items = (
                _raw(self.items, self.fields, where)
                if self.clustered
                else _escaped(self.items, self.fields, where)
            )
            fields = self.fields
            if len(fields) == 1:
                (key,) = fields
                self._vars = [f'{key}="{item[key]}"' for item in items]
            elif fields:
                template = " ".join(f'{key}="{{}}"' for key in fields)
                values = operator.itemgetter(*fields)
                self._vars = [template.format(*values(item)) for item in items]
            else:
                self._vars = [""] * len(items)
        return self._vars

    def digest(self, node: str) -> str:
        """A node's fingerprint now: its stage's hash, then its VARS."""
        assert self.stage_fingerprint is not None
        if len(self._digests) != len(self.items) or not self._digests:
            base = self.stage_fingerprint.base
            pairs = zip(self.node_names(), self.vars_texts(), strict=True)
            self._digests = {n: f"{base}/{v}" for n, v in pairs}
        return self._digests[node]

    def node_names(self) -> list[str]:
        """Names of this stage's nodes in the top-level DAG (computed once)."""
        if self.runtime or self.spec is None:
            return [self.name]
        if len(self._names) != len(self.items):
            prefix = graph.node_name(self.name, "")  # STAGE-, then each item's index
            self._names = [prefix + item["index"] for item in self.items]
        return self._names


@dataclass
class Plan:
    config: Config
    run_dir: Path
    stages: list[StagePlan]

    def stage(self, name: str) -> StagePlan:
        return next(s for s in self.stages if s.name == name)


@dataclass
class Summary:
    """What a build wrote, for the CLI to print."""

    pipeline: str
    run_dir: Path
    stages: list[StagePlan]
    files: list[str]
    dag: Path
    warnings: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # stages of the last build not in this
    moved_stages: list[str] = field(default_factory=list)  # their files, moved aside


def check_dag_path(path: Path, what: str) -> None:
    """DAGMan JOB/SCRIPT lines split on whitespace and expand $: refuse such paths (and any
    character that run-local's reading would split on, or that is not UTF-8)."""
    bad = [c for c in str(path) if c in _UNSAFE_PATH or c.isspace() or not c.isprintable()]
    if bad:
        raise RunDirError(
            f"{what} {str(path)!r} contains {bad[0]!r}, which DAGMan's JOB and SCRIPT "
            "lines cannot carry: use a path without spaces, quotes, $ or \\"
        )


# --- planning ----------------------------------------------------------------


def plan_stage(
    config: Config, run_dir: Path, name: str, where: Any, expand_now: bool | None = None
) -> StagePlan:
    """Plan one stage: its generator, items (if its inputs exist) and submit text."""
    stage = config.stages[name]
    spec = None
    if stage.foreach:
        ((generator, params),) = stage.foreach.items()
        prefix = f"stages.{name}.foreach.{generator}"
        context = template_context(config, run_dir, name)
        params = render.render_native(params, context, prefix)
        location = where(("stages", name, "foreach"))
        spec = fanout.parse_spec(
            generator, params, lambda key: f"{location}: {prefix}{'.' if key else ''}{key}"
        )
    plan = StagePlan(name=name, stage=stage, parents=list(stage.after), spec=spec, fields=[])
    if spec is not None:
        missing = [p for p in spec.inputs() if not _exists(p, f"{prefix}: input")]
        # an input that exists may still be rewritten upstream (expand_now False)
        if spec.inputs() and (expand_now is False or (expand_now is None and missing)):
            plan.waits_for = missing[0] if missing else spec.inputs()[0]
        else:
            if missing:
                raise FanoutError(f"stage {name}: input {missing[0]} does not exist")
            plan.items = fanout.expand(spec, name)
            if not plan.items:
                raise FanoutError(
                    f"stage {name}: fan-out is empty (no nodes from {', '.join(spec.inputs())})"
                )
    plan.submit_text = submit_text(config, run_dir, plan)
    return plan


def _exists(path: str, what: str) -> bool:
    """Whether a file is there; a path the system cannot look up is an error naming it."""
    try:
        return Path(path).exists()
    except OSError as exc:  # a name too long, say (exists() raises for those)
        raise FanoutError(f"{what} {path}: {exc.strerror}") from None


def make_plan(
    loaded: LoadedConfig,
    run_dir: Path,
    targets: list[str] | tuple[str, ...] = (),
    state: completion.State | None = None,
    rerun: list[str] | tuple[str, ...] = (),
) -> Plan:
    """Resolve the config and plan every selected stage, in dependency order.

    With `state` (successes harvested from the run dir), nodes are judged complete or
    not; a stage whose fan-out input exists expands at build only if everything
    upstream is complete (else the input may still change: it expands at run time).
    """
    config = loaded.config
    after = {name: stage.after for name, stage in config.stages.items()}
    graph.check_dependencies(
        after, lambda stage: f"{loaded.source.where(('stages', stage, 'after'))}: "
    )
    selected = graph.with_ancestors(after, targets) if targets else set(after)
    for name in rerun:
        if name not in after:
            raise GraphError(f"--rerun: unknown stage {name!r}")
    forced = {n for n in after if graph.with_ancestors(after, [n]) & set(rerun)}
    config = resolve(loaded, run_dir)
    plans: dict[str, StagePlan] = {}
    settled: dict[str, bool] = {}  # complete as far as can be told before settle()
    for name in graph.topological_order(after):
        if name not in selected:
            continue
        upstream = after[name]
        expand_now = None if all(settled[a] for a in upstream) else False
        plan = plan_stage(config, run_dir, name, loaded.source.where, expand_now)
        if state is not None:
            judge(plan, config, run_dir, state, forced=name in forced)
        settled[name] = (
            state is not None
            and not plan.runtime
            and len(_ok_nodes(plan)) == len(plan.verdicts)
            and all(settled[a] for a in upstream)
        )
        plans[name] = plan
    if state is not None:
        settle(list(plans.values()))
    if targets:
        config = replace(config, stages={name: config.stages[name] for name in plans})
    return Plan(config=config, run_dir=run_dir, stages=list(plans.values()))


def _ok(plan: StagePlan, node: str) -> bool:
    """Complete by its own record, or so but for outputs a consumer may have deleted."""
    verdict = plan.verdicts[node]
    return verdict.complete or (
        verdict.reason == "outputs missing" and plan.recorded.get(node) == plan.digest(node)
    )


def _ok_nodes(plan: StagePlan) -> set[str]:
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
    ok = {p.name: _ok_nodes(p) for p in plans}
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
        context["item"] = render.ItemPlaceholder(_item_fields(plan.spec), plan.name)
    return [
        render.render_value(template, context, f"stages.{plan.name}.outputs.{i}")
        for i, template in enumerate(plan.stage.outputs)
    ]


def _pattern(parts: list[quoting.Part]) -> str:
    """An output path as a format string: item macros become {name}."""
    return "".join(_braced(p) for p in parts)


# --- submit files ------------------------------------------------------------


def submit_text(config: Config, run_dir: Path, plan: StagePlan) -> str:
    """The stage's .sub file."""
    return _submit_text(config, run_dir, plan, plan.name, plan.stage)


def service_submit_text(config: Config, run_dir: Path, plan: StagePlan) -> str:
    """The .sub file of a stage's service: the wrapper that starts, publishes and stops it."""
    service = plan.stage.service
    assert service is not None
    name = service_name(plan.name)
    mode = config.condor.container
    python = sys.executable if mode == "none" else service.python
    wrapper = [
        python, "{{ entry('service') }}", "serve",
        f"--address-file={run_dir}/{plan.name}.address", f"--ports={','.join(service.ports)}",
        *([f"--ready={service.ready}"] if service.ready else []), "--",
    ]  # fmt: skip
    command: str | list[str] = (
        [*wrapper, *service.command]
        if isinstance(service.command, list)
        else " ".join([*wrapper, service.command])
    )
    stage = Stage(
        description=service.description or f"The service the nodes of {plan.name} talk to.",
        image=service.image,
        command=command,
        resources=service.resources,
    )
    return _submit_text(config, run_dir, plan, name, stage)


def service_name(stage: str) -> str:
    """The SERVICE node (and .sub file) of a stage: STAGE-service."""
    return f"{stage}-service"


def _submit_text(config: Config, run_dir: Path, plan: StagePlan, name: str, stage: Stage) -> str:
    condor = config.condor
    mode = condor.container
    context = template_context(config, run_dir, plan.name)
    context["stage"] = {"name": name, "resources": stage.resources}
    item_fields = _item_fields(plan.spec) if name == plan.name else []
    placeholder = render.ItemPlaceholder(item_fields, plan.name) if plan.spec else None
    if placeholder is not None:
        context["item"] = placeholder
    if plan.stage.service is not None:
        # what the service published, read by condor_submit from the included file
        context["service_address"] = render.macro_text("SERVICE_ADDRESS")

    def entry(script: str) -> str:
        if script not in ENTRY_SCRIPTS:
            raise render.RenderError(
                f"no entry script {script!r} (available: {', '.join(ENTRY_SCRIPTS)})"
            )
        if script not in plan.entry_scripts:
            plan.entry_scripts.append(script)
        return f"{script}.py" if mode == "container-universe" else f"{run_dir}/entry/{script}.py"

    context["entry"] = entry
    where = f"stages.{plan.name}.{'command' if name == plan.name else 'service.command'}"
    command = render.render_command(stage.command, context, where)
    if not command:
        raise ConfigError(f"{where}: the command is empty")
    wandb = config.wandb
    if wandb.enabled and name in wandb.stages:
        command += [[word] for word in wandb_arguments(wandb, context, name)]
    if plan.clustered and name == plan.name:
        command = _tasks_command(command, plan, run_dir, mode, entry)
    escalation = gpu_escalation(stage, where.rpartition(".")[0] + ".resources")
    if escalation:
        python = _python(command, mode)
        command = [[python], [entry("oom")], ["--"], *command]
    environment: dict[str, list[quoting.Part] | str] = {
        key: render.render_value(value, context, f"stages.{plan.name}.environment.{key}")
        for key, value in {**condor.environment, **stage.environment}.items()
    }
    secrets.check_environment(
        [("condor.environment", k) for k in condor.environment]
        + [(f"stages.{plan.name}.environment", k) for k in stage.environment]
    )
    if name == plan.name:
        plan.fields = placeholder.used if placeholder else []
    logs_to_wandb = wandb.enabled and name in wandb.stages
    getenv = [*condor.getenv, *stage.getenv, *(WANDB_GETENV if logs_to_wandb else [])]

    gpus = stage.resources.gpus
    image = stage.image or ""
    binds = _stage_binds(stage, context, f"stages.{plan.name}.binds")
    transfer = None
    if config.remote.enabled and name in config.remote.stages:
        transfer, command, environment, image = _remote_job(
            config, run_dir, plan, context, command, environment, image, binds
        )
        binds = []
    lines = _option_lines(command)
    if mode == "apptainer":
        executable = condor.apptainer
        prefix = ["exec", *(["--nv"] if gpus else [])]
        host_binds = apptainer_binds(config, run_dir) if transfer is None else []
        for bind in host_binds:
            prefix += ["--bind", bind]
        for path in binds:
            prefix += ["--bind", f"{path}:{path}:ro"]
        if config.dev.enabled:
            dev = quoting.bind_path(str(config.dev.path), "dev.path")
            prefix += ["--bind", f"{dev}:{config.dev.target}"]
        lines.insert(0, [[p] for p in [*prefix, image]])
    else:
        # /usr/bin/env finds the program on PATH, on the host or inside the image
        executable = "/usr/bin/env"
    arguments = quoting.arguments_value(lines, where)
    memory = stage.resources
    quoting.check_value(" ".join(stage.description.split()), f"stages.{plan.name}.description")
    description = textwrap.wrap(stage.description, width=86)
    entry_files = [f"{run_dir}/entry/{n}.py" for n in plan.entry_scripts]
    return render.render_file(
        "stage.sub.j2",
        pipeline=config.name,
        stage=name,
        description=description,
        nodes_note=_nodes_note(plan) if name == plan.name else "One node, beside the stage's.",
        universe="container" if mode == "container-universe" else "vanilla",
        container_image=image if mode == "container-universe" else "",
        executable=executable,
        arguments=arguments,
        run_dir=str(run_dir),
        initialdir="/" if transfer else str(run_dir),
        logs=f"{run_dir}/logs" if transfer else "logs",
        include=f"{run_dir}/{plan.name}.address"
        if plan.stage.service is not None and name == plan.name
        else "",
        environment=quoting.environment_value(environment, f"stages.{plan.name}.environment")
        if environment
        else "",
        getenv=_unique(getenv),
        transfer_input_files=entry_files if mode == "container-universe" and not transfer else [],
        remote=transfer,
        remote_config=config.remote,
        resources=memory,
        memory_mb=megabytes(memory.memory) if memory.max_memory else 0,
        max_memory_mb=megabytes(memory.max_memory) if memory.max_memory else 0,
        remove_held_after=condor.remove_held_after,
        periodic_remove=_periodic_remove(condor.remove_held_after, memory.max_memory),
        periodic_release=_periodic_release(memory.max_memory, escalation),
        gpu_escalation=escalation,
        gpus_minimum_memory=megabytes(memory.gpu_memory)
        if memory.gpu_memory
        else (config.remote.gpus_minimum_memory if transfer else None),
        accounting_group=condor.accounting_group,
        accounting_group_user=condor.accounting_group_user,
        use_oauth_services=condor.use_oauth_services,
    )


def _tasks_command(
    command: list[list[quoting.Part]],
    plan: StagePlan,
    run_dir: Path,
    mode: str,
    entry: Any,
) -> list[list[quoting.Part]]:
    """A clustered stage's command: the tasks wrapper, then the command with each item
    field as `{field}`, which the wrapper fills from RUN/STAGE.tasks for each task."""
    python = _python(command, mode)
    words: list[list[quoting.Part]] = [[_braced(p) for p in token] for token in command]
    wrapper: list[list[quoting.Part]] = [
        [python],
        [entry("tasks")],
        [f"--tasks-file={run_dir}/{rundir.tasks_file(plan.name)}"],
        [f"--record={run_dir}/{rundir.tasks_record(plan.name)}"],
        ["--run=", quoting.Macro("tasks")],
        ["--"],
    ]
    return wrapper + words


def _braced(part: quoting.Part) -> str:
    """A command's part for the tasks wrapper: a field as `{field}`, literal braces doubled."""
    if isinstance(part, quoting.Macro):
        return f"{{{part.name}}}"
    return part.replace("{", "{{").replace("}", "}}")


def _python(command: list[list[quoting.Part]], mode: str) -> str:
    """The Python to run a wrapper with: the command's own (in its image, or here), else
    the image's python3, or this one for host commands."""
    first = command[0][0] if command and command[0] else ""
    if isinstance(first, str) and re.fullmatch(r"python[0-9.]*", Path(first).name):
        return first
    return sys.executable if mode == "none" else "python3"


@dataclass(frozen=True)
class Escalation:
    base: int  # MB of GPU memory asked for first
    cap: int  # MB never asked beyond
    steps: int  # doublings from base to cap: the releases after running out of memory


def gpu_escalation(stage: Stage, where: str) -> Escalation | None:
    """The GPU-memory retries of a GPU stage with `max_gpu_memory`, else None."""
    res = stage.resources
    if not (res.gpus and res.max_gpu_memory):
        return None
    if not res.gpu_memory:
        raise ConfigError(f"{where}.max_gpu_memory: needs gpu_memory, the GPU memory to start at")
    base, cap = megabytes(res.gpu_memory), megabytes(res.max_gpu_memory)
    if cap < base:
        raise ConfigError(f"{where}.max_gpu_memory: is below gpu_memory ({res.gpu_memory})")
    steps = 0
    while base * 2 ** (steps + 1) <= cap:
        steps += 1
    return Escalation(base, cap, steps)


# W&B: the job needs the key (by name) and honours WANDB_MODE=offline and a local server
WANDB_GETENV = ["WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"]


def wandb_arguments(wandb: Wandb, context: dict[str, Any], stage: str) -> list[str]:
    """Aframe's train CLI options for a W&B logger (LightningCLI's `+=` appends one)."""
    args = ["--trainer.logger+=WandbLogger", "--trainer.logger.job_type=train"]
    if wandb.save_dir:
        save_dir = render.render_text(wandb.save_dir, context, "wandb.save_dir")
        args.append(f"--trainer.logger.save_dir={save_dir}")
    for key in ("name", "entity", "project", "group"):
        value = getattr(wandb, key)
        if value:
            args.append(f"--trainer.logger.{key}={value}")
    args += [f"--trainer.logger.tags+={tag}" for tag in wandb.tags]
    for arg in args:
        quoting.check_value(arg, f"wandb ({stage})")
    return args


def _stage_binds(stage: Stage, context: dict[str, Any], where: str) -> list[str]:
    """The stage's host files to bind; a path not on this host is one inside the image."""
    paths = []
    for i, source in enumerate(stage.binds):
        path = render.render_text(source, context, f"{where}.{i}")
        if Path(path).is_absolute() and Path(path).exists():
            paths.append(quoting.bind_path(path, f"{where}.{i}"))
    return paths


def _remote_job(
    config: Config,
    run_dir: Path,
    plan: StagePlan,
    context: dict[str, Any],
    command: list[list[quoting.Part]],
    environment: dict[str, list[quoting.Part] | str],
    image: str,
    binds: list[str],
) -> tuple[remote.Transfer, list[list[quoting.Part]], dict[str, Any], str]:
    """A stage without a shared filesystem: its transfers, and its paths as the job sees them."""
    where = f"stages.{plan.name}"
    inputs = [
        render.render_text(t, context, f"{where}.inputs.{i}")
        for i, t in enumerate(plan.stage.inputs)
    ]
    outputs = [
        render.render_text(t, context, f"{where}.outputs.{i}")
        for i, t in enumerate(plan.stage.outputs)
    ]
    if plan.spec is not None and any(isinstance(p, quoting.Macro) for t in command for p in t):
        raise ConfigError(f"{where}: a remote stage cannot fan out (its paths are per node)")
    if config.dev.enabled:
        raise ConfigError(f"{where}: --dev binds a local checkout, which a remote job cannot see")
    sent = [*inputs, *binds]
    if image and config.condor.container == "apptainer":
        sent.append(image)  # the job needs its image, unless it is on /cvmfs
    transfer = remote.plan_transfer(sent, outputs, where)
    s3 = [p for p in transfer.inputs if p.startswith("s3://")]
    settings = config.remote
    if s3 and not (settings.aws_access_key_id_file and settings.aws_secret_access_key_file):
        raise ConfigError(
            f"{where}.inputs: {s3[0]} needs remote.aws_access_key_id_file and "
            "remote.aws_secret_access_key_file (files holding the key, never the key)"
        )
    if settings.aws_credentials_file:
        transfer.inputs.append(settings.aws_credentials_file.lstrip("/"))
        environment = {
            **environment,
            "AWS_SHARED_CREDENTIALS_FILE": settings.aws_credentials_file.lstrip("/"),
        }

    def rewrite(parts: list[quoting.Part]) -> list[quoting.Part]:
        return [transfer.rewrite(p) if isinstance(p, str) else p for p in parts]

    command = [rewrite(token) for token in command]
    environment = {
        k: transfer.rewrite(v) if isinstance(v, str) else rewrite(v) for k, v in environment.items()
    }
    return transfer, command, environment, transfer.rewrite(image)


def _option_lines(command: list[list[quoting.Part]]) -> list[list[list[quoting.Part]]]:
    """Group argv for reading: a new line at each --option after the program's words."""
    lines: list[list[list[quoting.Part]]] = [[]]
    for token in command:
        first = token[0] if token else ""
        if lines[-1] and isinstance(first, str) and first.startswith("--"):
            lines.append([])
        lines[-1].append(token)
    return lines


def _periodic_remove(held_for: int, max_memory: str | None) -> list[str]:
    """ClassAd clauses that remove a job: held too long, or past its memory ceiling."""
    clauses = []
    if held_for:
        clauses.append(f"(JobStatus == 5 && time() - EnteredCurrentStatus > {held_for})")
    if max_memory:  # it used more than its ceiling allows (held, idle or running)
        clauses.append(f"(MemoryUsage =!= undefined && MemoryUsage > {megabytes(max_memory)})")
    return clauses


def _periodic_release(max_memory: str | None, gpu: Escalation | None) -> list[str]:
    """ClassAd clauses that release a held job to try again with more memory."""
    clauses = []
    if max_memory:  # held for exceeding its memory (26, 34), below its ceiling: the LIGO pattern
        clauses.append(
            "((HoldReasonCode =?= 26 || HoldReasonCode =?= 34) && JobStatus == 5 "
            f"&& MemoryUsage <= {megabytes(max_memory)})"
        )
    if gpu:  # held by on_exit_hold for running out of GPU memory, while a bigger GPU is allowed
        clauses.append(
            f"(HoldReasonCode =?= 3 && HoldReasonSubCode =?= 86 && NumJobStarts <= {gpu.steps})"
        )
    return clauses


def _nodes_note(plan: StagePlan) -> str:
    if plan.spec is None:
        return "One node."
    generator = next(iter(plan.stage.foreach or {}))
    if plan.runtime:
        return (
            f"Fan-out ({generator}) decided at run time from {plan.waits_for}; "
            f"nodes set {', '.join(plan.fields) or 'nothing'} through VARS."
        )
    if plan.clustered:
        jobs, k = len(plan.clusters()), plan.stage.tasks_per_job
        return (
            f"{len(plan.items)} tasks ({generator} fan-out) in {jobs} jobs of up to {k}; "
            f"{plan.name}.tasks gives each task's {', '.join(plan.fields) or 'nothing'}."
        )
    return (
        f"{len(plan.items)} nodes ({generator} fan-out); "
        f"each sets {', '.join(plan.fields) or 'nothing'} through VARS."
    )


def _item_fields(spec: fanout.Spec | None) -> list[str]:
    return spec.fields() if spec is not None else []


def env_get(config: Config) -> list[str]:
    """Every variable a .sub takes with getenv: DAGMan must hold them to pass them on."""
    wandb = WANDB_GETENV if config.wandb.enabled else []
    stages = (v for s in config.stages.values() for v in s.getenv)
    return _unique([*config.condor.getenv, *stages, *wandb])


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def apptainer_binds(config: Config, run_dir: Path) -> list[str]:
    """Run dir, local data dirs and configured binds; nested dirs collapse into parents."""
    paths = [str(run_dir), *(d for d in config.dirs.values() if "://" not in d)]
    binds: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(parent.rstrip("/") + "/") for parent in binds):
            binds.append(quoting.bind_path(path, "apptainer --bind of the run dir or dirs"))
    return binds + [b for b in config.condor.binds if b not in binds]


def megabytes(quantity: str) -> int:
    """A validated quantity such as 16GB in MB (HTCondor's memory unit)."""
    number, unit = float(quantity[:-2]), quantity[-2]
    return int(number * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[unit])


# --- DAG files ------------------------------------------------------------------


def node_lines(plan: StagePlan, run_dir: Path) -> str:
    """JOB/VARS/RETRY/CATEGORY lines of a stage's nodes.

    Built column by column here rather than in a Jinja loop: at 10^5 nodes a template
    loop costs seconds, this a tenth of one. The templates place the block.
    """
    name = plan.name
    retry, category = plan.stage.retry, plan.stage.max_jobs
    submit = f"{run_dir}/{name}.sub"
    names = plan.node_names()
    pairs = plan.vars_texts() if plan.spec is not None and plan.fields else []
    done = {n for n, v in plan.verdicts.items() if v.complete}
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
    if pairs:
        blocks = [
            f"JOB {n} {submit}{' DONE' if n in done else ''}\nVARS {n} {p}\n{tail.replace(mark, n)}"
            for n, p in zip(names, pairs, strict=True)
        ]
    else:
        blocks = [
            f"JOB {n} {submit}{' DONE' if n in done else ''}\n{tail.replace(mark, n)}"
            for n in names
        ]
    return "".join(blocks) + (f"MAXJOBS {name} {category}\n" if category else "")


def python_for_scripts() -> str:
    """The Python that runs DAGMan's PRE scripts on the access point: the build's own."""
    return sys.executable


def _raw(items: list[fanout.Item], fields: list[str], where: str) -> list[fanout.Item]:
    """Items with values escaped for a double-quoted VARS-like value only (a tasks file)."""
    for item in items:
        for key in fields:
            quoting.check_value(item[key], f"{where} {key}")
    special = [k for k in fields if any(c in i[k] for i in items for c in '"\\')]
    if not special:
        return items
    return [{**i, **{k: quoting.dag_escape(i[k]) for k in special}} for i in items]


def _escaped(items: list[fanout.Item], fields: list[str], where: str) -> list[fanout.Item]:
    """Items with VARS-escaped values; a field with nothing to escape is left as is."""
    special = [k for k in fields if quoting.needs_escape("".join([i[k] for i in items]))]
    if not special:
        return items
    return [{**i, **{k: quoting.vars_value(i[k], f"{where} {k}") for k in special}} for i in items]


def _stage_view(plan: StagePlan, run_dir: Path, nodes: bool) -> dict[str, Any]:
    return {
        "name": plan.name,
        "subdag": plan.subdag,
        "done": plan.complete,
        "service": service_name(plan.name) if plan.stage.service is not None else "",
        "note": _dag_note(plan),
        "nodes": node_lines(plan, run_dir) if nodes else "",
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
        (list(dict.fromkeys(n for p in s.parents for n in names[p])), names[s.name])
        for s in plan.stages
        if s.parents
    ]
    return render.render_file(
        "aframe.dag.j2",
        env_get=env_get(plan.config),
        pipeline=plan.config.name,
        run_dir=str(plan.run_dir),
        expand_command=f"{python} -m aframe_dag expand",
        stages=[_stage_view(s, plan.run_dir, nodes=not s.subdag) for s in plan.stages],
        edges=edges,
    )


def stage_dag_text(config: Config, run_dir: Path, plan: StagePlan) -> str:
    """The sub-DAG of a run-time fan-out stage, once its items are known."""
    view = _stage_view(plan, run_dir, nodes=True)
    inputs = plan.spec.inputs() if plan.spec is not None else []
    view["note"] = f"{len(plan.items)} nodes" + (f" from {inputs[0]}" if inputs else "")
    return render.render_file(
        "stage.dag.j2",
        env_get=env_get(config),
        pipeline=config.name,
        run_dir=str(run_dir),
        stage=view,
    )


# --- entry points ------------------------------------------------------------


def build(
    config_path: str | Path,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    targets: list[str] | tuple[str, ...] = (),
    force: bool = False,
    rerun: list[str] | tuple[str, ...] = (),
) -> Summary:
    """Build the run dir for a config; nothing is written unless everything renders.

    Complete nodes (outputs there, last success with the same fingerprint) are
    written DONE. A run dir holding a rescue DAG or a DAGMan lock is refused unless
    `force`, which moves the last run's records aside first.
    """
    if not str(run_dir):
        raise RunDirError("the run dir is an empty path")
    run_path = write.absolute(run_dir)
    check_dag_path(run_path, "run dir")
    python = python_for_scripts()
    check_dag_path(Path(python), "the Python that runs `aframe-dag expand`")
    loaded = load_config(config_path, overrides)
    with write.build_lock(run_path):  # from reading the run dir's records to the last write
        return _build(loaded, run_path, python, targets, force, rerun)


def _build(
    loaded: LoadedConfig,
    run_path: Path,
    python: str,
    targets: list[str] | tuple[str, ...],
    force: bool,
    rerun: list[str] | tuple[str, ...],
) -> Summary:
    """The part of `build` that reads and writes the run dir, under its lock."""
    from aframe_dag.runner import lock_holder  # only builds need it

    holder = lock_holder(run_path) if run_path.is_dir() else None
    if holder:
        raise RunDirError(f"{run_path}: run-local (pid {holder}) is running on it; wait or stop it")
    state = completion.harvest(run_path) if run_path.is_dir() else completion.State()
    plan = make_plan(loaded, run_path, targets, state, rerun)
    stale = _stale_stages(run_path, loaded.config, plan, force)
    for check in preflight.cheap(plan.config, run_path, os.environ):
        if not check.ok and not check.warning:
            raise ConfigError(f"{check.name}: {check.message}")
    files = {rundir.CONFIG: dump_config(plan.config), rundir.DAG: dag_text(plan, python)}
    dirs = [f"logs/{s.name}" for s in plan.stages]
    for stage in plan.stages:
        files[f"{stage.name}.sub"] = stage.submit_text
        if stage.clustered and not stage.runtime:
            files[rundir.tasks_file(stage.name)] = stage.tasks_text()
        if stage.stage.service is not None:
            name = service_name(stage.name)
            files[f"{name}.sub"] = service_submit_text(plan.config, run_path, stage)
            files[f"{stage.name}.dagman.config"] = DAGMAN_CONFIG
            dirs.append(f"logs/{name}")
        for script in stage.entry_scripts:
            files[f"entry/{script}.py"] = (ENTRY_DIR / f"{script}.py").read_text()
    secrets.check_files(files, os.environ)
    data_dirs = [d for d in plan.config.dirs.values() if "://" not in d]
    records = {  # written with the rest, all or none
        rundir.COMPLETED: completion.state_text(state),
        "fingerprints.json": completion.fingerprints_text(plan.stages, rundir.DAG),
    }
    write.check_dirs(data_dirs)  # before the run dir is written: all or nothing
    moved, moved_stages = write.write_run_dir(
        run_path, {**files, **records}, dirs, force=force, stale=stale
    )
    write.make_dirs(data_dirs)
    warnings = []
    if run_path.resolve().is_relative_to("/tmp"):
        # DAGMan's strict mode (the default) refuses a default node log under /tmp
        warnings.append(
            f"{run_path} is under /tmp, where DAGMan's strict mode refuses its node log: "
            "build elsewhere to submit with condor_submit_dag"
        )
    return Summary(
        pipeline=plan.config.name,
        run_dir=run_path,
        stages=plan.stages,
        files=sorted(files),
        dag=run_path / rundir.DAG,
        warnings=warnings,
        moved=moved,
        stale=stale,
        moved_stages=moved_stages,
    )


def _stale_stages(run_path: Path, config: Config, plan: Plan, force: bool) -> list[str]:
    """The stages of the run dir's last build that this build does not write (their files
    are moved aside, so that no command reads them as this run's). A run dir holding
    another pipeline (another name, or stages this config does not have) is refused
    unless `force`."""
    path = run_path / rundir.CONFIG
    if not path.is_file():
        return []
    try:
        data, _ = read_yaml(path)
    except ConfigError as exc:
        if force:
            return []
        raise RunDirError(
            f"{exc} (the config of the run dir's last build); build elsewhere, or pass "
            "--force to move the last run's records aside"
        ) from None
    name, stages = data.get("name"), data.get("stages")
    old = (
        [s for s in stages if isinstance(s, str) and re.fullmatch(NAME, s)]
        if isinstance(stages, dict)
        else []
    )
    unknown = [s for s in old if s not in config.stages]
    if not force and (name != config.name or unknown):
        what = (
            f"pipeline {name!r}, not {config.name!r}"
            if name != config.name
            else f"stages this config does not have ({', '.join(unknown)})"
        )
        raise RunDirError(
            f"{run_path}: holds another pipeline's run: {what}; build it in another run "
            "dir, or pass --force to move the old run's files aside"
        )
    built = {s.name for s in plan.stages}
    return [s for s in old if s not in built]


DAGMAN_CONFIG = """\
# DAGMan settings of a sub-DAG with a SERVICE node (see its CONFIG line): HTCondor 23
# miscounts the service's idle job, and strict mode would fail the finished sub-DAG.
DAGMAN_USE_STRICT = 0
"""


def check(
    config_path: str | Path,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    targets: list[str] | tuple[str, ...] = (),
) -> list[preflight.Check]:
    """Every preflight check of a build, writing nothing."""
    run_path = Path(run_dir).absolute()
    plan = make_plan(load_config(config_path, overrides), run_path, targets)
    return list(preflight.thorough(plan.config, run_path, os.environ))


def expand(run_dir: str | Path, stage: str) -> tuple[Path, int]:
    """Write RUN_DIR/STAGE.dag from the stage's now-existing input; return it and its size."""
    run_path = Path(run_dir).absolute()
    config_file = run_path / rundir.CONFIG
    if not config_file.is_file():
        raise RunDirError(f"{run_path}: not a run dir (no config.yaml); run `aframe-dag build`")
    loaded = load_config(config_file, env={})
    config = loaded.config
    if stage not in config.stages:
        raise ConfigError(f"{config_file}: no stage {stage!r}")
    if not config.stages[stage].foreach:
        raise ConfigError(f"stage {stage} has no fan-out to expand")
    plan = plan_stage(config, run_path, stage, loaded.source.where, expand_now=True)
    # a file-fed stage's fingerprints need no parent's: nodes that already succeeded
    # with the same item (say, the same piece of a re-queried segment list) are DONE
    judge(plan, config, run_path, completion.harvest(run_path))
    path = run_path / f"{stage}.dag"
    text = stage_dag_text(config, run_path, plan)
    secrets.check_files({path.name: text}, os.environ)
    if plan.stage.service is not None:  # a new service publishes its own address
        for stale in (f"{stage}.address", f"{stage}.address.failed"):
            (run_path / stale).unlink(missing_ok=True)
    if plan.clustered:  # before the DAG that runs them
        write.write_file(run_path / rundir.tasks_file(stage), plan.tasks_text())
    write.write_file(path, text)
    completion.write_fingerprints(run_path / f"{stage}.fingerprints.json", [plan], path.name)
    return path, len(plan.items)
