"""A checkpointing stage resumes where its killed or evicted job left off, to the same
bytes as a run never stopped; a checkpoint of an earlier build is never resumed from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_cli

DEMO = REPO / "configs" / "demo.yaml"


def build(run_dir: Path, *args: str) -> None:
    code, _, err = run_cli(
        "build", str(DEMO), "--run-dir", str(run_dir), "--target", "train", *args
    )
    assert code == 0, err


def run_local(run_dir: Path) -> subprocess.Popen[bytes]:
    """run-local in the background, its output in RUN_DIR.out beside the run dir."""
    with run_dir.with_suffix(".out").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "aframe_dag", "run-local", str(run_dir), "--gpus", "0"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def said(run_dir: Path) -> str:
    return run_dir.with_suffix(".out").read_text()


def training_pids(run_dir: Path) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"aframe_dag.demo.train .*{run_dir}/"], capture_output=True, text=True
    )
    return [int(pid) for pid in found.stdout.split()]


def test_run_local_killed_mid_training_resumes_from_the_last_epoch(tmp_path: Path) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    build(whole)
    done = run_local(whole)
    assert done.wait(timeout=300) == 0, said(whole)
    build(killed, "--set", "params.epoch_seconds=1")
    runner = run_local(killed)
    out = killed / "logs/train/train.out"
    deadline = time.monotonic() + 240
    while "epoch 3 done" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline and runner.poll() is None, "training never got going"
        time.sleep(0.2)
    runner.kill()  # the machine dies: the runner and the training with it
    runner.wait()
    for pid in training_pids(killed):
        os.kill(pid, signal.SIGKILL)
    before = out.read_text()
    assert "epoch 3 done" in before and "epoch 10 done" not in before
    again = run_local(killed)
    assert again.wait(timeout=300) == 0, said(killed)
    resumed = out.read_text()
    assert f"resumed from {killed}/training/last.ckpt at step" in resumed, resumed
    step = int(resumed.split(" at step ")[1].split()[0])
    assert step >= 120  # at least three epochs of 40 steps were kept
    assert "epoch 1 done" not in resumed  # it went on from there, not from epoch 0
    assert "epoch 10 done" in resumed
    for name in ("model.npz", "last.ckpt"):  # the same bytes as a run never stopped
        assert (killed / "training" / name).read_bytes() == (whole / "training" / name).read_bytes()


def test_a_checkpoint_of_an_earlier_build_is_moved_aside_not_resumed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    build(run_dir)
    done = run_local(run_dir)
    assert done.wait(timeout=300) == 0, said(run_dir)
    first = (run_dir / "training/model.npz").read_bytes()
    build(run_dir, "--set", "params.seed=7")  # changed: train runs again, from scratch
    done = run_local(run_dir)
    assert done.wait(timeout=300) == 0, said(run_dir)
    out = (run_dir / "logs/train/train.out").read_text()
    assert "resumed" not in out and "epoch 1 done" in out
    assert (run_dir / "training/last.ckpt.stale").exists()
    assert (run_dir / "training/model.npz").read_bytes() != first


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "stages.train.checkpoint.file=last.ckpt",
            "checkpoint.file: 'last.ckpt' is not an absolute path",
        ),
        ("stages.train.checkpoint.resume=[]", "must have at least 1 item"),
    ],
)
def test_checkpoint_mistakes_are_one_line_errors(
    tmp_path: Path, setting: str, message: str
) -> None:
    code, _, err = run_cli("build", str(DEMO), "--run-dir", str(tmp_path / "run"), "--set", setting)
    assert code == 1 and err.count("\n") == 1 and message in err, err


RESUME = REPO / "aframe_dag" / "entry" / "resume.py"
# a program that writes its checkpoint (the step) each 0.5 s up to step UNTIL; given the
# word "resume" (the stage's resume word), it goes on from the step its checkpoint holds
STEPPER = """
import os, pathlib, sys, time
path = pathlib.Path(sys.argv[1])
step = int(path.read_text()) if sys.argv[2:] == ["resume"] else 0
while step < int(os.environ.get("UNTIL", 10**6)):
    time.sleep(0.5)
    step += 1
    path.write_text(str(step))
print("finished at", step)
"""


def stepper(tmp_path: Path, *options: str) -> list[str]:
    program = tmp_path / "stepper.py"
    program.write_text(STEPPER)
    checkpoint = tmp_path / "ckpt"
    return [
        sys.executable, str(RESUME), f"--checkpoint={checkpoint}", *options,
        "--resume=resume", "--", sys.executable, str(program), str(checkpoint),
    ]  # fmt: skip


def test_remote_wrapper_exits_85_once_a_new_checkpoint_is_written(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        stepper(tmp_path, "--exit-every=1"), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 85, done.stderr  # the .sub's checkpoint_exit_code
    assert time.monotonic() - started >= 1  # not before --exit-every seconds
    assert "written: stopping, for HTCondor to take it" in done.stderr
    assert "resuming" not in done.stderr  # there was no checkpoint at its start
    assert int((tmp_path / "ckpt").read_text()) >= 1


def test_remote_wrapper_resumes_and_passes_the_programs_own_exit_on(tmp_path: Path) -> None:
    (tmp_path / "ckpt").write_text("4")  # HTCondor sent the job's checkpoint back
    done = subprocess.run(
        stepper(tmp_path, "--exit-every=3600"), capture_output=True, text=True, timeout=30,
        env={**os.environ, "UNTIL": "6"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"resuming from {tmp_path / 'ckpt'}" in done.stderr
    assert done.stdout == "finished at 6\n"  # from 4, with the --resume word added


def test_remote_wrapper_gives_an_eviction_signal_to_the_program(tmp_path: Path) -> None:
    wrapper = subprocess.Popen(stepper(tmp_path, "--exit-every=3600"), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (tmp_path / "ckpt").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    wrapper.send_signal(signal.SIGTERM)  # HTCondor's eviction
    assert wrapper.wait(timeout=20) == 128 + signal.SIGTERM
    assert subprocess.run(["pgrep", "-f", str(tmp_path / "stepper.py")]).returncode != 0


def test_a_remote_checkpointing_stage_self_checkpoints(tmp_path: Path) -> None:
    import htcondor2

    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        "build", str(DEMO), "--run-dir", str(run_dir), "--train-remote",
        "--set", "stages.train.checkpoint.transfer_every=600",
    )  # fmt: skip
    assert code == 0, err
    text = (run_dir / "train.sub").read_text()
    seen = f"{str(run_dir).lstrip('/')}/training/last.ckpt"  # in the scratch dir
    submit = htcondor2.Submit(text)
    assert submit["checkpoint_exit_code"] == "85"
    assert submit["transfer_checkpoint_files"] == seen
    assert submit["when_to_transfer_output"] == "ON_EXIT"
    assert f"--checkpoint={seen} \\\n    --exit-every=600 \\\n" in text
    assert "--since" not in text
    assert f"{str(run_dir).lstrip('/')}/entry/resume.py" in submit["transfer_input_files"]


def test_a_remote_checkpoint_outside_the_jobs_outputs_is_an_error(tmp_path: Path) -> None:
    code, _, err = run_cli(
        "build", str(DEMO), "--run-dir", str(tmp_path / "run"), "--train-remote",
        "--set", "stages.train.checkpoint.file=/var/ckpt/last.ckpt",
    )  # fmt: skip
    assert code == 1 and err.count("\n") == 1, err
    assert "stages.train.checkpoint.file: /var/ckpt/last.ckpt is not in the job's scratch" in err


def test_run_local_remote_training_killed_resumes_from_the_kept_checkpoint(
    tmp_path: Path,
) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    build(whole)
    done = run_local(whole)
    assert done.wait(timeout=300) == 0, said(whole)
    # without the shared filesystem: each new checkpoint goes to run-local's spool
    build(killed, "--train-remote", "--set", "params.epoch_seconds=1",
          "--set", "stages.train.checkpoint.transfer_every=0")  # fmt: skip
    runner = run_local(killed)
    deadline = time.monotonic() + 240
    while said(killed).count("checkpoint aframe.dag:train: kept") < 3:
        assert time.monotonic() < deadline and runner.poll() is None, said(killed)
        time.sleep(0.2)
    runner.kill()
    runner.wait()
    for pid in training_pids(killed):
        os.kill(pid, signal.SIGKILL)
    again = run_local(killed)
    assert again.wait(timeout=300) == 0, said(killed)
    out = (killed / "logs/train/train.out").read_text()
    seen = f"{str(killed).lstrip('/')}/training/last.ckpt"
    resumed = [int(line.split(" at step ")[1].split()[0]) for line in out.splitlines()
               if line.startswith(f"resumed from {seen} at step")]  # fmt: skip
    assert resumed and resumed[0] >= 120, out  # the first run after the kill: epoch 3 on
    assert "epoch 1 done" not in out and "epoch 10 done" in out
    for name in ("model.npz", "last.ckpt"):
        assert (killed / "training" / name).read_bytes() == (whole / "training" / name).read_bytes()
    assert not (killed / ".aframe-dag/scratch/train.checkpoint").exists()  # left the queue


PRINT_RUN = [
    sys.executable, "-c", "import os; print(os.environ['WANDB_RUN_ID'], os.environ['WANDB_RESUME'])"
]  # fmt: skip


def wandb_run(*options: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(RESUME), *options, "--resume=x", "--", *PRINT_RUN],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, check=True,
    )  # fmt: skip
    return done.stdout


def test_a_resumed_job_keeps_its_wandb_run_and_a_new_build_gets_a_new_one(
    tmp_path: Path,
) -> None:
    sub, checkpoint = tmp_path / "train.sub", tmp_path / "last.ckpt"
    sub.write_text("built\n")
    options = (f"--checkpoint={checkpoint}", f"--since={sub}")
    first = wandb_run(*options)
    checkpoint.write_text("epoch 3")  # evicted after writing it: the same run goes on
    assert wandb_run(*options) == first and first.endswith(" allow\n")
    os.utime(sub, ns=(sub.stat().st_mtime_ns + 10**9,) * 2)  # rebuilt: a new training
    assert wandb_run(*options) != first


def test_a_remote_jobs_wandb_run_follows_its_htcondor_job(tmp_path: Path) -> None:
    ad = tmp_path / ".job.ad"
    options = (f"--checkpoint={tmp_path / 'last.ckpt'}", "--exit-every=3600")
    ad.write_text('ClusterId = 7\nGlobalJobId = "ap.example.org#7.0#1765000000"\n')
    first = wandb_run(*options, env={"_CONDOR_JOB_AD": str(ad)})
    assert wandb_run(*options, env={"_CONDOR_JOB_AD": str(ad)}) == first  # restarted
    ad.write_text('GlobalJobId = "ap.example.org#8.0#1765000100"\n')  # a new job
    assert wandb_run(*options, env={"_CONDOR_JOB_AD": str(ad)}) != first
