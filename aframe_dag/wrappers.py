"""The entry-script wrappers a stage's command starts in: the tasks wrapper (a clustered
stage's items, several to a job), the resume wrapper (a stage with a checkpoint), and the
Python that runs them."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from aframe_dag import quoting, render, rundir
from aframe_dag.containers import Mode
from aframe_dag.errors import ConfigError
from aframe_dag.plan import StagePlan


def tasks_command(
    command: list[list[quoting.Part]],
    plan: StagePlan,
    run_dir: Path,
    mode: Mode,
    entry: Any,
) -> list[list[quoting.Part]]:
    """A clustered stage's command: the tasks wrapper, then the command with each item
    field as `{field}`, which the wrapper fills from RUN/STAGE.tasks for each task."""
    python = wrapper_python(command, mode)
    words: list[list[quoting.Part]] = [[braced(p) for p in token] for token in command]
    wrapper: list[list[quoting.Part]] = [
        [python],
        [entry("tasks")],
        [f"--tasks-file={run_dir}/{rundir.tasks_file(plan.name)}"],
        [f"--record={run_dir}/{rundir.tasks_record(plan.name)}"],
        ["--run=", quoting.Macro("tasks")],
        ["--"],
    ]
    return wrapper + words


def resume_command(
    command: list[list[quoting.Part]],
    plan: StagePlan,
    run_dir: Path,
    context: dict[str, Any],
    entry: Any,
    remote_job: bool,
    mode: Mode,
) -> list[list[quoting.Part]]:
    """A checkpointing stage's command: the resume wrapper, then the command. With the
    shared filesystem it knows this build's checkpoint by the .sub's time; a remote job
    exits 85 after a new one (HTCondor's self-checkpointing, see stage.sub.j2)."""
    where = f"stages.{plan.name}.checkpoint"
    checkpoint = plan.stage.checkpoint
    assert checkpoint is not None
    if plan.spec is not None:
        raise ConfigError(f"{where}: a stage with a checkpoint runs one job (no foreach)")
    for i, word in enumerate(checkpoint.resume):
        quoting.check_value(word, f"{where}.resume.{i}")
    when = (
        f"--exit-every={checkpoint.transfer_every}"
        if remote_job
        else f"--since={run_dir}/{plan.name}.sub"
    )
    words = [
        wrapper_python(command, mode),
        entry("resume"),
        f"--checkpoint={checkpoint_path(plan, context)}",
        when,
        *(f"--resume={word}" for word in checkpoint.resume),
        "--",
    ]
    wrapper: list[list[quoting.Part]] = [[word] for word in words]
    return wrapper + command


def checkpoint_path(plan: StagePlan, context: dict[str, Any]) -> str:
    """Where the stage's program writes its checkpoint (stages.NAME.checkpoint.file)."""
    assert plan.stage.checkpoint is not None
    where = f"stages.{plan.name}.checkpoint.file"
    path = render.render_text(plan.stage.checkpoint.file, context, where)
    if not Path(path).is_absolute():
        raise ConfigError(f"{where}: {path!r} is not an absolute path")
    return path


def braced(part: quoting.Part) -> str:
    """A command's part for the tasks wrapper: a field as `{field}`, literal braces doubled."""
    if isinstance(part, quoting.Macro):
        return f"{{{part.name}}}"
    return part.replace("{", "{{").replace("}", "}}")


def wrapper_python(command: list[list[quoting.Part]], mode: Mode) -> str:
    """The Python to run a wrapper with: the command's own (in its image, or here), else
    the image's python3, or this one for host commands."""
    first = command[0][0] if command and command[0] else ""
    if isinstance(first, str) and re.fullmatch(r"python[0-9.]*", Path(first).name):
        return first
    return sys.executable if mode.host_commands else "python3"
