"""Shared fixtures: a fake image dir, the LIGO accounting variables, a CLI runner."""

from __future__ import annotations

import os
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
