"""GPU out-of-memory: the job is held and released to a bigger GPU (DAGMan), reported
plainly by run-local."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import classad2
import htcondor2
import pytest
import yaml
from conftest import run_cli

OOM = Path(__file__).parent.parent / "aframe_dag" / "entry" / "oom.py"
CUDA_OOM = (
    "import sys; print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
    "2.00 GiB', file=sys.stderr); sys.exit(1)"
)


@pytest.mark.parametrize(
    ("program", "code"),
    [
        (CUDA_OOM, 86),  # out of GPU memory: the code the .sub holds the job on
        ("import sys; print('ValueError: bad input', file=sys.stderr); sys.exit(1)", 1),
        ("import sys; sys.exit(86)", 1),  # the program's own 86 is not our verdict
        ("print('ok')", 0),
    ],
)
def test_the_wrapper_turns_only_an_out_of_memory_death_into_86(program: str, code: int) -> None:
    done = subprocess.run(
        [sys.executable, str(OOM), "--", sys.executable, "-c", program],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == code
    if program == CUDA_OOM:
        assert "CUDA out of memory. Tried to allocate" in done.stderr  # passed through


def gpu_stage(tmp_path: Path, program: str, retry: int = 0) -> Path:
    config = tmp_path / "gpu.yaml"
    stage = {
        "command": [sys.executable, "-c", program],
        "retry": retry,
        "resources": {"gpus": 1, "gpu_memory": "16GB", "max_gpu_memory": "80GB"},
    }
    config.write_text(
        yaml.safe_dump(
            {
                "name": "gpu",
                "condor": {"container": "none", "use_oauth_services": "", "getenv": ["PATH"]},
                "stages": {"train": stage},
            }
        )
    )
    run_dir = tmp_path / "run"
    code, _, err = run_cli("build", str(config), "--run-dir", str(run_dir))
    assert code == 0, err
    return run_dir


def test_the_submit_file_asks_for_twice_the_gpu_memory_after_each_oom(tmp_path: Path) -> None:
    run_dir = gpu_stage(tmp_path, "print('ok')")
    sub = htcondor2.Submit((run_dir / "train.sub").read_text())
    assert sub["on_exit_hold"] == "ExitCode =?= 86"
    require = classad2.ExprTree(sub["require_gpus"])
    release = classad2.ExprTree(sub["periodic_release"])

    def fits(memory_mb: int, starts: int) -> bool:
        return bool(
            require.eval(classad2.ClassAd({"GlobalMemoryMb": memory_mb, "NumJobStarts": starts}))
        )

    def released(starts: int, subcode: int = 86) -> bool:
        held = {"JobStatus": 5, "HoldReasonCode": 3, "HoldReasonSubCode": subcode}
        return bool(release.eval(classad2.ClassAd({**held, "NumJobStarts": starts})))

    # first run: a 16 GB GPU will do; after one OOM 32 GB, after two 64 GB, then 80 GB
    assert [fits(16384, n) for n in range(4)] == [True, False, False, False]
    assert [fits(32768, n) for n in range(4)] == [True, True, False, False]
    assert [fits(65536, n) for n in range(4)] == [True, True, True, False]
    assert [fits(81920, n) for n in range(4)] == [True, True, True, True]
    # released after the 1st and 2nd OOM; after the 3rd (on 64 GB) the next doubling
    # passes 80 GB: it stays held, and remove_held_after removes it (the node fails)
    assert [released(n) for n in (1, 2, 3)] == [True, True, False]
    assert not released(1, subcode=0)  # held for another reason: not ours to release


def test_max_gpu_memory_needs_a_gpu_memory_to_start_from(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "condor": {"container": "none", "use_oauth_services": ""},
                "stages": {
                    "t": {"command": "true", "resources": {"gpus": 1, "max_gpu_memory": "8GB"}}
                },
            }
        )
    )
    code, _, err = run_cli("build", str(config), "--run-dir", str(tmp_path / "run"))
    assert code == 1
    assert err.strip() == (
        "Error: stages.t.resources.max_gpu_memory: needs gpu_memory, the GPU memory to start at"
    )


def test_run_local_reports_an_out_of_memory_death_and_does_not_retry_it(tmp_path: Path) -> None:
    run_dir = gpu_stage(tmp_path, CUDA_OOM, retry=2)
    done = subprocess.run(
        [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), "--gpus", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert (
        "failed aframe.dag:train: out of GPU memory: to be retried on a GPU with more (GPU 0); "
        "HTCondor would retry it on a GPU with more memory, run-local cannot" in output
    )
    assert "retry aframe.dag:train" not in output  # the same GPU would fail the same way
