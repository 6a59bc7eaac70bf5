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


def test_a_remote_checkpointing_stage_runs_without_resuming_and_says_so(tmp_path: Path) -> None:
    code, _, err = run_cli("build", str(DEMO), "--run-dir", str(tmp_path / "run"), "--train-remote")
    assert code == 0, err
    assert "stages.train.checkpoint: not used without the shared filesystem yet" in err, err
    assert "resume.py" not in (tmp_path / "run/train.sub").read_text()
