"""Resolving a config for a run dir: dirs and images as absolute paths, W&B settings from
WANDB_*, the --dev checkout; and the one template context every stage's templates see."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from aframe_dag import quoting, render, write
from aframe_dag.config import Config, Dev, LoadedConfig, Wandb
from aframe_dag.containers import MODES


def resolve(loaded: LoadedConfig, run_dir: Path, env: Mapping[str, str] | None = None) -> Config:
    """Render `dirs` to absolute paths and images to full paths, fill W&B from WANDB_* and
    find the --dev checkout (what config.yaml records)."""
    config = loaded.config
    env = os.environ if env is None else env
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
    images: dict[tuple[str, ...], str | None] = {}  # key: the full path
    for name, stage in config.stages.items():
        service = stage.service
        if service is not None:
            service_keys = ("stages", name, "service", "image")
            images[service_keys] = _image(loaded, service_keys, service.image, image_dir)
            service = replace(service, image=images[service_keys])
        keys = ("stages", name, "image")
        images[keys] = _image(loaded, keys, stage.image, image_dir)
        stages[name] = replace(stage, image=images[keys], service=service)
    _check_images(loaded, images)
    for section in ("wandb", "remote"):
        settings = getattr(config, section)
        for i, name in enumerate(settings.stages if settings.enabled else []):
            if name not in stages:
                raise loaded.error((section, "stages", i), f"no stage {name!r}")
    absolute_image_dir = str(write.absolute(image_dir)) if image_dir else None
    return replace(
        config,
        dirs=dirs,
        stages=stages,
        condor=replace(condor, image_dir=absolute_image_dir),
        wandb=_wandb(config, run_dir, env),
        dev=_dev(loaded, env),
    )


def _image(
    loaded: LoadedConfig, keys: tuple[str, ...], image: str | None, image_dir: str | None
) -> str | None:
    """An image as a full path (or URL), as written in host-command modes; an error naming
    the key if it is required and not set (`_check_images` looks for it)."""
    mode = loaded.config.condor.container
    if MODES[mode].host_commands:
        return image
    if not image:
        raise loaded.error(keys, f"required with container mode {mode!r}")
    if "://" in image:
        return image
    if not Path(image).is_absolute():
        if not image_dir:
            raise loaded.error(
                keys,
                f"{image!r} is relative but no image dir is set "
                "(--image-dir, condor.image_dir or AFRAME_CONTAINER_ROOT)",
            )
        image = str(Path(image_dir, image))
    return str(write.absolute(quoting.check_value(image, ".".join(keys))))


def _check_images(loaded: LoadedConfig, images: dict[tuple[str, ...], str | None]) -> None:
    """Every image is there: a .sif file, or an unpacked image dir (as on
    /cvmfs/singularity.opensciencegrid.org). All that are not are named in one error."""
    if MODES[loaded.config.condor.container].host_commands:
        return  # no image runs
    missing: dict[str, list[tuple[str, ...]]] = {}  # path: the keys naming it
    for keys, image in images.items():
        if image and "://" not in image and not Path(image).exists():
            missing.setdefault(image, []).append(keys)
    if not missing:
        return
    (first, first_keys), *others = missing.items()
    also = [f"{path} ({'.'.join(named[0])})" for path, named in others]
    more = f"; also missing: {', '.join(also)}" if also else ""
    raise loaded.error(first_keys[0], f"no such image: {first}{more}")


WANDB_ENV = {
    "name": "WANDB_NAME",
    "entity": "WANDB_ENTITY",
    "project": "WANDB_PROJECT",
    "group": "WANDB_RUN_GROUP",
}


def _wandb(config: Config, run_dir: Path, env: Mapping[str, str]) -> Wandb:
    """W&B settings with WANDB_* filling what the config leaves unset."""
    wandb = config.wandb
    if not wandb.enabled:
        return wandb
    values = {k: getattr(wandb, k) or env.get(v) or None for k, v in WANDB_ENV.items()}
    values["project"] = values["project"] or "aframe"
    values["group"] = values["group"] or f"{config.name}-{run_dir.name}"
    tags = wandb.tags or [t.strip() for t in env.get("WANDB_TAGS", "").split(",") if t.strip()]
    return replace(
        wandb,
        tags=tags,
        name=values["name"],
        entity=values["entity"],
        project=values["project"],
        group=values["group"],
    )


def _dev(loaded: LoadedConfig, env: Mapping[str, str]) -> Dev:
    """The --dev checkout as an absolute path, checked to be an aframe checkout."""
    dev = loaded.config.dev
    if not dev.enabled:
        return dev
    mode = loaded.config.condor.container
    if MODES[mode].refuses_dev:
        raise loaded.error(
            ("dev", "enabled"),
            f"--dev binds a checkout into apptainer images; container mode {mode!r} "
            + MODES[mode].refuses_dev,
        )
    where = "dev.path"
    path = dev.path or env.get("AFRAME_REPO") or None
    if path is None:
        where = "the working directory's git checkout"
        path = _git_toplevel(Path.cwd())
        if path is None:
            raise loaded.error(
                ("dev", "path"),
                "not set and the working directory is in no git checkout: "
                "pass --dev-path PATH (an aframe checkout)",
            )
    checkout = Path(path).absolute()
    if not is_aframe_checkout(checkout):
        raise loaded.error(
            ("dev", "path"),
            f"{checkout} ({where}) is not an aframe checkout "
            "(no pyproject.toml naming aframe beside projects/)",
        )
    return replace(dev, path=str(checkout))


def is_aframe_checkout(path: Path) -> bool:
    """An aframe repo: pyproject.toml whose project is aframe, and its projects/ dir."""
    pyproject = path / "pyproject.toml"
    if not (pyproject.is_file() and (path / "projects").is_dir()):
        return False
    text = pyproject.read_text(encoding="utf-8", errors="replace")
    return re.search(r'^name\s*=\s*"aframe"', text, re.MULTILINE) is not None


def _git_toplevel(start: Path) -> str | None:
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return str(directory)
    return None


def template_context(config: Config, run_dir: Path, stage: str) -> dict[str, Any]:
    """What a stage's templates see: params, dirs, run_dir, python, stage (and item)."""
    return {
        "params": config.stage_params(stage),
        "dirs": config.dirs,
        "run_dir": str(run_dir),
        # the interpreter running the build: host-mode commands can run with it
        "python": sys.executable,
        "stage": {"name": stage, "resources": config.stages[stage].resources},
    }
