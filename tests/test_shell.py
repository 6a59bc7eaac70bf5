"""Shell completion, as bash asks for it: commands, options, bundled configs, stage names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from aframe_dag.config import bundled_configs


def complete(words: str, cwd: Path = REPO) -> list[str]:
    """What bash's completion gets for the last word of `words` (bash_complete: TYPE,VALUE
    a line)."""
    parts = words.split(" ")
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1),
           "_AFRAME_DAG_COMPLETE": "bash_complete"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from aframe_dag.cli import main; sys.exit(main())"],
        capture_output=True, text=True, check=False, env=env, cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("aframe-dag st", ["plain,status"]),
        ("aframe-dag build --ta", ["plain,--target"]),
        ("aframe-dag run-local x --ta", ["plain,--target"]),
        ("aframe-dag build sa", ["plain,sandbox", "file,sa"]),
        ("aframe-dag validate b", ["plain,bns", "file,b"]),
        ("aframe-dag build sandbox --target tr", ["plain,train"]),
        ("aframe-dag build sandbox --run-dir x --rerun inf", ["plain,infer"]),
        ("aframe-dag build configs/bns.yaml --explain export", ["plain,export"]),
        ("aframe-dag build nosuch.yaml --target x", []),  # nothing to read: no names
    ],
)
def test_completes(words: str, expected: list[str]) -> None:
    assert complete(words) == expected


def test_every_bundled_config_is_offered() -> None:
    names = sorted(p.stem for p in bundled_configs().glob("*.yaml"))
    assert complete("aframe-dag build ") == [*(f"plain,{n}" for n in names), "file,"]


def test_stage_names_come_from_the_run_dir_on_the_line(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(
        "name: p\ncondor: {container: none}\n"
        "stages:\n  fetch: {command: 'true'}\n  filter: {command: 'true', after: [fetch]}\n"
    )
    run = tmp_path / "run"
    assert run_cli("build", str(config), "--run-dir", str(run))[0] == 0
    assert complete(f"aframe-dag run-local {run} --target f") == ["plain,fetch", "plain,filter"]
    assert complete(f"aframe-dag clean {run} fi") == ["plain,filter"]
    assert complete(f"aframe-dag clean {tmp_path} fi") == []  # not a run dir


def test_the_readme_line_enables_it_in_bash(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    line = next(x for x in readme.splitlines() if x.startswith('eval "$(_AFRAME_DAG_COMPLETE='))
    bin_dir = Path(sys.executable).parent  # where the console script is installed
    done = subprocess.run(
        ["bash", "-c", f"{line} && complete -p aframe-dag"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("-F _aframe_dag_completion aframe-dag")
