"""Atomic disk writes: whole run dirs and single files (temp file + rename)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from aframe_dag import rundir
from aframe_dag.errors import RunDirError
from aframe_dag.rundir import BUILD_LOCK, RECORD

# DAGMan's own files: never written or deleted by us; their presence means a run
# that a rebuild could break.
DAGMAN_STATE = ("*.dag.lock", "*.rescue[0-9][0-9][0-9]")
# What a run leaves behind (DAGMan's by-products of each .dag, our status and local
# records): moved aside together by `build --force`, so no old record is read as new.
RUN_RECORDS = ("*.dag.*", "*.jobstate.log", "*.status", RECORD, rundir.tasks_record("*"))
BUILDING = "another aframe-dag build is writing it"


def write_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: readers see the old or the new file, whole."""
    _rename(_stage(path, text), path)


def _stage(path: Path, text: str) -> Path:
    """Write `text` to a new temporary file beside `path` (same filesystem); return it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # .NAME-XXXX.tmp: no pattern of RUN_RECORDS (`*.dag.*`) takes it for a record
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            # mkstemp makes 0600 files; a run dir is read by colleagues and by the pool
            Path(tmp).chmod(0o666 & ~_umask())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write: {exc.strerror or exc}") from None
    return Path(tmp)


def _rename(tmp: Path, path: Path) -> None:
    try:
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunDirError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def dagman_state(run_dir: Path) -> list[Path]:
    """Rescue and lock files that a live or resumable DAGMan run depends on."""
    return sorted(p for pattern in DAGMAN_STATE for p in run_dir.glob(pattern))


@contextlib.contextmanager
def build_lock(run_dir: Path) -> Iterator[None]:
    """One build at a time on a run dir: another is refused at once, never mixed in.

    A run dir that does not exist is made first, to hold the lock, and removed again if
    the build fails.
    """
    try:
        run_dir.mkdir(parents=True)
        made = True
    except FileExistsError:
        made = False
    except OSError as exc:
        raise RunDirError(f"{run_dir}: cannot create directory: {exc.strerror}") from None
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    path = run_dir / BUILD_LOCK
    _mkdir(path.parent)
    try:
        # read-only is enough for flock, and works on a read-only disk (the writes say why)
        handle = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(f"{run_dir}: {BUILDING}; try again when it is done") from None
        try:
            yield
        except BaseException:
            if made:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    finally:
        os.close(handle)


def build_running(run_dir: Path) -> bool:
    """Whether a build holds the run dir's lock now."""
    try:
        handle = os.open(run_dir / BUILD_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def write_run_dir(
    run_dir: Path,
    files: Mapping[str, str],
    dirs: Iterable[str],
    force: bool = False,
    stale: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """Write all files of a run dir (it exists: `build_lock` made it), all or none.

    Every file is written beside its place first, and only once all are written are they
    renamed into place: a full or read-only disk leaves the run dir as it was. The files
    of `stale` stages (built last time, not now) are moved aside, and with `force` the
    last run's records too. Returns what was moved aside (paths in the run dir), the
    records and the stale stages' files, to say so.
    """
    found = dagman_state(run_dir)
    if found and not force:
        names = ", ".join(p.name for p in found[:3]) + (" ..." if len(found) > 3 else "")
        raise RunDirError(
            f"{run_dir}: holds DAGMan state ({names}); to resume, run "
            f"condor_submit_dag {run_dir}/aframe.dag (it picks the rescue DAG up); "
            "to start over, build with --force (moves DAGMan's files aside)"
        )
    staged: list[tuple[Path, Path]] = []
    try:
        for name, text in files.items():
            staged.append((_stage(run_dir / name, text), run_dir / name))
        for name in dirs:
            _mkdir(run_dir / name)
        records = run_records(run_dir) if force else []
        stages = [p for p in stage_files(run_dir, stale) if p not in records]
        moved = move_aside(run_dir, [*records, *stages])
        for tmp, path in staged:
            _rename(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)  # those renamed are gone already
        raise
    return moved[: len(records)], moved[len(records) :]


def run_records(run_dir: Path) -> list[Path]:
    """The last run's records (DAGMan's files included)."""
    return sorted({p for pattern in RUN_RECORDS for p in run_dir.glob(pattern) if p.is_file()})


def stage_files(run_dir: Path, stages: Iterable[str]) -> list[Path]:
    """A stage's files in the run dir (STAGE.*, STAGE-service.*) and its logs."""
    names = [n for stage in stages for n in (stage, f"{stage}-service")]
    if not names:
        return []
    prefixes = tuple(f"{n}." for n in names)
    paths = [p for p in run_dir.iterdir() if p.is_file() and p.name.startswith(prefixes)]
    logs = [run_dir / "logs" / n for n in names if (run_dir / "logs" / n).is_dir()]
    return sorted(paths) + logs


def move_aside(run_dir: Path, paths: list[Path]) -> list[str]:
    """Move files and dirs of the run dir into RUN/previous-N/, at the same relative paths
    (in the order given)."""
    if not paths:
        return []
    number = 1
    while (run_dir / f"previous-{number}").exists():
        number += 1
    target = run_dir / f"previous-{number}"
    _mkdir(target)
    moved = []
    try:
        for path in paths:
            relative = path.relative_to(run_dir)
            _mkdir((target / relative).parent)
            path.rename(target / relative)
            moved.append(f"{target.name}/{relative}")
    except OSError as exc:
        raise RunDirError(f"{run_dir}: cannot move {path.name} aside: {exc.strerror}") from None
    return moved


def absolute(path: str | Path) -> Path:
    """`path` absolute and normalised as a shell's cd does (a/b/../c is a/c); symlinks are
    not resolved, so the path stays the one the user wrote."""
    return Path(os.path.normpath(Path(path).absolute()))


def check_dirs(paths: Iterable[str]) -> None:
    """Refuse directories that `make_dirs` could not create (a file in the way, a parent
    this user cannot write), before anything is written."""
    for path in paths:
        existing = Path(path)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise RunDirError(f"{path}: cannot create directory: {existing} is not a directory")
        if existing != Path(path) and not os.access(existing, os.W_OK | os.X_OK):
            raise RunDirError(f"{path}: cannot create directory: {existing} is not writable")


def make_dirs(paths: Iterable[str]) -> None:
    """Create directories that jobs write into (apptainer cannot bind a missing one)."""
    for path in paths:
        _mkdir(Path(path))


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create directory: {exc.strerror}") from None
