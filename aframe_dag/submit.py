"""A stage's .sub file: command, container mode, environment, resources, remote transfers."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aframe_dag import fanout, quoting, remote, render, secrets, submit_commands, tokens, wrappers
from aframe_dag.config import Config, Stage, Wandb
from aframe_dag.containers import MODES
from aframe_dag.errors import ConfigError
from aframe_dag.plan import StagePlan
from aframe_dag.resolve import template_context
from aframe_dag.resources import gpu_escalation, megabytes, periodic_release, periodic_remove

ENTRY_DIR = Path(__file__).parent / "entry"
ENTRY_SCRIPTS = sorted(p.stem for p in ENTRY_DIR.glob("*.py") if p.stem != "__init__")


# --- submit files ------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A .sub file's text, and what rendering it found."""

    text: str
    fields: list[str]  # the item fields its command uses, set per node through VARS
    entry_scripts: list[str]  # the entry scripts its job runs (and those it was given)


def submit_text(config: Config, run_dir: Path, plan: StagePlan) -> Submission:
    """The stage's .sub file (`plan` has its items; its fields come from here)."""
    return _submit_text(config, run_dir, plan, plan.name, plan.stage, [])


def service_submit_text(config: Config, run_dir: Path, plan: StagePlan) -> Submission:
    """The .sub file of a stage's service: the wrapper that starts, publishes and stops it.
    Its entry scripts are the stage's and its own (container-universe jobs send them)."""
    service = plan.stage.service
    assert service is not None
    name = service_name(plan.name)
    python = sys.executable if MODES[config.condor.container].host_commands else service.python
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
        submit=plan.stage.submit,
    )
    return _submit_text(config, run_dir, plan, name, stage, plan.entry_scripts)


def service_name(stage: str) -> str:
    """The SERVICE node (and .sub file) of a stage: STAGE-service."""
    return f"{stage}-service"


def _submit_text(
    config: Config, run_dir: Path, plan: StagePlan, name: str, stage: Stage, scripts: list[str]
) -> Submission:
    condor = config.condor
    used_scripts = list(scripts)
    mode = MODES[condor.container]
    remote_job = config.remote.enabled and name in config.remote.stages
    context = template_context(config, run_dir, plan.name)
    context["stage"] = {"name": name, "resources": stage.resources}
    fields = item_fields(plan.spec) if name == plan.name else []
    placeholder = render.ItemPlaceholder(fields, plan.name) if plan.spec else None
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
        if script not in used_scripts:
            used_scripts.append(script)
        if mode.sends_entry_scripts and not remote_job:
            return f"{script}.py"
        return f"{run_dir}/entry/{script}.py"  # a remote job gets it at this path, mirrored

    context["entry"] = entry
    where = f"stages.{plan.name}.{'command' if name == plan.name else 'service.command'}"
    command = render.render_command(stage.command, context, where)
    if not command:
        raise ConfigError(f"{where}: the command is empty")
    wandb = config.wandb
    if wandb.enabled and name in wandb.stages:
        command += [[word] for word in wandb_arguments(wandb, context, name)]
    if plan.stage.checkpoint is not None and name == plan.name:
        command = wrappers.resume_command(command, plan, run_dir, context, entry, remote_job, mode)
    if plan.clustered and name == plan.name:
        command = wrappers.tasks_command(command, plan, run_dir, mode, entry)
    escalation = gpu_escalation(stage, where.rpartition(".")[0] + ".resources")
    if escalation:
        python = wrappers.wrapper_python(command, mode)
        command = [[python], [entry("oom")], ["--"], *command]
    environment: dict[str, list[quoting.Part] | str] = {
        key: render.render_value(value, context, f"stages.{plan.name}.environment.{key}")
        for key, value in {**condor.environment, **stage.environment}.items()
    }
    secrets.check_environment(
        [("condor.environment", k) for k in condor.environment]
        + [(f"stages.{plan.name}.environment", k) for k in stage.environment]
    )
    used_fields = (placeholder.used if placeholder else []) if name == plan.name else plan.fields
    logs_to_wandb = wandb.enabled and name in wandb.stages
    getenv = [*condor.getenv, *stage.getenv, *(WANDB_GETENV if logs_to_wandb else [])]

    gpus = stage.resources.gpus
    image = stage.image or ""
    binds = _stage_binds(stage, context, f"stages.{plan.name}.binds")
    transfer = None
    if remote_job:
        scripts_sent = [f"{run_dir}/entry/{s}.py" for s in used_scripts]
        transfer, command, environment, image = _remote_job(
            config, run_dir, plan, context, command, environment, image, [*binds, *scripts_sent]
        )
        binds = []
    self_checkpoint, transfer_every = "", 0
    if transfer is not None and plan.stage.checkpoint is not None and name == plan.name:
        self_checkpoint = _self_checkpoint(plan, context, transfer)
        transfer_every = plan.stage.checkpoint.transfer_every
    lines = _option_lines(command)
    if mode.apptainer_exec:
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
    entry_files = [f"{run_dir}/entry/{n}.py" for n in used_scripts]
    job_tokens = tokens.stage_tokens(config, plan.name)
    text = render.render_file(
        "stage.sub.j2",
        pipeline=config.name,
        stage=name,
        description=description,
        nodes_note=_nodes_note(plan, used_fields)
        if name == plan.name
        else "One node, beside the stage's.",
        universe=mode.universe,
        container_image=image if mode.condor_starts_image else "",
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
        transfer_input_files=entry_files if mode.sends_entry_scripts and not transfer else [],
        remote=transfer,
        remote_config=config.remote,
        self_checkpoint=self_checkpoint,
        transfer_every=transfer_every,
        resources=memory,
        memory_mb=megabytes(memory.memory) if memory.max_memory else 0,
        max_memory_mb=megabytes(memory.max_memory) if memory.max_memory else 0,
        remove_held_after=condor.remove_held_after,
        periodic_remove=periodic_remove(condor.remove_held_after, memory.max_memory),
        periodic_release=periodic_release(memory.max_memory, escalation),
        gpu_escalation=escalation,
        gpus_minimum_memory=megabytes(memory.gpu_memory)
        if memory.gpu_memory
        else (config.remote.gpus_minimum_memory if transfer else None),
        accounting_group=condor.accounting_group,
        accounting_group_user=condor.accounting_group_user,
        tokens=job_tokens,
        token_lines=tokens.submit_lines(job_tokens),
        submit_lines=submit_commands.merged(condor.submit, stage.submit),
        stage_key=plan.name,
    )
    return Submission(text, used_fields, used_scripts)


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
    sent_too: list[str],
) -> tuple[remote.Transfer, list[list[quoting.Part]], dict[str, Any], str]:
    """A stage without a shared filesystem: its transfers (its inputs, and `sent_too`: its
    binds and entry scripts), and its paths as the job sees them."""
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
    sent = [*inputs, *sent_too]
    if image and MODES[config.condor.container].apptainer_exec:
        sent.append(image)  # apptainer exec needs its image there, unless it is on /cvmfs
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
    _refuse_unsent(config, run_dir, command, where)
    if settings.gpus_minimum_memory and plan.stage.resources.gpu_memory:
        raise ConfigError(
            f"remote.gpus_minimum_memory ({settings.gpus_minimum_memory} MB) and "
            f"{where}.resources.gpu_memory ({plan.stage.resources.gpu_memory}) both set the "
            "GPU memory of its job: unset one"
        )
    environment = {
        k: transfer.rewrite(v) if isinstance(v, str) else rewrite(v) for k, v in environment.items()
    }
    return transfer, command, environment, transfer.rewrite(image)


def _self_checkpoint(plan: StagePlan, context: dict[str, Any], transfer: remote.Transfer) -> str:
    """The checkpoint a remote job hands HTCondor, as the job sees it (in its scratch dir)."""
    path = wrappers.checkpoint_path(plan, context)
    seen = transfer.rewrite(path)
    if seen.startswith("/"):
        raise ConfigError(
            f"stages.{plan.name}.checkpoint.file: {path} is not in the job's scratch dir: "
            f"put it in the directory of one of stages.{plan.name}.outputs"
        )
    return seen


def _refuse_unsent(
    config: Config, run_dir: Path, command: list[list[quoting.Part]], where: str
) -> None:
    """A remote job sees only what is sent: a path of this machine's run dir or data dirs
    left in its command (not an input, nor below an output's dir) is an error."""
    local = [str(run_dir), *(d for d in config.dirs.values() if "://" not in d)]
    for token in command:
        for part in token:
            for path in remote.absolute_paths(part) if isinstance(part, str) else []:
                if any(path == d or path.startswith(d.rstrip("/") + "/") for d in local):
                    raise ConfigError(
                        f"{where}.command: uses {path}, which a job without the shared "
                        f"filesystem cannot see: list it (or its directory) in {where}.inputs"
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


def _nodes_note(plan: StagePlan, fields: list[str]) -> str:
    if plan.spec is None:
        return "One node."
    generator = next(iter(plan.stage.foreach or {}))
    if plan.runtime:
        return (
            f"Fan-out ({generator}) decided at run time from {plan.waits_for}; "
            f"nodes set {', '.join(fields) or 'nothing'} through VARS."
        )
    if plan.clustered:
        jobs, k = len(plan.clusters()), plan.stage.tasks_per_job
        return (
            f"{len(plan.items)} tasks ({generator} fan-out) in {jobs} jobs of up to {k}; "
            f"{plan.name}.tasks gives each task's {', '.join(fields) or 'nothing'}."
        )
    return (
        f"{len(plan.items)} nodes ({generator} fan-out); "
        f"each sets {', '.join(fields) or 'nothing'} through VARS."
    )


def item_fields(spec: fanout.Spec | None) -> list[str]:
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
