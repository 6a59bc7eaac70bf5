"""The built wheel ships exactly the package, its templates, bundled configs and entry
scripts, and its type information."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_wheel_contains_templates_configs_and_entry_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("aframe_dag-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "templates").iterdir():
        assert f"aframe_dag/templates/{template.name}" in names
    for config in (REPO / "configs").glob("*.yaml"):
        assert f"aframe_dag/configs/{config.name}" in names
    for script in ("merge_training_waveforms", "aggregate_inference"):
        assert f"aframe_dag/entry/{script}.py" in names
    # nothing more, nothing less: every tracked file of the package (py.typed too)
    tracked = subprocess.run(
        ["git", "ls-files", "aframe_dag", "templates", "configs"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    expected = {
        name if name.startswith("aframe_dag/") else f"aframe_dag/{name}" for name in tracked
    }
    assert "aframe_dag/py.typed" in expected
    assert {n for n in names if ".dist-info/" not in n} == expected
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "aframe-dag = aframe_dag.cli:main" in text
