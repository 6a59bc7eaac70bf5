"""Checks before a workflow is submitted: each finds one thing that would fail later.

`build` runs the cheap ones and stops at the first failure; `build --check` runs them
all, plus those that read images or ask the pool, and reports each on its own line.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aframe_dag import render, tokens
from aframe_dag.config import Config
from aframe_dag.containers import MODES
from aframe_dag.errors import ConfigError
from aframe_dag.resolve import template_context

# IGWN accounting tags: lower-case words joined by dots, e.g. ligo.dev.o4.cbc.allsky.aframe
ACCOUNTING_GROUP = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")
ACCOUNTING_USER = re.compile(r"[a-z0-9_][a-z0-9._-]*")
MAX_GPUS = 8  # the most GPUs any IGWN machine offers one job
SIF_MAGIC = b"SIF_MAGIC"


@dataclass
class Check:
    name: str
    ok: bool
    message: str
    warning: bool = False  # reported, but does not fail the check


def cheap(config: Config, run_dir: Path, env: Mapping[str, str]) -> Iterator[Check]:
    """Checks that cost nothing: run by every build."""
    yield from _accounting(config)
    yield from _scopes(config)
    yield from _gpus(config)
    yield from _wandb(config, env)
    yield from _first_inputs(config, run_dir)


def thorough(config: Config, run_dir: Path, env: Mapping[str, str]) -> Iterator[Check]:
    """Every check: `build --check`."""
    yield from cheap(config, run_dir, env)
    yield from _images(config)
    yield from _run_dir(run_dir)
    yield from _tokens(config)
    yield from _apptainer(config)
    yield from _pool_gpus(config)


def _scopes(config: Config) -> Iterator[Check]:
    try:
        tokens.check_scopes(config, list(config.stages))
    except ConfigError as exc:
        yield Check("tokens", False, str(exc))


def _tokens(config: Config) -> Iterator[Check]:
    """Which stages ask for which tokens (scopes), a line per set of them."""
    asking: dict[str, list[str]] = {}
    for stage in config.stages:
        described = ", ".join(t.describe() for t in tokens.stage_tokens(config, stage))
        if described:
            asking.setdefault(described, []).append(stage)
    for described, stages in asking.items():
        yield Check("tokens", True, f"{described}: {', '.join(stages)}")


def _accounting(config: Config) -> Iterator[Check]:
    condor = config.condor
    if MODES[condor.container].host_commands and not condor.accounting_group:
        return
    for key, value, pattern, example in (
        ("accounting_group", condor.accounting_group, ACCOUNTING_GROUP, "ligo.dev.o4.cbc.allsky"),
        ("accounting_group_user", condor.accounting_group_user, ACCOUNTING_USER, "albert.einstein"),
    ):
        key = f"condor.{key}"
        if value and not pattern.fullmatch(value):
            yield Check(key, False, f"{value!r} is not an accounting tag like {example}")
        elif value:
            yield Check(key, True, value)


def _gpus(config: Config) -> Iterator[Check]:
    for name, stage in config.stages.items():
        resources = [("resources", stage.resources)]
        if stage.service is not None:
            resources.append(("service.resources", stage.service.resources))
        for key, res in resources:
            where = f"stages.{name}.{key}"
            if res.gpus > MAX_GPUS:
                message = f"{res.gpus} GPUs: no machine offers more than {MAX_GPUS} to one job"
                yield Check(f"{where}.gpus", False, message)
    memory = config.remote.gpus_minimum_memory
    if config.remote.enabled and memory is not None and not 1024 <= memory <= 200_000:
        yield Check(
            "remote.gpus_minimum_memory", False, f"{memory} MB: GPUs have 1024 to 200000 MB"
        )


def _wandb(config: Config, env: Mapping[str, str]) -> Iterator[Check]:
    if not config.wandb.enabled:
        return
    key = env.get("WANDB_API_KEY", "")
    if env.get("WANDB_MODE") in ("offline", "disabled"):
        yield Check("WANDB_API_KEY", True, f"not needed: WANDB_MODE={env['WANDB_MODE']}")
        return
    if not key:
        yield Check(
            "WANDB_API_KEY", False,
            "not set, and --use-wandb needs it: export WANDB_API_KEY (it reaches the job "
            "by name), or export WANDB_MODE=offline",
        )  # fmt: skip
        return
    from wandb.sdk.lib.wbauth.validation import check_api_key  # 0.8 s: only when asked

    problem = check_api_key(key)
    yield Check("WANDB_API_KEY", problem is None, problem or "set, and in W&B's format")


def _first_inputs(config: Config, run_dir: Path) -> Iterator[Check]:
    """The declared inputs of stages that wait for nothing must be there already."""
    for name, stage in config.stages.items():
        if stage.after:
            continue
        context = template_context(config, run_dir, name)
        for i, template in enumerate(stage.inputs):
            where = f"stages.{name}.inputs.{i}"
            path = render.render_text(template, context, where)
            if "://" in path:
                continue
            exists = Path(path).exists()
            yield Check(where, exists, path if exists else f"{path} does not exist")


def _images(config: Config) -> Iterator[Check]:
    if MODES[config.condor.container].host_commands:
        return
    seen: set[str] = set()
    for name, stage in config.stages.items():
        images = {name: stage.image, f"{name} service": stage.service and stage.service.image}
        for owner, image in images.items():
            if image and "://" not in image and image not in seen:
                seen.add(image)
                yield Check(f"image of {owner}", *_image_state(Path(image)))


def _image_state(path: Path) -> tuple[bool, str]:
    if not os.access(path, os.R_OK):
        return False, f"{path} is not readable"
    if path.is_dir():  # an unpacked image, as on /cvmfs
        return True, f"{path} (directory)"
    with open(path, "rb") as handle:
        head = handle.read(256)
    if SIF_MAGIC not in head:
        return False, f"{path} is not a SIF image (no SIF magic in its header)"
    return True, str(path)


def _run_dir(run_dir: Path) -> Iterator[Check]:
    under_tmp = run_dir.resolve().is_relative_to("/tmp")
    message = (
        f"{run_dir} is under /tmp: DAGMan's strict mode refuses its node log there"
        if under_tmp
        else str(run_dir)
    )
    yield Check("run dir", not under_tmp, message)


def _apptainer(config: Config) -> Iterator[Check]:
    if not MODES[config.condor.container].apptainer_exec:
        return
    found = shutil.which(config.condor.apptainer) is not None
    message = (
        f"{config.condor.apptainer}"
        if found
        else f"{config.condor.apptainer} not found here: run-local needs it "
        "(pool jobs use the execute point's)"
    )
    yield Check("apptainer", found, message, warning=not found)


def _pool_gpus(config: Config) -> Iterator[Check]:
    """Ask the pool (if there is one to ask) whether any machine fits each GPU stage."""
    wanted = {n: s.resources.gpus for n, s in config.stages.items() if s.resources.gpus}
    if not wanted:
        return
    try:
        import htcondor2

        machines = htcondor2.Collector().query(
            htcondor2.AdTypes.Startd, projection=["Name", "TotalGPUs", "GPUs_GlobalMemoryMb"]
        )
    except Exception as exc:  # no collector here: nothing to learn, nothing wrong
        yield Check("pool GPUs", True, f"no pool to ask ({type(exc).__name__})", warning=True)
        return
    most = max((int(m.get("TotalGPUs", 0) or 0) for m in machines), default=0)
    for name, gpus in wanted.items():
        ok = gpus <= most
        message = f"{gpus} GPU(s); the pool's largest machine has {most}"
        yield Check(f"stages.{name}.resources.gpus", ok, message)
