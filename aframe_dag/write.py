"""Atomic disk writes: whole run dirs and single files (temp file + rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from aframe_dag.errors import RunDirError

# DAGMan's own files: never written or deleted by us; their presence means a run
# that a rebuild could break.
DAGMAN_STATE = ("*.lock", "*.rescue[0-9][0-9][0-9]")


def write_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: readers see the old or the new file, whole."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            # mkstemp makes 0600 files; a run dir is read by colleagues and by the pool
            Path(tmp).chmod(0o666 & ~_umask())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def dagman_state(run_dir: Path) -> list[Path]:
    """Rescue and lock files that a live or resumable DAGMan run depends on."""
    return sorted(p for pattern in DAGMAN_STATE for p in run_dir.glob(pattern))


def write_run_dir(run_dir: Path, files: Mapping[str, str], dirs: Iterable[str]) -> None:
    """Write all files of a run dir; a new run dir appears whole or not at all."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    if run_dir.is_dir():
        found = dagman_state(run_dir)
        if found:
            raise RunDirError(
                f"{run_dir}: holds DAGMan state ({', '.join(p.name for p in found[:3])}); "
                "resubmit with condor_submit_dag to resume it, or build into a new run dir"
            )
        for name in dirs:
            _mkdir(run_dir / name)
        for name, text in files.items():
            write_file(run_dir / name, text)
        return
    _mkdir(run_dir.parent)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", dir=run_dir.parent))
    except OSError as exc:
        raise RunDirError(f"{run_dir.parent}: cannot write: {exc.strerror}") from None
    try:
        for name in dirs:
            _mkdir(staging / name)
        for name, text in files.items():
            write_file(staging / name, text)
        staging.chmod(0o777 & ~_umask())
        staging.rename(run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def make_dirs(paths: Iterable[str]) -> None:
    """Create directories that jobs write into (apptainer cannot bind a missing one)."""
    for path in paths:
        _mkdir(Path(path))


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create directory: {exc.strerror}") from None
