"""The container modes' table: each row is what the sandbox's .sub files say in that mode."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import htcondor2
import pytest
from conftest import SANDBOX, run_cli

from aframe_dag import quoting
from aframe_dag.config import ContainerMode
from aframe_dag.containers import MODES

NAMES = typing.get_args(ContainerMode)


def build(run_dir: Path, mode: str, *args: str) -> tuple[int, str, str]:
    return run_cli("build", str(SANDBOX), "--run-dir", str(run_dir), "--container", mode, *args)


def test_the_table_has_a_row_for_each_container_mode() -> None:
    assert list(MODES) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_service_job_runs_as_its_mode_says(
    tmp_path: Path, image_dir: Path, ligo_env: None, name: str
) -> None:
    """infer's Triton service: an image, a GPU and an entry script (its wrapper)."""
    mode = MODES[name]
    run_dir = tmp_path / "run"
    code, _, err = build(run_dir, name, "--image-dir", str(image_dir))
    assert code == 0, err
    sub = htcondor2.Submit((run_dir / "infer-service.sub").read_text())
    argv = quoting.split_arguments(sub["arguments"])
    image = str(image_dir / "tritonserver.sif")
    assert sub["universe"] == mode.universe
    assert sub.get("container_image") == (image if mode.condor_starts_image else None)
    assert sub["executable"] == ("/usr/bin/apptainer" if mode.apptainer_exec else "/usr/bin/env")
    assert (argv[:2] == ["exec", "--nv"]) == mode.apptainer_exec
    assert (image in argv) == mode.apptainer_exec
    program = argv[argv.index(image) + 1 :] if mode.apptainer_exec else argv
    assert program[0] == (sys.executable if mode.host_commands else "python3")
    script = f"{run_dir}/entry/service.py"
    assert program[1] == ("service.py" if mode.sends_entry_scripts else script)
    assert sub.get("transfer_input_files") == (script if mode.sends_entry_scripts else None)


@pytest.mark.parametrize("name", NAMES)
def test_only_host_commands_build_without_images(tmp_path: Path, ligo_env: None, name: str) -> None:
    code, _, err = build(tmp_path / "run", name)
    assert code == (0 if MODES[name].host_commands else 1), err
    assert ("is relative but no image dir is set" in err) == (not MODES[name].host_commands)


@pytest.mark.parametrize("name", NAMES)
def test_dev_binds_a_checkout_unless_the_mode_refuses(
    tmp_path: Path, image_dir: Path, ligo_env: None, name: str
) -> None:
    checkout = tmp_path / "aframe"
    (checkout / "projects").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text('[project]\nname = "aframe"\n')
    run_dir = tmp_path / "run"
    code, _, err = build(run_dir, name, "--image-dir", str(image_dir), "--dev-path", str(checkout))
    reason = MODES[name].refuses_dev
    if reason:
        assert code == 1
        assert err.endswith(
            f"--dev binds a checkout into apptainer images; container mode {name!r} {reason}\n"
        )
    else:
        assert code == 0, err
        sub = htcondor2.Submit((run_dir / "infer-service.sub").read_text())
        assert f"{checkout}:/opt/aframe" in quoting.split_arguments(sub["arguments"])
