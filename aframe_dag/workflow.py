"""From a validated config to run-dir files: stages, nodes, submit and DAG text."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aframe_dag import completion, fanout, graph, quoting, render, write
from aframe_dag.config import Config, LoadedConfig, Stage, dump_config, load_config
from aframe_dag.errors import ConfigError, FanoutError, GraphError, RunDirError

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

    def vars_texts(self) -> list[str]:
        """Each node's VARS pairs as the DAG file writes them (computed once); also the
        node's part of its fingerprint."""
        if self.spec is None or self.runtime:
            return [""]
        if len(self._vars) != len(self.items):
            items = _escaped(self.items, self.fields, f"stage {self.name} item")
            columns = [[f'{k}="{item[k]}"' for item in items] for k in self.fields]
            self._vars = (
                [" ".join(row) for row in zip(*columns, strict=True)]
                if columns
                else [""] * len(items)
            )
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


def resolve(loaded: LoadedConfig, run_dir: Path) -> Config:
    """Render `dirs` to absolute paths and images to full paths (what config.yaml records)."""
    config = loaded.config
    context: dict[str, Any] = {"run_dir": str(run_dir), "params": config.params, "dirs": {}}
    dirs: dict[str, str] = {}
    for name, value in config.dirs.items():
        text = render.render_text(value, context, f"dirs.{name}")
        if not text:
            raise loaded.error(("dirs", name), "is empty")
        dirs[name] = text if "://" in text else str(write.absolute(text))
        context["dirs"] = dirs
    condor = config.condor
    image_dir = condor.image_dir or None
    stages = {}
    for name, stage in config.stages.items():
        image = stage.image
        if condor.container != "none":
            if not image:
                raise loaded.error(
                    ("stages", name, "image"),
                    f"required with container mode {condor.container!r}",
                )
            if "://" not in image and not Path(image).is_absolute():
                if not image_dir:
                    raise loaded.error(
                        ("stages", name, "image"),
                        f"{image!r} is relative but no image dir is set "
                        "(--image-dir, condor.image_dir or AFRAME_CONTAINER_ROOT)",
                    )
                image = str(Path(image_dir, image))
            if "://" not in image:
                image = str(write.absolute(quoting.check_value(image, f"stages.{name}.image")))
            if "://" not in image and not Path(image).is_file():
                raise loaded.error(("stages", name, "image"), f"no such image: {image}")
        stages[name] = replace(stage, image=image)
    absolute_image_dir = str(write.absolute(image_dir)) if image_dir else None
    return replace(
        config,
        dirs=dirs,
        stages=stages,
        condor=replace(condor, image_dir=absolute_image_dir),
    )


def template_context(config: Config, run_dir: Path, stage: str) -> dict[str, Any]:
    return {
        "params": config.params,
        "dirs": config.dirs,
        "run_dir": str(run_dir),
        # the interpreter running the build: host-mode commands can run with it
        "python": sys.executable,
        "stage": {"name": stage, "resources": config.stages[stage].resources},
    }


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
        missing = [p for p in spec.inputs() if not Path(p).exists()]
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
    graph.check_dependencies(after)
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
    files = completion.Outputs()
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
    return "".join(
        p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else f"{{{p.name}}}"
        for p in parts
    )


# --- submit files ------------------------------------------------------------


def submit_text(config: Config, run_dir: Path, plan: StagePlan) -> str:
    """The stage's .sub file."""
    stage, condor = plan.stage, config.condor
    mode = condor.container
    context = template_context(config, run_dir, plan.name)
    item_fields = _item_fields(plan.spec)
    placeholder = render.ItemPlaceholder(item_fields, plan.name) if plan.spec else None
    if placeholder is not None:
        context["item"] = placeholder

    def entry(name: str) -> str:
        if name not in ENTRY_SCRIPTS:
            raise render.RenderError(
                f"no entry script {name!r} (available: {', '.join(ENTRY_SCRIPTS)})"
            )
        if name not in plan.entry_scripts:
            plan.entry_scripts.append(name)
        return f"{name}.py" if mode == "container-universe" else f"{run_dir}/entry/{name}.py"

    context["entry"] = entry
    where = f"stages.{plan.name}.command"
    command = render.render_command(stage.command, context, where)
    if not command:
        raise ConfigError(f"{where}: the command is empty")
    environment = {
        key: render.render_value(value, context, f"stages.{plan.name}.environment.{key}")
        for key, value in {**condor.environment, **stage.environment}.items()
    }
    plan.fields = placeholder.used if placeholder else []

    gpus = stage.resources.gpus
    image = stage.image or ""
    lines = _option_lines(command)
    if mode == "apptainer":
        executable = condor.apptainer
        prefix = ["exec", *(["--nv"] if gpus else [])]
        for bind in apptainer_binds(config, run_dir):
            prefix += ["--bind", bind]
        for i, source in enumerate(stage.binds):
            path = render.render_text(source, context, f"stages.{plan.name}.binds.{i}")
            # a path that is not on this host is a path inside the image: nothing to bind
            if Path(path).is_absolute() and Path(path).exists():
                path = quoting.bind_path(path, f"stages.{plan.name}.binds.{i}")
                prefix += ["--bind", f"{path}:{path}:ro"]
        lines.insert(0, [[p] for p in [*prefix, image]])
    else:
        # /usr/bin/env finds the program on PATH, on the host or inside the image
        executable = "/usr/bin/env"
    arguments = quoting.arguments_value(lines, where)
    memory = stage.resources
    quoting.check_value(" ".join(stage.description.split()), f"stages.{plan.name}.description")
    description = textwrap.wrap(stage.description, width=86)
    return render.render_file(
        "stage.sub.j2",
        pipeline=config.name,
        stage=plan.name,
        description=description,
        nodes_note=_nodes_note(plan),
        universe="container" if mode == "container-universe" else "vanilla",
        container_image=image if mode == "container-universe" else "",
        executable=executable,
        arguments=arguments,
        run_dir=str(run_dir),
        environment=quoting.environment_value(environment, f"stages.{plan.name}.environment")
        if environment
        else "",
        getenv=_unique([*condor.getenv, *stage.getenv]),
        transfer_input_files=[f"{run_dir}/entry/{n}.py" for n in plan.entry_scripts]
        if mode == "container-universe"
        else [],
        resources=memory,
        memory_mb=megabytes(memory.memory) if memory.max_memory else 0,
        max_memory_mb=megabytes(memory.max_memory) if memory.max_memory else 0,
        remove_held_after=condor.remove_held_after,
        periodic_remove=_periodic_remove(condor.remove_held_after, memory.max_memory),
        accounting_group=condor.accounting_group,
        accounting_group_user=condor.accounting_group_user,
        use_oauth_services=condor.use_oauth_services,
    )


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
    if max_memory:
        clauses.append(f"(JobStatus == 2 && MemoryUsage >= {megabytes(max_memory)})")
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
    return (
        f"{len(plan.items)} nodes ({generator} fan-out); "
        f"each sets {', '.join(plan.fields) or 'nothing'} through VARS."
    )


def _item_fields(spec: fanout.Spec | None) -> list[str]:
    return spec.fields() if spec is not None else []


def env_get(config: Config) -> list[str]:
    """Every variable a .sub takes with getenv: DAGMan must hold them to pass them on."""
    return _unique([*config.condor.getenv, *(v for s in config.stages.values() for v in s.getenv)])


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def apptainer_binds(config: Config, run_dir: Path) -> list[str]:
    """Run dir, local data dirs and configured binds; nested dirs collapse into parents."""
    paths = [str(run_dir), *(d for d in config.dirs.values() if "://" not in d)]
    binds = []
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
    # one pass per kind of line: list comprehensions of f-strings are the fastest way
    # Python has to make 10^5 of them
    done = {n for n, v in plan.verdicts.items() if v.complete}
    blocks = [f"JOB {node} {submit}{' DONE' if node in done else ''}\n" for node in names]
    if pairs:
        blocks = [f"{b}VARS {n} {p}\n" for b, n, p in zip(blocks, names, pairs, strict=True)]
    if retry:
        blocks = [f"{b}RETRY {n} {retry}\n" for b, n in zip(blocks, names, strict=True)]
    if category:
        blocks = [f"{b}CATEGORY {n} {name}\n" for b, n in zip(blocks, names, strict=True)]
    return "".join(blocks) + (f"MAXJOBS {name} {category}\n" if category else "")


def _escaped(items: list[fanout.Item], fields: list[str], where: str) -> list[fanout.Item]:
    """Items with VARS-escaped values; a field with nothing to escape is left as is."""
    special = [k for k in fields if quoting.needs_escape("".join(i[k] for i in items))]
    if not special:
        return items
    return [{**i, **{k: quoting.vars_value(i[k], f"{where} {k}") for k in special}} for i in items]


def _stage_view(plan: StagePlan, run_dir: Path, nodes: bool) -> dict[str, Any]:
    return {
        "name": plan.name,
        "runtime": plan.runtime,
        "note": _dag_note(plan),
        "nodes": node_lines(plan, run_dir) if nodes else "",
    }


def _dag_note(plan: StagePlan) -> str:
    if plan.runtime:
        return f"fan-out decided at run time from {plan.waits_for}"
    if plan.spec is None:
        return "one node"
    return f"{len(plan.items)} nodes"


def dag_text(plan: Plan, python: str) -> str:
    """The top-level aframe.dag."""
    names = {s.name: s.node_names() for s in plan.stages}
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
        stages=[_stage_view(s, plan.run_dir, nodes=not s.runtime) for s in plan.stages],
        edges=edges,
    )


def stage_dag_text(config: Config, run_dir: Path, plan: StagePlan) -> str:
    """The sub-DAG of a run-time fan-out stage, once its items are known."""
    view = _stage_view(plan, run_dir, nodes=True)
    view["note"] = f"{len(plan.items)} nodes from {plan.spec.inputs()[0]}"  # type: ignore[union-attr]
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
    python = sys.executable
    check_dag_path(Path(python), "the Python that runs `aframe-dag expand`")
    loaded = load_config(config_path, overrides)
    from aframe_dag.runner import lock_holder  # only builds need it

    holder = lock_holder(run_path) if run_path.is_dir() else None
    if holder:
        raise RunDirError(f"{run_path}: run-local (pid {holder}) is running on it; wait or stop it")
    state = completion.harvest(run_path) if run_path.is_dir() else completion.State()
    plan = make_plan(loaded, run_path, targets, state, rerun)
    files = {"config.yaml": dump_config(plan.config), "aframe.dag": dag_text(plan, python)}
    for stage in plan.stages:
        files[f"{stage.name}.sub"] = stage.submit_text
        for script in stage.entry_scripts:
            files[f"entry/{script}.py"] = (ENTRY_DIR / f"{script}.py").read_text()
    dirs = [f"logs/{s.name}" for s in plan.stages]
    data_dirs = [d for d in plan.config.dirs.values() if "://" not in d]
    write.check_dirs(data_dirs)  # before the run dir is written: all or nothing
    moved = write.write_run_dir(run_path, files, dirs, force=force)
    write.make_dirs(data_dirs)
    completion.save(run_path, state)
    completion.write_fingerprints(run_path / "fingerprints.json", plan.stages, "aframe.dag")
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
        dag=run_path / "aframe.dag",
        warnings=warnings,
        moved=moved,
    )


def expand(run_dir: str | Path, stage: str) -> tuple[Path, int]:
    """Write RUN_DIR/STAGE.dag from the stage's now-existing input; return it and its size."""
    run_path = Path(run_dir).absolute()
    config_file = run_path / "config.yaml"
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
    write.write_file(path, stage_dag_text(config, run_path, plan))
    completion.write_fingerprints(run_path / f"{stage}.fingerprints.json", [plan], path.name)
    return path, len(plan.items)
