"""How a run was made, and the pictures it made: what `report` shows beside its figures.

From the run dir's own files: the build's record of itself (command line, directory,
host, Python, aframe-dag version) in its fingerprints file, the resolved config (the
images each stage runs, the --dev checkout, the `outputs` of each stage), DAGMan's
.dagman.out (its HTCondor version). Files are hashed once per size and mtime
(RUN/.aframe-dag/image-hashes.json): an image of GBs is read again only when it changes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import platform
import re
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aframe_dag import rundir, write
from aframe_dag.errors import RunDirError

PICTURES = (".png", ".svg")


@dataclass
class Picture:
    """A file of the run: a picture a stage declares in `outputs`, or an image it runs."""

    stage: str
    path: str
    size: int | None = None  # None: not there
    mtime: float | None = None
    sha256: str | None = None  # None for a directory (an unpacked image) or no file


class Hashes:
    """sha256 of files, kept in RUN/.aframe-dag/image-hashes.json by path, size and mtime:
    a large image is hashed once, until it changes."""

    def __init__(self, run_path: Path):
        self.path = run_path / rundir.IMAGE_HASHES
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self.known: dict[str, list[Any]] = data if isinstance(data, dict) else {}
        self.changed = False

    def picture(self, stage: str, path: Path) -> Picture:
        """The file's size, mtime and sha256 (hashed if not known at this size and mtime)."""
        try:
            stat = path.stat()
        except OSError:
            return Picture(stage, str(path))
        if not path.is_file():
            return Picture(stage, str(path), stat.st_size, stat.st_mtime)
        known = self.known.get(str(path))
        if not (isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime]):
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
            except OSError as exc:
                raise RunDirError(f"{path}: cannot read: {exc.strerror}") from None
            known = self.known[str(path)] = [stat.st_size, stat.st_mtime, digest.hexdigest()]
            self.changed = True
        return Picture(stage, str(path), stat.st_size, stat.st_mtime, str(known[2]))

    def save(self) -> None:
        if self.changed:
            with contextlib.suppress(RunDirError):  # a run dir this user cannot write
                write.write_file(self.path, json.dumps(self.known, indent=1) + "\n")


def pictures(run_path: Path, config: Any, where: Any, hashes: Hashes) -> list[Picture]:
    """The PNG and SVG files each stage declares in `outputs` (a fan-out's: every file its
    templates match), in stage order."""
    from aframe_dag import judge, quoting, workflow

    found = []
    for name, stage in config.stages.items():
        if not any(ext in template.lower() for template in stage.outputs for ext in PICTURES):
            continue
        plan = workflow.plan_stage(config, run_path, name, where, expand_now=False)
        for parts in judge.output_paths(config, run_path, plan):
            pattern = "".join(
                "*" if isinstance(part, quoting.Macro) else glob.escape(part) for part in parts
            )
            if pattern.lower().endswith(PICTURES):
                found += [hashes.picture(name, Path(p)) for p in sorted(glob.glob(pattern))]  # noqa: PTH207 (absolute)
    return found


def provenance(
    run_dir: Path, submit_hosts: list[str], config: Any, hashes: Hashes
) -> dict[str, Any]:
    """How the run was made: versions, command line, images, the --dev checkout, hosts."""
    from aframe_dag import __version__, completion

    build = completion.build_record(run_dir)
    images = {}
    for name, stage in config.stages.items():
        for image in (stage.image, stage.service.image if stage.service else None):
            if image and image not in images:
                images[image] = hashes.picture(name, Path(image))
    dev = None
    if config.dev.enabled and config.dev.path:
        dev = {"path": config.dev.path, **_git(Path(config.dev.path))}
    return {
        "aframe_dag": __version__,
        "built_with": build.get("aframe_dag"),
        "command": shlex.join(build["command"]) if build.get("command") else None,
        "cwd": build.get("cwd"),
        "build_host": build.get("host"),
        "build_python": build.get("python"),
        "python": platform.python_version(),
        "htcondor": rundir.dagman_version(run_dir / f"{rundir.DAG}.dagman.out"),
        "htcondor_bindings": _bindings(),
        "submit_hosts": submit_hosts,
        "images": [asdict(p) for p in images.values()],
        "dev": dev,
        "config": str(run_dir / rundir.CONFIG),
    }


def _git(path: Path) -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it, now."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        changes = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(changes.stdout.strip())}


def _bindings() -> str | None:
    import htcondor2

    words = htcondor2.version().split()
    return words[1] if len(words) > 1 else None


def host(sinful: str) -> str:
    """A schedd's address as its host's name: alias=NAME of <IP:PORT?...>, else IP:PORT."""
    alias = re.search(r"[?&]alias=([^&>]+)", sinful)
    address = sinful.strip("<>").split("?")[0]
    return f"{alias[1]} ({address})" if alias else address
