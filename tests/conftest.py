"""Shared fixtures: a fake image dir, the LIGO accounting variables, a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from aframe_dag.cli import main

REPO = Path(__file__).parent.parent
SANDBOX = REPO / "configs" / "sandbox.yaml"
IMAGES = ("data.sif", "train.sif", "export.sif", "infer.sif", "plots.sif", "tritonserver.sif")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Empty stand-ins for the Aframe images (builds only check that they exist)."""
    images = tmp_path / "images"
    images.mkdir()
    for name in IMAGES:
        (images / name).touch()
    return images


@pytest.fixture
def ligo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The accounting variables a condor build needs, and no stray AFRAME_* dirs."""
    for name in list(os.environ):
        if name.startswith(("AFRAME_", "LIGO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LIGO_GROUP", "ligo.dev.o4.cbc.allsky.aframe")
    monkeypatch.setenv("LIGO_USERNAME", "albert.einstein")


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _pool_problem() -> str | None:
    if shutil.which("condor_submit_dag") is None:
        return "no HTCondor here (start one with scripts/personal-pool up, run tests inside it)"
    probe = subprocess.run(["condor_q", "-totals"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"condor_q fails: {probe.stderr.strip()[:200]}"
    if not os.environ.get("AFRAME_DAG_RUNS_DIR"):
        return "AFRAME_DAG_RUNS_DIR is not set (scripts/personal-pool run sets it)"
    return None


@pytest.fixture(scope="module")
def pool() -> None:
    """A running pool to submit to: the pool tests skip without one, unless CI requires it."""
    problem = _pool_problem()
    if problem and os.environ.get("AFRAME_DAG_REQUIRE_POOL"):
        pytest.fail(f"the pool tests must run here, but: {problem}")
    if problem:
        pytest.skip(problem)
