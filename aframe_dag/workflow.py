"""From a validated config to a run dir: planning each stage (its generator, items and
submit text; judged complete or not), and the entry points build, check and expand."""

from __future__ import annotations

import os
import platform
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aframe_dag import __version__ as version
from aframe_dag import completion, fanout, graph, preflight, render, rundir, secrets, write
from aframe_dag.config import NAME, Config, LoadedConfig, dump_config, load_config, read_yaml
from aframe_dag.dagtext import DAGMAN_CONFIG, dag_text, python_for_scripts, stage_dag_text
from aframe_dag.errors import ConfigError, FanoutError, RenderError, RunDirError
from aframe_dag.judge import judge, ok_nodes, settle
from aframe_dag.plan import Plan, StagePlan
from aframe_dag.resolve import resolve, template_context
from aframe_dag.submit import ENTRY_DIR, service_name, service_submit_text, submit_text

TRAIN = "train"  # the stage `build --gpus` gives its GPUs to
_UNSAFE_PATH = (" ", "\t", "$", '"', "'", "\\")


@dataclass
class Summary:
    """What a build wrote, for the CLI to print."""

    pipeline: str
    run_dir: Path
    stages: list[StagePlan]
    judged: dict[str, completion.Judgement]
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
    waits_for, items = None, []
    if spec is not None:
        missing = [p for p in spec.inputs() if not _exists(p, f"{prefix}: input")]
        # an input that exists may still be rewritten upstream (expand_now False)
        if spec.inputs() and (expand_now is False or (expand_now is None and missing)):
            waits_for = missing[0] if missing else spec.inputs()[0]
        else:
            if missing:
                raise FanoutError(f"stage {name}: input {missing[0]} does not exist")
            items = fanout.expand(spec, name)
            if not items:
                raise FanoutError(
                    f"stage {name}: fan-out is empty (no nodes from {', '.join(spec.inputs())})"
                )
    plan = StagePlan(name, stage, list(stage.after), spec, [], waits_for, items)
    submission = submit_text(config, run_dir, plan)
    return replace(
        plan,
        submit_text=submission.text,
        fields=submission.fields,
        entry_scripts=submission.entry_scripts,
    )


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
    A template that fails to render is named with its file:line.
    """
    try:
        return _make_plan(loaded, run_dir, targets, state, rerun)
    except RenderError as exc:
        if exc.key is None:
            raise
        reason = str(exc).removeprefix(f"{exc.key}: ")
        raise RenderError(f"{loaded.source.at(exc.key.split('.'))}: {reason}") from None


def _make_plan(
    loaded: LoadedConfig,
    run_dir: Path,
    targets: list[str] | tuple[str, ...],
    state: completion.State | None,
    rerun: list[str] | tuple[str, ...],
) -> Plan:
    config = loaded.config
    after = {name: stage.after for name, stage in config.stages.items()}
    graph.check_dependencies(
        after, lambda stage: f"{loaded.source.where(('stages', stage, 'after'))}: "
    )
    selected = graph.with_ancestors(after, targets) if targets else set(after)
    for name in rerun:
        if name not in after:
            raise graph.unknown_stage(name, after, "--rerun")
    forced = {n for n in after if graph.with_ancestors(after, [n]) & set(rerun)}
    config = resolve(loaded, run_dir)
    plans: dict[str, StagePlan] = {}
    judged: dict[str, completion.Judgement] = {}
    settled: dict[str, bool] = {}  # complete as far as can be told before settle()
    for name in graph.topological_order(after):
        if name not in selected:
            continue
        upstream = after[name]
        expand_now = None if all(settled[a] for a in upstream) else False
        plan = plan_stage(config, run_dir, name, loaded.source.where, expand_now)
        if state is not None and not plan.runtime:
            judged[name] = judge(plan, config, run_dir, state, forced=name in forced)
        settled[name] = (
            name in judged
            and len(ok_nodes(plan, judged[name])) == len(judged[name].verdicts)
            and all(settled[a] for a in upstream)
        )
        plans[name] = plan
    judged = settle(list(plans.values()), judged)
    if targets:
        config = replace(config, stages={name: config.stages[name] for name in plans})
    return Plan(config, run_dir, list(plans.values()), judged)


# --- entry points ------------------------------------------------------------


def build(
    config_path: str | Path,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    targets: list[str] | tuple[str, ...] = (),
    force: bool = False,
    rerun: list[str] | tuple[str, ...] = (),
    command: list[str] | tuple[str, ...] = (),
    gpus: list[str] | tuple[str, ...] = (),
) -> Summary:
    """Build the run dir for a config; nothing is written unless everything renders.

    Complete nodes (outputs there, last success with the same fingerprint) are
    written DONE. A run dir holding a rescue DAG or a DAGMan lock is refused unless
    `force`, which moves the last run's records aside first. `command`, the command line
    that asked for the build, is recorded with it (`completion.build_record`). `gpus`
    (`build --gpus`): see `with_gpus`.
    """
    if not str(run_dir):
        raise RunDirError("the run dir is an empty path")
    run_path = write.absolute(run_dir)
    check_dag_path(run_path, "run dir")
    python = python_for_scripts()
    check_dag_path(Path(python), "the Python that runs `aframe-dag expand`")
    loaded = with_gpus(load_config(config_path, overrides), gpus)
    with write.build_lock(run_path):  # from reading the run dir's records to the last write
        return _build(loaded, run_path, python, targets, force, rerun, command, gpus)


def _build(
    loaded: LoadedConfig,
    run_path: Path,
    python: str,
    targets: list[str] | tuple[str, ...],
    force: bool,
    rerun: list[str] | tuple[str, ...],
    command: list[str] | tuple[str, ...] = (),
    gpus: list[str] | tuple[str, ...] = (),
) -> Summary:
    """The part of `build` that reads and writes the run dir, under its lock."""
    from aframe_dag.runner import refuse_live  # only builds need it

    refuse_live(run_path)
    state = completion.harvest(run_path) if run_path.is_dir() else completion.State()
    plan = make_plan(loaded, run_path, targets, state, rerun)
    stale = _stale_stages(run_path, loaded.config, plan, force)
    warnings = []
    for check in preflight.cheap(plan.config, run_path, os.environ):
        if not check.ok and not check.warning:
            raise ConfigError(f"{check.name}: {check.message}")
        if not check.ok:
            warnings.append(f"{check.name}: {check.message}")
    files = {rundir.CONFIG: dump_config(plan.config), rundir.DAG: dag_text(plan, python)}
    dirs = [f"logs/{s.name}" for s in plan.stages]
    for stage in plan.stages:
        files[f"{stage.name}.sub"] = stage.submit_text
        scripts = stage.entry_scripts
        if stage.clustered and not stage.runtime:
            files[rundir.tasks_file(stage.name)] = stage.tasks_text()
        if stage.stage.service is not None:
            name = service_name(stage.name)
            service = service_submit_text(plan.config, run_path, stage)
            files[f"{name}.sub"] = service.text
            scripts = service.entry_scripts
            files[f"{stage.name}.dagman.config"] = DAGMAN_CONFIG
            dirs.append(f"logs/{name}")
        for script in scripts:  # the stage's, and its service's
            files[f"entry/{script}.py"] = (ENTRY_DIR / f"{script}.py").read_text()
    data_dirs = [d for d in plan.config.dirs.values() if "://" not in d]
    made = {  # how this build was made, for `report`
        "command": list(command), "cwd": str(Path.cwd()), "host": socket.gethostname(),
        "python": platform.python_version(), "aframe_dag": version,
    }  # fmt: skip
    records = {  # written with the rest, all or none
        rundir.COMPLETED: completion.state_text(state),
        rundir.GPUS: rundir.gpus_text(gpus),  # none: a rebuild forgets the last ones
        rundir.FINGERPRINTS: completion.fingerprints_text(
            {name: j.fingerprint for name, j in plan.judged.items()},
            [s.name for s in plan.stages if s.clustered],
            rundir.DAG,
            made,
        ),
    }
    # the records too: the command line, the inputs kept to explain a rerun
    secrets.check_files({**files, **records}, os.environ)
    write.check_dirs(data_dirs)  # before the run dir is written: all or nothing
    moved, moved_stages = write.write_run_dir(
        run_path, {**files, **records}, dirs, force=force, stale=stale
    )
    write.make_dirs(data_dirs)
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
        judged=plan.judged,
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


def with_gpus(loaded: LoadedConfig, gpus: list[str] | tuple[str, ...]) -> LoadedConfig:
    """`build --gpus IDS`, the law pipeline's `--gpus`: the train stage on that many GPUs
    (DDP when more than one), as `--set stages.train.resources.gpus=N`; run-local takes
    the ids from the run dir (`rundir.GPUS`)."""
    if not gpus:
        return loaded
    config = loaded.config
    if TRAIN not in config.stages:
        raise ConfigError(f"--gpus: pipeline {config.name} has no {TRAIN} stage to train on them")
    stage = config.stages[TRAIN]
    stage = replace(stage, resources=replace(stage.resources, gpus=len(gpus)))
    return LoadedConfig(replace(config, stages={**config.stages, TRAIN: stage}), loaded.source)


def check(
    config_path: str | Path,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    targets: list[str] | tuple[str, ...] = (),
    gpus: list[str] | tuple[str, ...] = (),
) -> list[preflight.Check]:
    """Every preflight check of a build, writing nothing."""
    run_path = Path(run_dir).absolute()
    plan = make_plan(with_gpus(load_config(config_path, overrides), gpus), run_path, targets)
    return list(preflight.thorough(plan.config, run_path, os.environ))


def load_run_config(run_path: Path) -> LoadedConfig:
    """The config a run dir was built with (its resolved config.yaml: no environment)."""
    config_file = run_path / rundir.CONFIG
    if not config_file.is_file():
        raise RunDirError(f"{run_path}: not a run dir (no config.yaml); run `aframe-dag build`")
    return load_config(config_file, env={})


def expand(run_dir: str | Path, stage: str) -> tuple[Path, int]:
    """Write RUN_DIR/STAGE.dag from the stage's now-existing input; return it and its size."""
    run_path = Path(run_dir).absolute()
    config_file = run_path / rundir.CONFIG
    loaded = load_run_config(run_path)
    config = loaded.config
    if stage not in config.stages:
        raise ConfigError(f"{config_file}: no stage {stage!r}")
    if not config.stages[stage].foreach:
        raise ConfigError(f"stage {stage} has no fan-out to expand")
    plan = plan_stage(config, run_path, stage, loaded.source.where, expand_now=True)
    # a file-fed stage's fingerprints need no parent's: nodes that already succeeded
    # with the same item (say, the same piece of a re-queried segment list) are DONE
    judged = judge(plan, config, run_path, completion.harvest(run_path))
    path = run_path / f"{stage}.dag"
    text = stage_dag_text(config, run_path, plan, judged)
    secrets.check_files({path.name: text}, os.environ)
    if plan.stage.service is not None:  # a new service publishes its own address
        for stale in (f"{stage}.address", f"{stage}.address.failed"):
            (run_path / stale).unlink(missing_ok=True)
    if plan.clustered:  # before the DAG that runs them
        write.write_file(run_path / rundir.tasks_file(stage), plan.tasks_text())
    write.write_file(path, text)
    fingerprints = run_path / f"{stage}.{rundir.FINGERPRINTS}"
    clustered = [stage] if plan.clustered else []
    completion.write_fingerprints(fingerprints, {stage: judged.fingerprint}, clustered, path.name)
    return path, len(plan.items)
